#!/usr/bin/env bash
# Integration: encoders (BERT / nomic-bert) through `shoal serve` and a router, as real
# processes on loopback: /v1/embeddings (float, base64, token ids), /v1/rerank (llama-server's
# form, its aliases, TEI's form), /v1/classify (labels and entities), the CLI commands giving the
# same numbers, every 400 of bad input, batching of concurrent requests, cancellation, deadlines,
# metrics, the official openai client's default (base64) embeddings, and the router's policies,
# rules and failover on the new endpoints.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
PIDS=()
cleanup() { stop_server; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
BGE=$VOCAB/ggml-vocab-bert-bge.gguf
J='-H Content-Type:application/json'

gen() { "$SHOAL" gen-model --vocab "$BGE" "$@" 2>/dev/null; }
gen --arch bert -o "$TMP/emb32.gguf" --dim 128 --layers 2 --heads 4 --seed 1 --cls-labels neg,neu,pos
"$SHOAL" quantize "$TMP/emb32.gguf" "$TMP/emb.gguf" q8_0 >/dev/null 2>&1
gen --arch bert -o "$TMP/rr.gguf" --dim 128 --layers 2 --heads 4 --seed 2 --pooling rank --cls-dense
gen --arch bert -o "$TMP/tag.gguf" --dim 128 --layers 2 --heads 4 --seed 3 --pooling none --tok-only \
  --tok-labels O,B-room,I-room,B-device,I-device
gen --arch bert -o "$TMP/joint.gguf" --dim 128 --layers 2 --heads 4 --seed 4 \
  --cls-labels lights_on,lights_off,chat --tok-labels O,B-room,I-room
gen --arch nomic-bert -o "$TMP/nomic.gguf" --dim 128 --layers 2 --heads 4 --ctx 1024 --seed 5 --rope-theta 1000
gen --arch bert -o "$TMP/plain.gguf" --dim 64 --layers 1 --heads 2 --seed 6 --ctx 32
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$TMP/dec.gguf" --dim 64 --layers 1 \
  --heads 2 --ffn 128 --ctx 256 --seed 7 2>/dev/null

start_server "$TMP/serve.log" -m emb="$TMP/emb.gguf" -m rr="$TMP/rr.gguf" -m tag="$TMP/tag.gguf" \
  -m joint="$TMP/joint.gguf" -m nomic="$TMP/nomic.gguf" -m plain="$TMP/plain.gguf" -m dec="$TMP/dec.gguf" \
  --pooling nomic=cls -t 2 || { bad "server start"; finish; exit 1; }
B="http://127.0.0.1:$PORT"

err_is() { # err_is DESC STATUS CODE-OR-PARAM-OR-MESSAGE-PART CURL-ARGS...
  local d=$1 st=$2 what=$3; shift 3
  local got; got=$(curl -s -o "$TMP/e.json" -w '%{http_code}' "$@")
  if [ "$got" = "$st" ] && python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; w=sys.argv[2]; assert w in (e.get('code') or '', e.get('param') or '', e['type']) or w in e['message'], e" "$TMP/e.json" "$what" 2>/dev/null; then ok "$d"; else bad "$d (got $got: $(head -c 300 "$TMP/e.json"))"; fi
}

# ---- /v1/models -----------------------------------------------------------------------------
check "models: encoders with their tasks, labels and pooling" python3 - "$B" <<'PY'
import json, sys, urllib.request
d = {m["id"]: m["meta"] for m in json.load(urllib.request.urlopen(sys.argv[1] + "/v1/models"))["data"]}
assert d["emb"]["kind"] == "encoder" and d["emb"]["quant"] == "Q8_0" and d["emb"]["dim"] == 128
assert d["emb"]["tasks"] == ["embeddings", "classify"] and d["emb"]["labels"] == ["neg", "neu", "pos"]
assert d["rr"]["tasks"] == ["rerank"] and d["rr"]["pooling"] == "rank"
assert d["tag"]["tasks"] == ["classify"] and d["tag"]["token_labels"][1] == "B-room"
assert d["nomic"]["arch"] == "nomic-bert" and d["nomic"]["pooling"] == "cls"
assert d["dec"]["kind"] == "decoder"
PY

# ---- embeddings -----------------------------------------------------------------------------
curl -s $J $B/v1/embeddings -d '{"model":"emb","input":["turn on the lights","turn on the lights","what time is it?"]}' >"$TMP/ef.json"
curl -s $J $B/v1/embeddings -d '{"model":"emb","input":["turn on the lights","turn on the lights","what time is it?"],"encoding_format":"base64"}' >"$TMP/eb.json"
check "embeddings: unit vectors, equal inputs equal, usage counts [CLS] and [SEP]" python3 - "$TMP/ef.json" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1])); v = [x["embedding"] for x in d["data"]]
assert d["object"] == "list" and d["model"] == "emb" and [x["index"] for x in d["data"]] == [0, 1, 2]
assert all(len(x) == 128 and abs(math.sqrt(sum(a * a for a in x)) - 1) < 1e-5 for x in v)
assert v[0] == v[1] and v[0] != v[2]
assert d["usage"]["prompt_tokens"] == 6 + 6 + 7, d["usage"]   # [CLS] turn on the lights [SEP] ...
PY
check "embeddings: base64 decodes to the float answer" python3 - "$TMP/ef.json" "$TMP/eb.json" <<'PY'
import base64, json, struct, sys
f = json.load(open(sys.argv[1]))["data"]; b = json.load(open(sys.argv[2]))["data"]
for x, y in zip(f, b):
    raw = base64.b64decode(y["embedding"]); vals = struct.unpack("<%df" % (len(raw) // 4), raw)
    assert len(vals) == 128 and max(abs(p - q) for p, q in zip(vals, x["embedding"])) < 1e-7
PY
IDS=$(echo "turn on the lights" | "$SHOAL" tokenize -m "$TMP/emb.gguf" | tr ' ' ',')
out=$(curl -s $J $B/v1/embeddings -d "{\"model\":\"emb\",\"input\":[[$IDS]]}")
check "embeddings: token-id input equals the text's" python3 -c "
import json,sys; a=json.loads(sys.argv[1])['data'][0]['embedding']; b=json.load(open(sys.argv[2]))['data'][0]['embedding']
assert max(abs(x-y) for x,y in zip(a,b)) < 1e-7" "$out" "$TMP/ef.json"
"$SHOAL" embed -m "$TMP/emb.gguf" -p "turn on the lights" --exact >"$TMP/cli.txt" 2>/dev/null
check "shoal embed gives the HTTP vector" python3 -c "
import json,sys; a=[float(x) for x in open(sys.argv[1]).read().split()]; b=json.load(open(sys.argv[2]))['data'][0]['embedding']
assert len(a)==128 and max(abs(x-y) for x,y in zip(a,b)) < 1e-6" "$TMP/cli.txt" "$TMP/ef.json"
out=$(curl -s $J $B/v1/embeddings -d '{"model":"nomic","input":"a rotary encoder"}')
check "embeddings: nomic-bert with the --pooling override (cls)" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); assert len(d['data'][0]['embedding'])==128, d" "$out"
out=$(curl -s $J $B/v1/embeddings -d '{"model":"dec","input":"hello","encoding_format":"base64"}')
check "embeddings: base64 from a decoder too" python3 -c "
import base64,json,sys; d=json.loads(sys.argv[1]); assert len(base64.b64decode(d['data'][0]['embedding']))==64*4, d" "$out"

# ---- rerank ---------------------------------------------------------------------------------
DOCS='["hi","The giant panda is a bear species endemic to China.","pandas eat bamboo","a red car"]'
curl -s $J $B/v1/rerank -d "{\"model\":\"rr\",\"query\":\"what is a panda?\",\"documents\":$DOCS}" >"$TMP/rr.json"
printf 'hi\nThe giant panda is a bear species endemic to China.\npandas eat bamboo\na red car\n' >"$TMP/docs.txt"
"$SHOAL" rerank -m "$TMP/rr.gguf" --query "what is a panda?" -f "$TMP/docs.txt" --raw --exact >"$TMP/rr_cli.txt" 2>/dev/null
check "rerank: every document, sorted by score, the CLI's raw scores" python3 - "$TMP/rr.json" "$TMP/rr_cli.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); cli = [float(x) for x in open(sys.argv[2]).read().split()]
r = d["results"]; s = [x["relevance_score"] for x in r]
assert d["object"] == "list" and d["model"] == "rr" and len(r) == 4 and s == sorted(s, reverse=True)
assert sorted(x["index"] for x in r) == [0, 1, 2, 3] and "document" not in r[0]
for x in r: assert abs(x["relevance_score"] - cli[x["index"]]) < 1e-6
assert d["usage"]["prompt_tokens"] > 4
PY
out=$(curl -s $J $B/rerank -d "{\"model\":\"rr\",\"query\":\"what is a panda?\",\"documents\":$DOCS,\"top_n\":2,\"return_documents\":true}")
check "rerank: /rerank alias, top_n, return_documents" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); a=json.load(open(sys.argv[2]))['results']
r=d['results']; assert len(r)==2 and r[0]['index']==a[0]['index'] and r[0]['document']['text']" "$out" "$TMP/rr.json"
for alias in /reranking /v1/reranking; do
  code=$(curl -s -o /dev/null -w '%{http_code}' $J "$B$alias" -d '{"model":"rr","query":"q","documents":["d"]}')
  check "rerank alias $alias answers" [ "$code" = 200 ]
