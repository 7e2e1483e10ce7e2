#!/usr/bin/env bash
# Integration: the response cache (docs/cache.md) through the HTTP API, with a real
# redis-server on loopback: the three tiers, what is and is not cached, client control,
# streaming replay, persistence across restarts, invalidation by model file, /v1/cache, and the
# faults: kill -9 during writes, two processes writing one file, a damaged file, a full disk,
# and Redis stopped and restarted under load.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
command -v redis-server >/dev/null || { bad "redis-server is not installed (scripts/deps.sh installs it)"; finish; exit 1; }
CLIENT="python3 $ROOT/tests/integration/cache_client.py"

M=$TMP/m.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M" --dim 64 --layers 1 --heads 2 \
  --ffn 128 --ctx 4096 --seed 3 2>/dev/null
M2=$TMP/m2.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M2" --dim 64 --layers 1 --heads 2 \
  --ffn 128 --ctx 4096 --seed 4 2>/dev/null

# redis on a free loopback port, no persistence
start_redis() {
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$TMP/redis.log" 2>&1 &
  RPID=$!
  PIDS+=("$RPID")
  for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_redis || { bad "redis-server starts"; finish; exit 1; }
ok "redis-server on 127.0.0.1:$RPORT"
REDIS=redis://127.0.0.1:$RPORT

start() { local name=$1; shift; start_named "$name" --port 0 "$@"; }
# post NAME JSON [CURL ARGS...]: answer in $TMP/NAME.body, headers in $TMP/NAME.h
post() {
  local n=$1 b=$2; shift 2
  curl -s -D "$TMP/$n.h" -o "$TMP/$n.body" "$B/v1/completions" -H 'Content-Type: application/json' "$@" -d "$b"
}
hdr() { tr -d '\r' <"$TMP/$1.h" | awk -F': ' -v k="$(echo "$2" | tr A-Z a-z)" 'tolower($1)==k{print $2}'; }
cache_is() { [ "$(hdr "$1" X-Shoal-Cache)" = "$2" ]; }
text() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['choices'][0]['text'])" "$TMP/$1.body"; }
G='"max_tokens":8,"temperature":0'

# ---------------------------------------------------------------- the three tiers
start n1 -m tiny="$M" --cache --cache-db "$TMP/c.db" --cache-redis "$REDIS" --log-file "$TMP/n1-req.log" ||
  { bad "node with the three tiers"; finish; exit 1; }
B=http://127.0.0.1:$PORT_n1
post a1 "{\"prompt\":\"turn on the kitchen lights\",$G}"
post a2 "{\"prompt\":\"turn on the kitchen lights\",$G}"
check "miss, then a hit from memory with the same text and a new id" bash -c \
  "[ '$(hdr a1 X-Shoal-Cache)' = miss ] && [ '$(hdr a2 X-Shoal-Cache)' = hit ] && [ '$(hdr a2 X-Shoal-Cache-Tier)' = memory ] && [ '$(text a1)' = '$(text a2)' ] && ! cmp -s '$TMP/a1.body' '$TMP/a2.body'"
