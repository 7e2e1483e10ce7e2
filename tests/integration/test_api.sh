#!/usr/bin/env bash
# Integration: the OpenAI API as clients use it (docs/api.md): structured outputs (json_object,
# json_schema, GBNF), tool calls in the hermes and llama3 formats (also streamed, and tool
# messages in the conversation), n > 1, logit_bias, the Responses API with its store (SQLite by
# default; kept across a restart; shared through Redis between two nodes), embeddings'
# dimensions. The checks themselves are in api_client.py.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT
fold() { # fold FILE: adds a client's counts to ours
  cat "$1"
  local np nf
  np=$(grep -oE '^[0-9]+ passed' "$1" | awk '{print $1}'); nf=$(grep -oE '[0-9]+ failed$' "$1" | awk '{print $1}')
  T_PASS=$((T_PASS + ${np:-0})); T_FAIL=$((T_FAIL + ${nf:-1}))
}

M=$TMP/qwen.gguf   # a ChatML (Qwen) chat template: the hermes tool format
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-qwen2.gguf" -o "$M" --dim 64 --layers 1 --heads 2 \
  --ffn 128 --ctx 2048 --seed 4 --tied --qkv-bias 2>/dev/null
L=$TMP/llama.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-bpe.gguf" -o "$L" --dim 64 --layers 1 --heads 2 \
  --ffn 128 --ctx 2048 --seed 5 2>/dev/null
ENC=$ROOT/models/assistant.gguf

start_named n1 --port 0 -m chat="$M" -m enc="$ENC" -m enc16="$ENC" --matryoshka enc16 --slots 4 \
  --log-prompts --log-file "$TMP/n1-req.log" || { bad "node n1"; finish; exit 1; }
B=http://127.0.0.1:$PORT_n1
python3 "$ROOT/tests/integration/api_client.py" "$B" chat enc "$TMP/n1-req.log" hermes enc16 >"$TMP/c1.txt" 2>&1
fold "$TMP/c1.txt"

check "the default responses store is an SQLite file under XDG_STATE_HOME" test -s "$XDG_STATE_HOME/shoal/responses.db"
ID=$(cat "$TMP/n1-req.log.kept-id" 2>/dev/null)
kill -TERM "$PID_n1"; wait "$PID_n1" 2>/dev/null
start_named n1b --port 0 -m chat="$M" || { bad "node n1 restarted"; finish; exit 1; }
check "a stored response survives a restart (GET after restart)" bash -c \
  "curl -sf http://127.0.0.1:$PORT_n1b/v1/responses/$ID | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"id\"] == \"$ID\"'"
kill -TERM "$PID_n1b"; wait "$PID_n1b" 2>/dev/null

start_named n2 --port 0 -m chat="$L" --chat-template llama3 --slots 2 --log-prompts --log-file "$TMP/n2-req.log" \
  || { bad "node n2 (llama3)"; finish; exit 1; }
python3 "$ROOT/tests/integration/api_client.py" "http://127.0.0.1:$PORT_n2" chat none "$TMP/n2-req.log" llama3 >"$TMP/c2.txt" 2>&1
fold "$TMP/c2.txt"
kill -TERM "$PID_n2"; wait "$PID_n2" 2>/dev/null

# ---- through a router: tools, structured outputs, n and the Responses API are forwarded
start_named n3 --port 0 -m chat="$M" --slots 4 --log-prompts --log-file "$TMP/n3-req.log" || bad "node n3"
cat >"$TMP/cluster.yaml" <<YAML
listen: {host: 127.0.0.1}
nodes:
  - {name: n3, url: "http://127.0.0.1:$PORT_n3"}
models:
  - name: chat
    backends: [{node: n3, model: chat}]
YAML
start_named router --config "$TMP/cluster.yaml" --port 0 || bad "router"
API_TAG=router python3 "$ROOT/tests/integration/api_client.py" "http://127.0.0.1:$PORT_router" chat none "$TMP/n3-req.log" hermes \
  >"$TMP/c3.txt" 2>&1
fold "$TMP/c3.txt"
kill -TERM "$PID_router" "$PID_n3"; wait "$PID_router" "$PID_n3" 2>/dev/null

# ---- prefix affinity keeps a conversation on one node: its continuation hashes the stored
# conversation (the router reads the store it shares with the nodes: here the default file)
start_named n4 --port 0 -m chat="$M" --log-prompts --log-file "$TMP/n4-req.log" || bad "node n4"
start_named n5 --port 0 -m chat="$M" --log-prompts --log-file "$TMP/n5-req.log" || bad "node n5"
cat >"$TMP/affinity.yaml" <<YAML
listen: {host: 127.0.0.1}
nodes:
  - {name: n4, url: "http://127.0.0.1:$PORT_n4"}
  - {name: n5, url: "http://127.0.0.1:$PORT_n5"}
models:
  - name: chat
    policy: prefix_affinity
    backends: [{node: n4, model: chat}, {node: n5, model: chat}]
YAML
start_named raff --config "$TMP/affinity.yaml" --port 0 || bad "affinity router"
check "prefix affinity: 8 conversations, each continuation on the node of its first turn (both nodes used)" \
  python3 - "$PORT_raff" "$TMP/n4-req.log" "$TMP/n5-req.log" <<'PY'
import json, sys, urllib.request
port, logs = sys.argv[1], sys.argv[2:]
def post(body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=60))
for k in range(8):
    # prefix affinity hashes the first 256 bytes: a first turn longer than that, unlike the others
    first = f"conversation {k} starts with a request about room {k * 37}: " + "please check the sensors " * 12
    r = post({"input": first, "max_output_tokens": 2})
    post({"input": f"MARKER-CONT-{k}", "previous_response_id": r["id"], "max_output_tokens": 2})
where = {}
for i, log in enumerate(logs):
    for line in open(log):
        p = json.loads(line).get("prompt") or ""
        for k in range(8):
            if f"conversation {k} starts" in p:
                where.setdefault(k, set()).add(i)
assert len(where) == 8 and all(len(v) == 1 for v in where.values()), where
assert len(set().union(*where.values())) == 2, f"one node took everything: {where}"
PY
kill -TERM "$PID_raff" "$PID_n4" "$PID_n5"; wait "$PID_raff" "$PID_n4" "$PID_n5" 2>/dev/null

# ---- two nodes sharing the store through Redis: any node continues any conversation
if command -v redis-server >/dev/null; then
  RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  start_named a --port 0 -m chat="$M" --responses-db none --responses-redis "redis://127.0.0.1:$RPORT" || bad "node a"
  start_named b --port 0 -m chat="$M" --responses-db none --responses-redis "redis://127.0.0.1:$RPORT" \
    --log-prompts --log-file "$TMP/b-req.log" || bad "node b"
  check "redis: a response made on node a is continued on node b" python3 - "$PORT_a" "$PORT_b" "$TMP/b-req.log" <<'PY'
import json, sys, time, urllib.request
a, b, log = sys.argv[1:4]
def post(port, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=60))
r = post(a, {"input": "FIRST-TURN-ON-A", "max_output_tokens": 3, "temperature": 0})
for _ in range(50):  # the store's writes are asynchronous: at most a few ms
    try:
        r2 = post(b, {"input": "SECOND-TURN-ON-B", "previous_response_id": r["id"], "max_output_tokens": 2})
        break
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code
        time.sleep(0.02)
prompt = [json.loads(l)["prompt"] for l in open(log) if "SECOND-TURN-ON-B" in l][0]
assert "FIRST-TURN-ON-A" in prompt, prompt
PY
else
  bad "redis-server is not installed (scripts/deps.sh installs it)"
fi
finish
