#!/usr/bin/env bash
# Integration: a shoal router (`shoal serve --config`) in front of real node processes on
# loopback. Every policy's decision is read from the X-Shoal-Backend header the router sets;
# then failover under load with `kill -9` of a node, ejection and rejoin times, joins with
# heartbeats, drain, cancellation through the router, /v1/cluster, router metrics, and the
# start-up errors of bad configs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# start NAME ARGS...: start_named (serve_lib.sh)
start() { start_named "$@"; }

J='-H Content-Type:application/json'
# backend MODEL [EXTRA_JSON]: the X-Shoal-Backend of one small greedy completion via the router
backend() {
  local extra=${2:-}
  curl -s -D - -o "$TMP/last.json" $J "$R/v1/completions" \
    -d "{\"model\":\"$1\",\"prompt\":\"${PROMPT:-hello}\",\"max_tokens\":${MAXTOK:-2},\"temperature\":0$extra}" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-shoal-backend"{print $2}'
}
# hdr_backend FILE: waits (up to 20 s) for a streamed response's headers in FILE, prints its backend
hdr_backend() {
  local b=""
  for _ in $(seq 1 200); do
    b=$(tr -d '\r' <"$1" 2>/dev/null | awk -F': ' 'tolower($1)=="x-shoal-backend"{print $2}')
    [ -n "$b" ] && break
    sleep 0.1
  done
  echo "$b"
}
metric() { curl -s "$R/metrics" | awk -v m="$1" 'index($0, m)==1 {s+=$NF} END {print s+0}'; }

TINY=$TMP/tiny.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$TINY" --dim 64 --layers 1 \
  --heads 2 --ffn 128 --ctx 512 --seed 5 2>/dev/null
BIG=$TMP/big.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$BIG" --dim 512 --layers 6 \
  --heads 8 --ffn 1536 --ctx 512 --seed 6 2>/dev/null

NODE_ARGS=(--port 0 -t 1 --slots 4 --log-file /dev/null)
start n1 -m tiny="$TINY" "${NODE_ARGS[@]}" || { bad "node 1 start"; finish; exit 1; }
start n2 -m tiny="$TINY" -m weather="$TINY" "${NODE_ARGS[@]}" || { bad "node 2 start"; finish; exit 1; }
start n3 -m tiny="$TINY" "${NODE_ARGS[@]}" || { bad "node 3 start"; finish; exit 1; }
start nb -m big="$BIG" -m tiny="$BIG" "${NODE_ARGS[@]}" || { bad "big node start"; finish; exit 1; }
DEAD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat >"$TMP/cluster.yaml" <<EOF
join_token: sesame
health: {interval_ms: 200, timeout_ms: 300, fail_threshold: 2, cooldown_ms: 1000}
retry: {max_attempts: 3, connect_timeout_ms: 300, first_byte_timeout_ms: 20000}
join: {heartbeat_ms: 200, ttl_ms: 1000}
serve: {slots: 4, threads: 1}
local:
  - {name: loc, path: $TINY}
nodes:
  - {name: n1, url: "http://127.0.0.1:$PORT_n1"}
  - {name: n2, url: "http://127.0.0.1:$PORT_n2"}
  - {name: n3, url: "http://127.0.0.1:$PORT_n3"}
  - {name: nb, url: "http://127.0.0.1:$PORT_nb"}
  - {name: gone, url: "http://127.0.0.1:$DEAD_PORT"}