post a3 "{\"prompt\":\"  turn on\\n\\tthe   kitchen lights \",$G}"
check "white space is normalized: a hit" cache_is a3 hit
post a4 "{\"prompt\":\"turn off the kitchen lights\",$G}"
check "one word different: a miss (never the other answer)" cache_is a4 miss
post a5 "{\"prompt\":\"Turn on the kitchen lights\",$G}"
check "case matters unless --cache-fold-case: a miss" cache_is a5 miss
post a6 "{\"prompt\":\"turn on the kitchen lights\",\"max_tokens\":9,\"temperature\":0}"
check "another max_tokens: a miss" cache_is a6 miss
post a7 '{"prompt":"turn on the kitchen lights","max_tokens":8,"temperature":0.8}'
check "sampled without a seed: bypass" cache_is a7 bypass
post a8 '{"prompt":"turn on the kitchen lights","max_tokens":8,"temperature":0.8,"seed":5}'
post a9 '{"prompt":"turn on the kitchen lights","max_tokens":8,"temperature":0.8,"seed":5}'
check "sampled with a seed: miss, then hit" bash -c "[ '$(hdr a8 X-Shoal-Cache)' = miss ] && [ '$(hdr a9 X-Shoal-Cache)' = hit ]"
post b1 "{\"prompt\":\"turn on the kitchen lights\",$G}" -H 'Cache-Control: no-store'
check "Cache-Control: no-store: bypass" cache_is b1 bypass
post b2 "{\"prompt\":\"turn on the kitchen lights\",$G,\"cache\":false}"
check "\"cache\": false: bypass" cache_is b2 bypass
post b3 "{\"prompt\":\"dim the hallway\",$G}" -H 'Cache-Control: no-cache'
post b4 "{\"prompt\":\"dim the hallway\",$G}"
check "Cache-Control: no-cache: not read, but stored (then a hit)" bash -c "[ '$(hdr b3 X-Shoal-Cache)' = miss ] && [ '$(hdr b4 X-Shoal-Cache)' = hit ]"
curl -sN "$B/v1/completions" -d "{\"prompt\":\"open the garage\",$G,\"stream\":true}" -D "$TMP/s1.h" -o "$TMP/s1.sse"
post s2 "{\"prompt\":\"open the garage\",$G}"
curl -sN "$B/v1/completions" -d "{\"prompt\":\"open the garage\",$G,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" -D "$TMP/s3.h" -o "$TMP/s3.sse"
check "a streamed miss is stored whole; a hit replays as SSE with the same text and usage" python3 - "$TMP" <<'PY'
import json, sys
t = sys.argv[1]
def sse(p):
    ev = [l[6:] for l in open(p).read().split("\n\n") if l.startswith("data: ")]
    assert ev[-1] == "[DONE]", ev
    ch = [json.loads(e) for e in ev[:-1]]
    return "".join(c["choices"][0]["text"] for c in ch if c["choices"]), ch
a, _ = sse(t + "/s1.sse")
b, ch = sse(t + "/s3.sse")
whole = json.load(open(t + "/s2.body"))["choices"][0]["text"]
h2 = open(t + "/s2.h").read().lower(); h3 = open(t + "/s3.h").read().lower()
assert "x-shoal-cache: miss" in open(t + "/s1.h").read().lower()
assert "x-shoal-cache: hit" in h2 and "x-shoal-cache: hit" in h3 and "text/event-stream" in h3
assert a == b == whole, (a, b, whole)
assert ch[-1]["choices"] == [] and ch[-1]["usage"]["completion_tokens"] == 8
PY
post d1 "{\"prompt\":\"set the heating\",$G,\"deadline_ms\":0.001}"
post d2 "{\"prompt\":\"set the heating\",$G}"
check "an error answer is never stored (503 by deadline, then a miss)" bash -c \
  "grep -q '\"error\"' '$TMP/d1.body' && [ '$(hdr d2 X-Shoal-Cache)' = miss ]"
curl -s -o /dev/null --max-time 0.3 "$B/v1/completions" -d '{"prompt":"tell a long story","max_tokens":3000,"temperature":0,"stream":true}'
sleep 0.3
post d3 '{"prompt":"tell a long story","max_tokens":3000,"temperature":0,"stream":true}' --max-time 0.3
check "a cancelled answer is never stored (a miss again)" cache_is d3 miss
CO=()
for i in 1 2 3 4 5 6; do
  post co$i '{"prompt":"the same question at once","max_tokens":400,"temperature":0}' &
  CO+=($!)
done
wait "${CO[@]}"
CO_TIERS=$(cat "$TMP"/co[1-6].h | tr -d '\r' | grep -i '^x-shoal-cache' | sort | uniq -c | tr -s ' \n' ' ')
CO_TEXTS=$(for i in 1 2 3 4 5 6; do text co$i; done | sort -u | wc -l)
check "coalescing: 6 identical requests at once generate once; the others wait for its answer ($CO_TIERS)" bash -c \
  "[ \$(cat $TMP/co[1-6].h | tr -d '\r' | grep -ic '^x-shoal-cache-tier: inflight') -ge 4 ] && [ \$(cat $TMP/co[1-6].h | tr -d '\r' | grep -ic '^x-shoal-cache: miss') -eq 1 ] && [ $CO_TEXTS -eq 1 ]"
curl -s "$B/metrics" >"$TMP/metrics.txt"
check "metrics: lookups per tier and result, writes, bytes, lookup latency" bash -c \
  "grep -qE '^shoal_cache_lookups_total\{tier=\"memory\",result=\"hit\"\} [1-9]' '$TMP/metrics.txt' && grep -q '^shoal_cache_writes_total{tier=\"sqlite\"}' '$TMP/metrics.txt' && grep -q '^shoal_cache_bytes{tier=\"memory\"}' '$TMP/metrics.txt' && grep -q 'shoal_cache_lookup_seconds_bucket{tier=\"redis\"' '$TMP/metrics.txt' && grep -q '^shoal_cache_redis_up 1' '$TMP/metrics.txt'"