done
out=$(curl -s $J $B/v1/rerank -d '{"model":"rr","query":"what is a panda?","texts":["hi","pandas eat bamboo"],"return_text":true}')
check "rerank: TEI form (texts in, a bare array of index/score/text out)" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); assert isinstance(d,list) and len(d)==2 and 'score' in d[0] and d[0]['text']" "$out"

# ---- classify -------------------------------------------------------------------------------
out=$(curl -s $J $B/v1/classify -d '{"model":"joint","input":["turn on the kitchen lights","Hi there, how are you?"]}')
check "classify: labels sorted and summing to 1, entities are spans of the text" python3 - "$out" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); texts = ["turn on the kitchen lights", "Hi there, how are you?"]
assert d["object"] == "list" and d["model"] == "joint" and len(d["data"]) == 2
for i, x in enumerate(d["data"]):
    s = [l["score"] for l in x["labels"]]
    assert x["index"] == i and x["label"] == x["labels"][0]["label"] and abs(sum(s) - 1) < 1e-5
    assert s == sorted(s, reverse=True) and {l["label"] for l in x["labels"]} == {"lights_on", "lights_off", "chat"}
    for e in x["entities"]:
        assert e["label"] in ("room",) and texts[i][e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1
PY
"$SHOAL" classify -m "$TMP/joint.gguf" -p "turn on the kitchen lights" --json >"$TMP/cls_cli.json" 2>/dev/null
check "shoal classify --json gives the HTTP answer" python3 -c "
import json,sys; a=json.loads(sys.argv[1])['data'][0]; b=json.load(open(sys.argv[2]))['data'][0]
assert a['label']==b['label'] and abs(a['score']-b['score'])<1e-6 and [e['text'] for e in a['entities']]==[e['text'] for e in b['entities']]" "$out" "$TMP/cls_cli.json"
out=$(curl -s $J $B/v1/classify -d '{"model":"tag","input":"dim the bedroom lamp"}')
check "classify: a tagger-only model gives entities and no label" python3 -c "
import json,sys; x=json.loads(sys.argv[1])['data'][0]; assert x['label'] is None and x['labels']==[] and isinstance(x['entities'],list)" "$out"

# ---- bad input ------------------------------------------------------------------------------
err_is "embeddings: empty input list: 400" 400 input $J $B/v1/embeddings -d '{"model":"emb","input":[]}'
err_is "embeddings: an empty string: 400" 400 input $J $B/v1/embeddings -d '{"model":"emb","input":["a",""]}'
python3 -c 'import json; print(json.dumps({"model":"emb","input":["x"]*2049}))' >"$TMP/many.json"
err_is "embeddings: 2049 inputs: 400" 400 "at most 2048" $J $B/v1/embeddings -d @"$TMP/many.json"
LONG=$(python3 -c 'print(" ".join(["word"]*40))')
err_is "an input longer than the context: 400 context_length_exceeded" 400 context_length_exceeded $J $B/v1/embeddings -d "{\"model\":\"plain\",\"input\":\"$LONG\"}"
code=$(curl -s -o "$TMP/t.json" -w '%{http_code}' $J $B/v1/embeddings -d "{\"model\":\"plain\",\"input\":\"$LONG\",\"truncate\":true}")
check "truncate: true cuts it to the context" bash -c "[ $code = 200 ] && grep -q '\"prompt_tokens\":32' $TMP/t.json"
err_is "classify on a model with no head: 400" 400 "no classification head" $J $B/v1/classify -d '{"model":"plain","input":"x"}'
err_is "rerank on a model that is not a reranker: 400" 400 "not a reranker" $J $B/v1/rerank -d '{"model":"emb","query":"q","documents":["d"]}'
err_is "completions on an encoder: 400" 400 model_not_supported $J $B/v1/completions -d '{"model":"emb","prompt":"x"}'
err_is "chat on an encoder: 400" 400 model_not_supported $J $B/v1/chat/completions -d '{"model":"rr","messages":[{"role":"user","content":"x"}]}'
err_is "classify on a decoder: 400" 400 model_not_supported $J $B/v1/classify -d '{"model":"dec","input":"x"}'
err_is "rerank on a decoder: 400" 400 model_not_supported $J $B/v1/rerank -d '{"model":"dec","query":"q","documents":["d"]}'
err_is "embeddings on a rank-pooling model: 400" 400 "rerank scores" $J $B/v1/embeddings -d '{"model":"rr","input":"x"}'
err_is "embeddings on a pooling-none model: 400" 400 "per-token" $J $B/v1/embeddings -d '{"model":"tag","input":"x"}'
err_is "classify with token ids: 400" 400 input $J $B/v1/classify -d '{"model":"joint","input":[[101,102]]}'
err_is "token id out of the vocabulary: 400" 400 input $J $B/v1/embeddings -d '{"model":"emb","input":[[101,99999999,102]]}'
err_is "rerank without documents: 400" 400 documents $J $B/v1/rerank -d '{"model":"rr","query":"q"}'
err_is "unknown model: 404" 404 model_not_found $J $B/v1/classify -d '{"model":"nope","input":"x"}'
err_is "encoding_format hex: 400" 400 encoding_format $J $B/v1/embeddings -d '{"model":"emb","input":"x","encoding_format":"hex"}'
err_is "a deadline that cannot be met: 503" 503 deadline_ms $J $B/v1/embeddings -d '{"model":"emb","input":"x","deadline_ms":0.0001}'
check "the node still answers after all that" bash -c "curl -sf $J $B/v1/classify -d '{\"model\":\"joint\",\"input\":\"x\"}' >/dev/null"

# ---- batching, cancellation, metrics --------------------------------------------------------
before=$(curl -s $B/metrics | awk '/^shoal_encoder_batch_tokens_count\{model="joint"\}/ {print $NF}')
check "concurrent classify requests: batched, each answer as when alone" python3 - "$B" <<'PY'
import json, sys, threading, urllib.request
B = sys.argv[1]
texts = ["turn on the kitchen lights %d" % i + " please" * (i % 5) for i in range(24)]
def ask(t):
    req = urllib.request.Request(B + "/v1/classify", json.dumps({"model": "joint", "input": t}).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["data"][0]
alone = [ask(t) for t in texts]
res = [None] * len(texts)
def worker(i): res[i] = ask(texts[i])
th = [threading.Thread(target=worker, args=(i,)) for i in range(len(texts))]
[t.start() for t in th]; [t.join() for t in th]
for a, b in zip(alone, res):
    assert a["labels"] == b["labels"] and a["entities"] == b["entities"], (a, b)
PY
after=$(curl -s $B/metrics | awk '/^shoal_encoder_batch_tokens_count\{model="joint"\}/ {print $NF}')
check "fewer passes than requests (24 sequential + 24 concurrent: $before -> $after)" python3 -c "
import sys; b=float(sys.argv[1] or 0); a=float(sys.argv[2]); assert a - b < 48, (b, a)" "$before" "$after"
python3 -c 'import json; print(json.dumps({"model":"nomic","input":[" ".join(["word %d" % i for i in range(300)])]*400}))' >"$TMP/big.json"
c0=$(curl -s $B/metrics | awk '/^shoal_cancellations_total\{model="nomic"\}/ {print $NF}')
curl -s --max-time 0.3 $J $B/v1/embeddings -d @"$TMP/big.json" >/dev/null 2>&1
cancelled=""
for _ in $(seq 1 100); do
  c1=$(curl -s $B/metrics | awk '/^shoal_cancellations_total\{model="nomic"\}/ {print $NF}')
  q=$(curl -s $B/slots | python3 -c 'import json,sys; print([m for m in json.load(sys.stdin) if m["model"]=="nomic"][0]["queued"])')
  if [ "${c1:-0}" != "${c0:-0}" ] && [ "$q" = 0 ]; then cancelled=1; break; fi
  sleep 0.1
done
check "a client that hangs up cancels its encoder request (counted, queue empty)" [ -n "$cancelled" ]
check "metrics: encoder requests by endpoint, prompt tokens, batch sizes" bash -c "curl -s $B/metrics | grep -q 'shoal_requests_total{model=\"rr\",endpoint=\"/v1/rerank\",status=\"200\"}' &&
  curl -s $B/metrics | grep -qE '^shoal_prompt_tokens_total\{model=\"emb\"\} [1-9]' &&
  curl -s $B/metrics | grep -q 'shoal_encoder_batch_tokens_bucket{model=\"emb\"'"
check "request log: encoder lines with inputs and prompt tokens, no text" bash -c "grep '\"path\":\"/v1/classify\"' $TMP/serve.log | grep '\"inputs\":' | grep -q '\"prompt_tokens\"' && ! grep -q 'kitchen' $TMP/serve.log"

# ---- the official openai client: its default embeddings are base64 --------------------------
if ensure_node_clients; then
  node "$ROOT/tests/integration/node/encoder_client.mjs" "$B/v1" emb >"$TMP/node.txt" 2>&1
  grep -v "passed, .* failed" "$TMP/node.txt"
  np=$(grep -oE '^[0-9]+ passed' "$TMP/node.txt" | awk '{print $1}'); nf=$(grep -oE '[0-9]+ failed$' "$TMP/node.txt" | awk '{print $1}')
  T_PASS=$((T_PASS + ${np:-0})); T_FAIL=$((T_FAIL + ${nf:-1}))
else
  bad "npm ci of the node clients (tests/integration/node)"
fi

# ---- through a router: policies, rules, failover --------------------------------------------
cat >"$TMP/cluster.yaml" <<EOF
local:
  - {name: joint-local, path: $TMP/joint.gguf}
  - {name: rr-local, path: $TMP/rr.gguf}
nodes:
  - {name: n1, url: "$B"}
models:
  - name: intent
    policy: round_robin
    backends: [{node: n1, model: joint}, {local: joint-local}]
  - name: rerank
    backends: [{local: rr-local}]
  - name: embed
    backends: [{node: n1, model: emb}]
  - name: auto
    policy: rules
    rules:
      - {match: "panda", model: rerank}
    default: intent
health: {interval_ms: 200, fail_threshold: 1, cooldown_ms: 60000}
EOF
"$SHOAL" serve --config "$TMP/cluster.yaml" --port 0 -t 1 >"$TMP/router.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
RP=""
for _ in $(seq 1 300); do
  RP=$(grep -oE 'on http://[^ ]*:[0-9]+' "$TMP/router.log" | grep -oE '[0-9]+$' | head -1)
  [ -n "$RP" ] && curl -sf -o /dev/null "http://127.0.0.1:$RP/health" && break
  sleep 0.1
done
R="http://127.0.0.1:$RP"
bk() { tr -d '\r' <"$1" | awk -F': ' 'tolower($1)=="x-shoal-backend"{print $2}'; }
curl -s -D "$TMP/h1" -o "$TMP/b1" $J $R/v1/classify -d '{"model":"intent","input":"turn on the kitchen lights"}'
curl -s -D "$TMP/h2" -o "$TMP/b2" $J $R/v1/classify -d '{"model":"intent","input":"turn on the kitchen lights"}'
check "router: classify round-robins a node and a local engine, same answer" python3 -c "
import json,sys; a=json.load(open(sys.argv[1]))['data'][0]; b=json.load(open(sys.argv[2]))['data'][0]
assert {sys.argv[3], sys.argv[4]} == {'n1/joint', 'local:joint-local'}, sys.argv[3:]
assert a['labels']==b['labels'] and a['entities']==b['entities']" "$TMP/b1" "$TMP/b2" "$(bk "$TMP/h1")" "$(bk "$TMP/h2")"
out=$(curl -s $J $R/v1/rerank -d "{\"model\":\"rerank\",\"query\":\"what is a panda?\",\"documents\":$DOCS}")
check "router: rerank through a local backend equals the node's" python3 -c "
import json,sys; a=json.loads(sys.argv[1])['results']; b=json.load(open(sys.argv[2]))['results']
assert [x['index'] for x in a]==[x['index'] for x in b] and abs(a[0]['relevance_score']-b[0]['relevance_score'])<1e-6" "$out" "$TMP/rr.json"
out=$(curl -s $J $R/v1/embeddings -d '{"model":"embed","input":["turn on the lights"],"encoding_format":"base64"}')
check "router: embeddings (base64) from a remote node" python3 -c "
import base64,json,sys; d=json.loads(sys.argv[1]); assert len(base64.b64decode(d['data'][0]['embedding']))==128*4" "$out"
curl -s -D "$TMP/h3" -o "$TMP/b3" $J $R/v1/rerank -d '{"model":"auto","query":"what is a panda?","documents":["a","b"]}'
check "router: a rules model routes rerank by the query text" bash -c "[ \"$(bk "$TMP/h3")\" = local:rr-local ] && grep -q relevance_score $TMP/b3"
err_is "router: bad classify input is answered 400 by the router" 400 input $J $R/v1/classify -d '{"model":"intent","input":[]}'
stop_server
ok=1
for _ in $(seq 1 6); do
  code=$(curl -s -D "$TMP/h4" -o "$TMP/b4" -w '%{http_code}' $J $R/v1/classify -d '{"model":"intent","input":"turn off the lights"}')
  [ "$code" = 200 ] && [ "$(bk "$TMP/h4")" = local:joint-local ] || ok=""
done
check "router: the node killed, classify fails over to the local engine (6 of 6)" [ -n "$ok" ]
finish