models:
  - name: tiny
    aliases: [default-model]
    policy: round_robin
    backends: [n1, n2, n3]
  - {name: sticky, policy: prefix_affinity, backends: [{node: n1, model: tiny}, {node: n2, model: tiny}, {node: n3, model: tiny}]}
  - {name: light, policy: least_loaded, backends: [{node: nb, model: big}, {node: n1, model: tiny}]}
  - {name: pc, policy: p2c, backends: [{node: n1, model: tiny}, {node: nb, model: big}]}
  - name: budget
    policy: latency_budget
    backends: [{local: loc, capability: 0}, {node: nb, model: big, capability: 1}]
  - {name: weather, policy: round_robin, backends: [{node: n2}]}
  - {name: classifier, policy: round_robin, backends: [{local: loc}]}
  - name: assistant
    policy: rules
    rules:
      - {match: "weather|temperature", model: weather}
      - {metadata: {task: classify}, model: classifier}
    default: tiny
  - {name: flaky, policy: round_robin, backends: [{node: gone, model: tiny}], fallback: classifier}
  - {name: hedged, policy: round_robin, hedge: true, hedge_after_ms: 40, backends: [{node: nb, model: big}, {node: n1, model: tiny}]}
EOF

start router --config "$TMP/cluster.yaml" --port 0 --log-file "$TMP/router-requests.log" || { bad "router start"; finish; exit 1; }
R="http://127.0.0.1:$PORT_router"
check "router starts although node 'gone' is down, and says so" grep -q "node gone .* is not answering" "$TMP/router.log"