check "request log: a hit names its tier; no prompt text anywhere" bash -c \
  "grep -q '\"cache\":\"memory\"' '$TMP/n1-req.log' && ! grep -q 'kitchen' '$TMP/n1-req.log'"
check "the SQLite file and Redis hold no prompt text" bash -c \
  "! grep -aq 'kitchen' '$TMP/c.db' '$TMP/c.db-wal' 2>/dev/null && ! redis-cli -p $RPORT --scan | grep -q kitchen"
curl -s "$B/v1/cache" >"$TMP/stats.json"
check "GET /v1/cache: hits, misses and entries per tier" python3 -c "
import json; d=json.load(open('$TMP/stats.json'))
assert d['memory']['hits']>=4 and d['memory']['entries']>=4 and d['sqlite']['entries']>=4 and d['redis']['up'], d"
kill -TERM "$PID_n1"; wait "$PID_n1" 2>/dev/null

# ---------------------------------------------------------------- tiers on their own
start n2 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/c.db" --log-file /dev/null || bad "restart on the same file"
B=http://127.0.0.1:$PORT_n2
post r1 "{\"prompt\":\"turn on the kitchen lights\",$G}"
check "after a restart: a hit from the SQLite file, the same text" bash -c \
  "[ '$(hdr r1 X-Shoal-Cache-Tier)' = sqlite ] && [ '$(text r1)' = '$(text a1)' ]"
kill -TERM "$PID_n2"; wait "$PID_n2" 2>/dev/null
start n3 -m tiny="$M" --cache-mb 0 --cache-redis "$REDIS" --log-file /dev/null || bad "a node on Redis only"
B=http://127.0.0.1:$PORT_n3
post r2 "{\"prompt\":\"turn on the kitchen lights\",$G}"
check "another process: a hit from Redis, the same text" bash -c \
  "[ '$(hdr r2 X-Shoal-Cache-Tier)' = redis ] && [ '$(text r2)' = '$(text a1)' ]"
kill -TERM "$PID_n3"; wait "$PID_n3" 2>/dev/null
cp "$M2" "$M"
start n4 -m tiny="$M" --cache --cache-db "$TMP/c.db" --log-file /dev/null || bad "restart with another file"
B=http://127.0.0.1:$PORT_n4
post r3 "{\"prompt\":\"turn on the kitchen lights\",$G}"
check "the model file changed (another hash): a miss" cache_is r3 miss
curl -s -X DELETE "$B/v1/cache" >"$TMP/del.json"
post r4 "{\"prompt\":\"turn on the kitchen lights\",$G}"
post r5 "{\"prompt\":\"turn on the kitchen lights\",$G}"
check "DELETE /v1/cache clears: a miss, then a hit again" bash -c \
  "grep -q '\"cleared\":true' '$TMP/del.json' && [ '$(hdr r4 X-Shoal-Cache)' = miss ] && [ '$(hdr r5 X-Shoal-Cache)' = hit ]"
check "shoal cache stats --url: the node's tiers" bash -c "'$SHOAL' cache stats --url '$B' | grep -q '\"memory\"'"
kill -TERM "$PID_n4"; wait "$PID_n4" 2>/dev/null
check "shoal cache stats --db: entries in the file" bash -c "'$SHOAL' cache stats --db '$TMP/c.db' | grep -qE '^sqlite +entries [1-9]'"
check "shoal cache clear --db empties it" bash -c "'$SHOAL' cache clear --db '$TMP/c.db' >/dev/null && '$SHOAL' cache stats --db '$TMP/c.db' | grep -qE '^sqlite +entries 0 '"
check "shoal cache clear --redis drops the keys" bash -c "'$SHOAL' cache clear --redis '$REDIS' >/dev/null && [ -z \"\$(redis-cli -p $RPORT --scan --pattern 'shoal:c:*')\" ]"

# ---------------------------------------------------------------- faults
# kill -9 while 4 clients write distinct entries; the file opens and holds whole entries
start k1 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/k.db" --log-file /dev/null || bad "node k1"
$CLIENT distinct "http://127.0.0.1:$PORT_k1" 20000 4 >"$TMP/k1.json" &
LP=$!
sleep 0.8
kill -9 "$PID_k1"
wait "$LP" 2>/dev/null
check "kill -9 during writes: the file passes integrity_check and every entry is a whole answer ($(cat "$TMP/k1.json"))" python3 - "$TMP/k.db" "$TMP/k1.json" <<'PY'
import json, sqlite3, sys
assert json.load(open(sys.argv[2]))["ok"] < 20000, "the load ended before the kill"
db = sqlite3.connect(sys.argv[1])
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
rows = db.execute("SELECT value FROM entries").fetchall()
assert len(rows) > 0, "nothing was written before the kill"
for (v,) in rows:
    assert json.loads(v)["choices"][0]["finish_reason"] in ("stop", "length")
print(len(rows), "entries survived", file=sys.stderr)
PY
start k2 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/k.db" --log-file /dev/null || bad "reopen after kill -9"
check "after kill -9: the node starts on the file and serves" bash -c \
  "curl -sf http://127.0.0.1:$PORT_k2/v1/completions -d '{\"prompt\":\"request number 1\",\"max_tokens\":4,\"temperature\":0}' >/dev/null"
kill -TERM "$PID_k2"; wait "$PID_k2" 2>/dev/null
# two processes writing one file at once
start w1 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/w.db" --log-file /dev/null || bad "writer 1"
start w2 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/w.db" --log-file /dev/null || bad "writer 2"
$CLIENT distinct "http://127.0.0.1:$PORT_w1" 150 2 >"$TMP/w1.json" &
L1=$!
$CLIENT distinct "http://127.0.0.1:$PORT_w2" 150 2 >"$TMP/w2.json" &
L2=$!
wait "$L1" "$L2"
sleep 0.5
B=http://127.0.0.1:$PORT_w1
kill -TERM "$PID_w1" "$PID_w2"; wait "$PID_w1" "$PID_w2" 2>/dev/null
check "two processes writing one file: all answered, no write lost, the file is sound ($(cat "$TMP/w1.json"))" python3 - "$TMP" <<'PY'
import json, sqlite3, sys
t = sys.argv[1]
for f in ("w1", "w2"):
    d = json.load(open(t + "/" + f + ".json")); assert d["ok"] == 150, d
db = sqlite3.connect(t + "/w.db")
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
n = db.execute("SELECT count(*) FROM entries").fetchone()[0]
assert n == 150, n   # the same 150 prompts from both: one entry each
PY
grep -h "warning" "$TMP/w1.log" "$TMP/w2.log" | head -3
# a damaged file: moved aside with a warning, a new one, serving on
head -c 65536 /dev/urandom >"$TMP/bad.db"
start g1 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/bad.db" --log-file /dev/null || bad "a node on a damaged file starts"
B=http://127.0.0.1:$PORT_g1
post g1 "{\"prompt\":\"x\",$G}"
post g2 "{\"prompt\":\"x\",$G}"
check "a damaged file: a warning, moved to .damaged, rebuilt, and it caches" bash -c \
  "grep -q 'is damaged' '$TMP/g1.log' && [ -f '$TMP/bad.db.damaged' ] && [ '$(hdr g2 X-Shoal-Cache)' = hit ]"
kill -TERM "$PID_g1"; wait "$PID_g1" 2>/dev/null
# a full disk: a file-size limit of 256 KiB on the node; writes fail, requests do not
(ulimit -f 256; exec "$SHOAL" serve --port 0 -m tiny="$M" --cache-mb 0 --cache-db "$TMP/full.db" --log-file /dev/null) \
  >"$TMP/full.log" 2>&1 &
FPID=$!
PIDS+=("$FPID")
for _ in $(seq 1 100); do
  FP=$(grep -oE 'on http://[^ ]*:[0-9]+' "$TMP/full.log" | grep -oE '[0-9]+$' | head -1)
  [ -n "$FP" ] && curl -sf -o /dev/null "http://127.0.0.1:$FP/health" && break
  sleep 0.1
done
$CLIENT distinct "http://127.0.0.1:$FP" 1500 2 >"$TMP/full.json"
check "a full disk: every request answered ($(cat "$TMP/full.json")), a warning, the server alive" bash -c \
  "python3 -c \"import json; d=json.load(open('$TMP/full.json')); exit(0 if d['ok']==1500 else 1)\" && grep -q 'write failed' '$TMP/full.log' && curl -sf -o /dev/null http://127.0.0.1:$FP/health"