# ---- /v1/models and /v1/cluster --------------------------------------------------------
check "/v1/models lists the cluster's model names" bash -c "curl -sf $R/v1/models | python3 -c '
import json,sys; d=json.load(sys.stdin); ids=[m[\"id\"] for m in d[\"data\"]]
assert ids[:3]==[\"tiny\",\"sticky\",\"light\"] and \"assistant\" in ids, ids'"
check "/v1/cluster: nodes with health and circuit, models with backends" bash -c "curl -sf $R/v1/cluster | python3 -c '
import json,sys; d=json.load(sys.stdin); n={x[\"name\"]:x for x in d[\"nodes\"]}
assert n[\"n1\"][\"health\"]==\"up\" and n[\"n1\"][\"circuit\"]==\"closed\", n[\"n1\"]
assert n[\"gone\"][\"health\"]==\"down\", n[\"gone\"]
m={x[\"name\"]:x for x in d[\"models\"]}; assert [b[\"name\"] for b in m[\"tiny\"][\"backends\"]]==[\"n1/tiny\",\"n2/tiny\",\"n3/tiny\"]
assert m[\"budget\"][\"backends\"][0][\"kind\"]==\"local\"'"

# ---- policies: each decision ---------------------------------------------------------------
seq6=$(for i in 1 2 3 4 5 6; do backend tiny; done | tr '\n' ' ')
check "round_robin cycles n1 n2 n3 n1 n2 n3 (got: $seq6)" test "$seq6" = "n1/tiny n2/tiny n3/tiny n1/tiny n2/tiny n3/tiny "
check "an alias routes to its model" test "$(backend default-model)" = "n1/tiny"

s1=$(for i in 1 2 3 4 5; do PROMPT="the same long shared system prompt" backend sticky; done | sort -u | wc -l)
check "prefix_affinity: one prefix, 5 requests, one backend" test "$s1" = 1
sN=$(for i in $(seq 1 24); do PROMPT="prefix number $i differs" backend sticky; done | sort -u | wc -l)
check "prefix_affinity: 24 different prefixes spread over the 3 nodes ($sN)" test "$sN" -ge 2

# least_loaded: a long stream on the slow big node (first of equals) holds it; the next
# request must go to the other backend
curl -sN $J "$R/v1/completions" -d '{"model":"light","prompt":"hold","max_tokens":100,"temperature":0,"stream":true}' -D "$TMP/hold.h" -o "$TMP/hold.sse" &
HOLD=$!
held=$(hdr_backend "$TMP/hold.h")
next=$(backend light)
check "least_loaded: with a long stream on $held, the next request goes elsewhere ($next)" \
  bash -c "[ '$held' = 'nb/big' ] && [ '$next' = 'n1/tiny' ]"
wait $HOLD

# latency_budget: learn both backends' latency (no deadline -> the capable big model; a 50 ms
# deadline the big model's p95 cannot meet -> the local one), then check the decisions
for i in $(seq 1 10); do MAXTOK=8 backend budget >/dev/null; done
samples() { curl -s "$R/v1/cluster" | python3 -c '
import json,sys; d=json.load(sys.stdin); m={x["name"]:x for x in d["models"]}
print(min(b["latency_ms"]["samples"] for b in m["budget"]["backends"]))'; }
for i in $(seq 1 40); do
  MAXTOK=8 backend budget ',"deadline_ms":50' >/dev/null
  [ $((i % 5)) = 0 ] && [ "$(samples)" -ge 8 ] && break
done
lat=$(curl -s "$R/v1/cluster" | python3 -c '
import json,sys; d=json.load(sys.stdin); m={x["name"]:x for x in d["models"]}
print(" ".join("%s=%.1fms" % (b["name"], b["latency_ms"]["p95"]) for b in m["budget"]["backends"]))')
echo "     budget backends' p95: $lat"
check "latency_budget: no deadline -> the capable backend" test "$(MAXTOK=8 backend budget)" = "nb/big"
mid=$(curl -s "$R/v1/cluster" | python3 -c '
import json,sys; d=json.load(sys.stdin); m={x["name"]:x for x in d["models"]}; b=m["budget"]["backends"]
print(int((b[0]["latency_ms"]["p95"] + b[1]["latency_ms"]["p95"]) / 2) + 1)')
check "latency_budget: deadline ${mid} ms (between the two learned p95s) -> the fast local model" \
  test "$(MAXTOK=8 backend budget ",\"deadline_ms\":$mid")" = "local:loc"
curl -s -D "$TMP/dg.h" -o "$TMP/dg.json" $J "$R/v1/completions" -d '{"model":"budget","prompt":"hi","max_tokens":8,"deadline_ms":0.01}'
check "latency_budget: a deadline nothing meets -> the fastest, marked degraded" bash -c "
grep -qi '^x-shoal-backend: local:loc' '$TMP/dg.h' && grep -qi '^x-shoal-degraded:' '$TMP/dg.h' &&
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"shoal\"][\"degraded\"], d' '$TMP/dg.json'"

# p2c: the big node is much slower; after learning, p2c prefers n1
for i in $(seq 1 12); do MAXTOK=8 backend pc >/dev/null; done
pcs=$(for i in $(seq 1 10); do MAXTOK=8 backend pc; done | grep -c "n1/tiny")
check "p2c: the faster backend takes most requests once latencies are known ($pcs/10)" test "$pcs" -ge 8

# rules
check "rules: 'weather' in the prompt -> the weather model" test "$(PROMPT='what is the weather in Oslo' backend assistant)" = "n2/weather"
check "rules: metadata task=classify -> the classifier model" test "$(backend assistant ',"metadata":{"task":"classify"}')" = "local:loc"
check "rules: nothing matches -> default model" bash -c "case '$(PROMPT='tell me a joke' backend assistant)' in n?/tiny) true;; *) false;; esac"

# fallback: the only backend of 'flaky' is down
out=$(curl -s -D "$TMP/fb.h" $J "$R/v1/completions" -d '{"model":"flaky","prompt":"x","max_tokens":2}')
check "fallback: answered by the fallback model, and the response says so" bash -c "
grep -qi '^x-shoal-fallback: classifier' '$TMP/fb.h' && python3 -c '
import json,sys; d=json.loads(sys.argv[1]); assert d[\"shoal\"][\"fallback\"] is True and d[\"shoal\"][\"answered_by\"]==\"classifier\", d' '$out'"

# hedging: the first backend (big node, long prompt) is slow to its first byte; after 40 ms a
# duplicate goes to n1, which wins; the big node's request is cancelled
h0=$(metric 'shoal_router_hedges_total{model="hedged"}')
LONG=$(python3 -c 'print(" ".join(["word"] * 300))')
hb=$(PROMPT="$LONG" MAXTOK=4 backend hedged)
h1=$(metric 'shoal_router_hedges_total{model="hedged"}')
check "hedging: a duplicate was sent after 40 ms and the fast backend answered ($hb)" \
  bash -c "[ '$hb' = 'n1/tiny' ] && [ $h1 -gt $h0 ]"

# ---- chat and embeddings through the router ---------------------------------------------
out=$(curl -s $J "$R/v1/chat/completions" -d '{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}')
check "chat completion through the router" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); assert d['object']=='chat.completion' and d['model']=='tiny', d
assert d['choices'][0]['message']['role']=='assistant'" "$out"
out=$(curl -s $J "$R/v1/embeddings" -d '{"model":"classifier","input":["a","b"]}')
check "embeddings through the router (local backend)" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); assert len(d['data'])==2 and len(d['data'][0]['embedding'])==64, d" "$out"

# ---- bad requests stay at the router ----------------------------------------------------
st=$(curl -s -o /dev/null -w '%{http_code}' $J "$R/v1/completions" -d '{"model":"tiny","prompt":"x","max_tokens":-5}')
check "a malformed request is answered 400 by the router" test "$st" = 400
st=$(curl -s -o /dev/null -w '%{http_code}' $J "$R/v1/completions" -d '{"model":"nope","prompt":"x"}')
check "an unknown model name is 404" test "$st" = 404

# ---- streaming through the router and cancellation --------------------------------------
curl -sN $J "$R/v1/completions" -d '{"model":"tiny","prompt":"Hello","max_tokens":8,"temperature":0,"stream":true}' >"$TMP/s.sse"
check "stream through the router: token chunks and [DONE]" bash -c "grep -c '^data: {' '$TMP/s.sse' | grep -qv '^0$' && grep -q '^data: \[DONE\]' '$TMP/s.sse'"
# a client that goes away: the node's slot must free (its generation is cancelled)
# (the big node takes it: nothing is outstanding, and it is light's first backend)
nb_busy() { curl -s "http://127.0.0.1:$PORT_nb/slots" | python3 -c 'import json,sys; print(sum(s["busy"] for s in json.load(sys.stdin)))'; }
nb_cancels() { curl -s "http://127.0.0.1:$PORT_nb/metrics" | awk '/^shoal_cancellations_total/ {s+=$2} END {print s+0}'; }
for _ in $(seq 1 200); do [ "$(nb_busy)" = 0 ] && break; sleep 0.05; done   # the hedge's loser is gone
c0=$(nb_cancels)
curl -sN $J -H 'X-Request-Id: rl-gone' "$R/v1/completions" -d '{"model":"light","prompt":"go on","max_tokens":400,"temperature":0,"stream":true}' >"$TMP/gone.sse" &
GONE=$!
for _ in $(seq 1 300); do grep -q '^data: {' "$TMP/gone.sse" 2>/dev/null && break; sleep 0.02; done
kill $GONE; wait $GONE 2>/dev/null   # hung up once tokens were flowing
busy=9
for _ in $(seq 1 100); do
  busy=$(nb_busy)
  [ "$busy" = 0 ] && break
  sleep 0.05
done
c1=$(nb_cancels)
check "client disconnect through the router cancels the node's generation (slots busy: $busy, cancellations $c0 -> $c1)" \
  test "$busy" = 0 -a "$c1" -gt "$c0"

# ---- kill -9 under load -------------------------------------------------------------------
res=$(python3 "$ROOT/tests/integration/cluster_load.py" --url "$R" --model tiny --requests 500 --clients 8 \
  --kill-pid "$PID_n3" --kill-after 150 --watch-node n3)
rc=$?
retries=$(metric 'shoal_router_retries_total{model="tiny"}')
echo "$res" | python3 -c '
import json,sys; d=json.load(sys.stdin); r=sys.argv[1]
print("     kill -9 under load: sent %d, succeeded %d, retried %s, failed mid-stream %d (allowed: tokens had reached the client), failed %d; node ejected %s ms after the kill; per backend %s" % (
  d["sent"], d["succeeded"], r, d["failed_mid_stream"], d["failed"], d["eject_ms"], d["backends"]))' "$retries"
check "500 requests from 8 clients, node 3 killed after 150: every request without output succeeded" test $rc = 0
ej3=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["eject_ms"] or 99999)')
check "the killed node was ejected within a second under load (${ej3} ms)" python3 -c "assert $ej3 < 1000"
# time from a fresh kill to ejection, measured directly: kill n1's twin? use a new node
start n5 -m tiny="$TINY" "${NODE_ARGS[@]}" --join "$R" --token sesame --node-name n5 || bad "node 5 start"
for _ in $(seq 1 50); do curl -s "$R/v1/cluster" | grep -q '"n5"' && break; sleep 0.1; done
check "a node joins at run time with --join (listed in /v1/cluster)" bash -c "curl -s $R/v1/cluster | grep -q '\"name\":\"n5\"'"
seen5=$(for i in $(seq 1 8); do backend tiny; done | grep -c '^n5/tiny$')
check "the joined node takes traffic ($seen5 of 8)" test "$seen5" -ge 1
t0=$(date +%s%N)
kill -9 "$PID_n5"
ej=""
for _ in $(seq 1 200); do
  st=$(curl -s "$R/v1/cluster" | python3 -c '
import json,sys; d=json.load(sys.stdin); n=[x for x in d["nodes"] if x["name"]=="n5"][0]
print("out" if n["removed"] or n["health"]=="down" or n["circuit"]=="open" else "in")')
  if [ "$st" = out ]; then ej=$(( ($(date +%s%N) - t0) / 1000000 )); break; fi
  sleep 0.02
done
echo "     node killed -9 -> out of rotation in ${ej:-?} ms (health checks every 200 ms, no traffic)"
check "a killed node is ejected within a second without traffic (${ej:-never} ms)" bash -c "[ -n '$ej' ] && [ '$ej' -lt 1000 ]"

# restart node 3 on its old port: health checks bring it back and it takes traffic again
t0=$(date +%s%N)
start n3 -m tiny="$TINY" --port "$PORT_n3" -t 1 --slots 4 --log-file /dev/null || bad "node 3 restart"
back=""
for _ in $(seq 1 100); do
  if for i in 1 2 3 4; do backend tiny; done | grep -q '^n3/tiny$'; then back=$(( ($(date +%s%N) - t0) / 1000000 )); break; fi
  sleep 0.1
done
echo "     restarted node 3 took traffic again ${back:-never} ms after it started"
check "a restarted node rejoins and takes traffic" test -n "$back"

# ---- drain: SIGTERM on a node ---------------------------------------------------------------
curl -sN $J "$R/v1/completions" -d '{"model":"light","prompt":"drain me","max_tokens":60,"temperature":0,"stream":true}' -D "$TMP/d.h" -o "$TMP/d.sse" &
DR=$!
dn=$(hdr_backend "$TMP/d.h")
dpid=$PID_nb; [ "$dn" = "n1/tiny" ] && dpid=$PID_n1
kill -TERM "$dpid"
sleep 0.5
after=$(for i in 1 2 3 4; do backend light; done | sort -u | tr '\n' ' ')
wait $DR
check "drain: the in-flight stream on the draining node ($dn) finishes with [DONE]" grep -q '^data: \[DONE\]' "$TMP/d.sse"
check "drain: new requests avoid the draining node (got: $after)" bash -c "! echo '$after' | grep -q '${dn}'"

# ---- metrics ----------------------------------------------------------------------------------
m=$(curl -s "$R/metrics")
for f in shoal_router_backend_requests_total shoal_router_retries_total shoal_router_ejections_total \
         shoal_router_decisions_total shoal_router_added_latency_seconds_bucket shoal_router_node_up; do
  check "router metrics: $f" bash -c "echo \"\$1\" | grep -q '^$f'" _ "$m"
done
check "router metrics: ejections counted for n3" bash -c "echo \"\$1\" | grep -E '^shoal_router_ejections_total\{node=\"n3\"\} [1-9]'" _ "$m"

# ---- the router's request log: one line per request, written when the answer is complete -------
curl -sN $J -H 'X-Request-Id: rl-stream' "$R/v1/completions" -d '{"model":"default-model","prompt":"hi","max_tokens":5,"stream":true}' >/dev/null
curl -s $J -H 'X-Request-Id: rl-rules' "$R/v1/completions" -d '{"model":"assistant","prompt":"the weather today","max_tokens":2}' >/dev/null
curl -s $J -H 'X-Request-Id: rl-local' "$R/v1/completions" -d '{"model":"classifier","prompt":"hi","max_tokens":2}' >/dev/null
curl -s $J -H 'X-Request-Id: rl-404' "$R/v1/completions" -d '{"model":"nope","prompt":"hi"}' >/dev/null
curl -s $J -H 'X-Request-Id: rl-400' "$R/v1/completions" -d '{"model":"tiny","prompt":' >/dev/null
curl -s $J -H 'X-Request-Id: rl-fb' "$R/v1/completions" -d '{"model":"flaky","prompt":"x","max_tokens":2}' >/dev/null
sleep 0.2
check "router log: one line per routed request with backend, attempts, outcome and times" python3 - "$TMP/router-requests.log" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault(r.get("request_id"), []).append(r)
def one(rid, **kw):
    rs = [r for r in by.get(rid, []) if "attempts" in r or "backend" in r or r.get("status", 200) >= 400]
    assert len(rs) == 1, (rid, by.get(rid))
    r = rs[0]
    for k, v in kw.items():
        assert r.get(k) == v, (rid, k, r.get(k), v, r)
    assert r["total_ms"] >= r.get("ttfb_ms", 0) >= 0, r
    return r
r = one("rl-stream", status=200, model="tiny", stream=True, outcome="ok", attempts=1)  # asked by alias
assert r["backend"] in ("n1/tiny", "n2/tiny", "n3/tiny") and "answered_by" not in r, r
one("rl-rules", status=200, model="assistant", answered_by="weather", backend="n2/weather")
one("rl-local", status=200, backend="local:loc", stream=False, outcome="ok")
assert any("model_sha256" in x for x in by["rl-local"]), by["rl-local"]
assert all("prompt" not in x and "output" not in x for x in by["rl-local"])  # never logged unasked
one("rl-404", status=404)
one("rl-400", status=400)
one("rl-fb", status=200, fallback=True, answered_by="classifier", backend="local:loc")
one("rl-gone", status=200, outcome="cancelled", stream=True)
PY

# ---- bad configs: clear errors at start-up ---------------------------------------------------
badcfg() { # NAME YAML EXPECTED-TEXT
  printf '%s\n' "$2" >"$TMP/bad-$1.yaml"
  local out rc
  out=$("$SHOAL" serve --config "$TMP/bad-$1.yaml" --port 0 2>&1 </dev/null)
  rc=$?
  if [ $rc -ne 0 ] && echo "$out" | grep -q -- "$3"; then ok "bad config ($1): $out"; else bad "bad config ($1): rc=$rc: $out"; fi
}
badcfg policy "models:
  - {name: a, policy: fastest, backends: [{local: l}]}
local: [{name: l, path: $TINY}]" "unknown policy"
badcfg duplicate "local: [{name: l, path: $TINY}]
models:
  - {name: a, policy: round_robin, backends: [l]}
  - {name: a, policy: round_robin, backends: [l]}" "duplicate"
badcfg url "nodes: [{name: x, url: 'ftp://127.0.0.1:1'}]
models: [{name: a, policy: round_robin, backends: [x]}]" "url"
badcfg unresolvable "nodes: [{name: x, url: 'http://no-such-host.invalid:8080'}]
models: [{name: a, policy: round_robin, backends: [x]}]" "no-such-host.invalid"
badcfg missing-file "local: [{name: l, path: $TMP/nope.gguf}]
models: [{name: a, policy: round_robin, backends: [l]}]" "nope.gguf"
badcfg missing-model "nodes: [{name: x, url: 'http://127.0.0.1:$PORT_n2'}]
models: [{name: a, policy: round_robin, backends: [{node: x, model: nosuchmodel}]}]" "does not serve a model named 'nosuchmodel'"

finish