kill -TERM "$FPID"; wait "$FPID" 2>/dev/null
# Redis stopped and restarted under load: no failed request
start z1 -m tiny="$M" --cache-mb 0 --cache-redis "$REDIS" --log-file /dev/null || bad "node z1"
B=http://127.0.0.1:$PORT_z1
post z0 "{\"prompt\":\"turn on the kitchen lights\",$G}"
$CLIENT loadfor "$B" 4 4 "{\"prompt\":\"turn on the kitchen lights\",$G}" >"$TMP/z.json" &
LZ=$!
sleep 1
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1
sleep 1.2
start_redis || bad "redis restarts"
wait "$LZ"
check "Redis stopped and restarted under load: no failed request; hits before, misses while down ($(cat "$TMP/z.json"))" \
  python3 -c "
import json; d=json.load(open('$TMP/z.json'))
assert d['ok']==d['sent'] and d['sent']>100 and d['tiers'].get('redis',0)>0 and d['tiers'].get('miss',0)>0, d"
post z1 "{\"prompt\":\"reconnect probe\",$G}"
sleep 0.3
post z2 "{\"prompt\":\"reconnect probe\",$G}"
check "after the restart the node reconnects: a hit from Redis again" bash -c "[ '$(hdr z2 X-Shoal-Cache-Tier)' = redis ]"
kill -TERM "$PID_z1"; wait "$PID_z1" 2>/dev/null

# ---------------------------------------------------------------- the semantic tier
start sm -m r="$ROOT/models/replies.gguf" -m nlu="$ROOT/models/assistant.gguf" --semantic-cache nlu \
  --semantic-label --log-file /dev/null || bad "a node with the semantic tier"
B=http://127.0.0.1:$PORT_sm
chat() { curl -s -D "$TMP/$1.h" -o "$TMP/$1.body" "$B/v1/chat/completions" -d "{\"model\":\"r\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}],\"max_tokens\":12,\"temperature\":0}"; }
chat e1 "turn on the kitchen lights"
chat e2 "please turn on the kitchen lights"
chat e3 "turn off the kitchen lights"
check "semantic: a paraphrase hits with its similarity; on/off does not" bash -c \
  "[ '$(hdr e2 X-Shoal-Cache-Tier)' = semantic ] && python3 -c 'import sys; assert 0.93 <= float(sys.argv[1]) <= 1.0001' '$(hdr e2 X-Shoal-Similarity)' && [ '$(hdr e3 X-Shoal-Cache)' = miss ]"
kill -TERM "$PID_sm"; wait "$PID_sm" 2>/dev/null
start sp -m r="$ROOT/models/replies.gguf" -m nlu="$ROOT/models/assistant.gguf" --semantic-cache nlu \
  --semantic-label --min-similarity 0.01 --log-file /dev/null || bad "a node for the precision sets"
python3 "$ROOT/bench/semantic_precision.py" "http://127.0.0.1:$PORT_sp" --model r --check 0.93 >"$TMP/prec.txt" 2>&1
check "semantic precision (tests/data/semantic/pairs.jsonl, min_similarity 0.93): no false hit, >= 80% of paraphrases" \
  test $? -eq 0
grep '| 0.93 ' "$TMP/prec.txt"
python3 "$ROOT/bench/semantic_precision.py" "http://127.0.0.1:$PORT_sp" --model r --check 0.93 --min-hit 0 \
  --pairs "$ROOT/tests/data/semantic/holdout.jsonl" >"$TMP/hold.txt" 2>&1
check "semantic precision (holdout.jsonl, 0.93): no false hit ($(grep '| 0.93 ' "$TMP/hold.txt"))" test $? -eq 0
kill -TERM "$PID_sp"; wait "$PID_sp" 2>/dev/null

# ---------------------------------------------------------------- bad options
check "--semantic-cache needs an encoder of the node" bash -c \
  "'$SHOAL' serve -m r='$M' --port 0 --semantic-cache r 2>&1 | grep -q 'is a decoder'"
check "--cache-policy without a cache is refused" bash -c "! '$SHOAL' serve -m '$M' --port 0 --cache-policy never 2>/dev/null"
check "a bad Redis URL is refused with the URL named" bash -c \
  "'$SHOAL' serve -m '$M' --port 0 --cache-redis http://x 2>&1 | grep -q \"redis url 'http://x'\""
check "a cache file that cannot be created is refused with the path named" bash -c \
  "'$SHOAL' serve -m '$M' --port 0 --cache-db /nonexistent/dir/c.db 2>&1 | grep -q '/nonexistent/dir/c.db'"
finish
