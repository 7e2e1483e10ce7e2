#!/usr/bin/env bash
# Integration: `shoal serve` as a real process on a free loopback port, driven with curl and
# with the official openai client for Node: endpoints, streaming, errors, auth, limits,
# cancellation, metrics, batch invariance under concurrency, graceful shutdown.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
trap 'stop_server; rm -rf "$TMP"' EXIT

M=$TMP/m.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M" --dim 128 --layers 2 \
  --heads 4 --kv-heads 2 --ffn 256 --ctx 32768 --seed 3 2>/dev/null
M2=$TMP/m2.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-qwen2.gguf" -o "$M2" --dim 64 --layers 1 \
  --heads 2 --ffn 128 --ctx 256 --seed 4 --tied --qkv-bias 2>/dev/null

start_server "$TMP/serve.log" -m tiny="$M" -m other="$M2" --slots 4 --ctx 32768 -t 2 || { bad "server start"; finish; exit 1; }
B="http://127.0.0.1:$PORT"
J='-H Content-Type:application/json'

err_is() { # err_is DESC STATUS CODE-OR-PARAM CURL-ARGS...
  local d=$1 st=$2 what=$3; shift 3
  local got; got=$(curl -s -o "$TMP/e.json" -w '%{http_code}' "$@")
  if [ "$got" = "$st" ] && python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; assert sys.argv[2] in (e.get('code') or '', e.get('param') or '', e['type']), e" "$TMP/e.json" "$what" 2>/dev/null; then ok "$d"; else bad "$d (got $got: $(head -c 300 "$TMP/e.json"))"; fi
}

# ---- basic endpoints -------------------------------------------------------------------
check "GET /health is 200 ok" bash -c "curl -sf $B/health | grep -q '\"status\":\"ok\"'"
check "GET /v1/models lists both models" bash -c "curl -sf $B/v1/models | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"object\"]==\"list\" and [m[\"id\"] for m in d[\"data\"]]==[\"tiny\",\"other\"]'"

out=$(curl -s $J $B/v1/completions -d '{"model":"tiny","prompt":"Hello world","max_tokens":6,"temperature":0}')
check "completion: object, text, usage, finish_reason length" python3 -c "
import json,sys; d=json.loads(sys.argv[1])
assert d['object']=='text_completion' and d['model']=='tiny' and d['id'].startswith('cmpl-')
c=d['choices'][0]; assert c['finish_reason']=='length' and isinstance(c['text'],str)
u=d['usage']; assert u['completion_tokens']==6 and u['prompt_tokens']==3 and u['total_tokens']==9
assert 'cached_tokens' in u['prompt_tokens_details']" "$out"
TEXT=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['choices'][0]['text'])" "$out")

out2=$(curl -s $J $B/v1/completions -d '{"model":"tiny","prompt":"Hello world","max_tokens":6,"temperature":0}')
check "same greedy request again: same text, prefix reused" python3 -c "
import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2])
assert a['choices'][0]['text']==b['choices'][0]['text']
assert b['usage']['prompt_tokens_details']['cached_tokens']==2, b['usage']" "$out" "$out2"

curl -sN $J $B/v1/completions -d '{"model":"tiny","prompt":"Hello world","max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' >"$TMP/sse.txt"
check "stream: SSE chunks join to the same text, usage chunk, [DONE]" python3 - "$TMP/sse.txt" "$TEXT" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().split("\n\n")
events = [l[6:] for l in lines if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert text == sys.argv[2], (text, sys.argv[2])
fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] == "length"
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
PY

# a stop string taken from the greedy text: the answer ends before it
STOP=$(python3 -c "import sys; t=sys.argv[1]; print(t[len(t)//2:len(t)//2+3])" "$TEXT")
out=$(curl -s $J $B/v1/completions -d "$(python3 -c "import json,sys; print(json.dumps({'model':'tiny','prompt':'Hello world','max_tokens':6,'temperature':0,'stop':[sys.argv[1]]}))" "$STOP")")
check "stop string: text cut before it, finish_reason stop" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); t=sys.argv[2]; s=sys.argv[3]
c=d['choices'][0]; assert c['finish_reason']=='stop', c
assert c['text']==t[:t.index(s)], (c['text'], t, s)" "$out" "$TEXT" "$STOP"

# a model can sample byte tokens that never form UTF-8; such bytes become U+FFFD and the text
# field is still there (JSON strings cannot hold them); seeded sampling finds some
check "output bytes that are not UTF-8: U+FFFD, never a missing text field" python3 - "$PORT" <<'PY'
import http.client, json, sys
port, fffd = int(sys.argv[1]), 0
def post(path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    raw = c.getresponse().read().decode("utf-8")  # strict: the body itself must be UTF-8
    c.close()
    return raw
for seed in range(60):
    base = {"model": "tiny", "max_tokens": 8, "temperature": 1.5, "seed": seed}
    d = json.loads(post("/v1/completions", dict(base, prompt="Hi")))
    t = d["choices"][0]["text"]
    d = json.loads(post("/v1/chat/completions", dict(base, messages=[{"role": "user", "content": "Hi"}])))
    t += d["choices"][0]["message"]["content"]
    ev = [l[6:] for l in post("/v1/completions", dict(base, prompt="Hi", stream=True)).split("\n\n") if l.startswith("data: ")]
    t += "".join(json.loads(e)["choices"][0]["text"] for e in ev[:-1] if json.loads(e)["choices"])
    fffd += t.count("\ufffd")
assert fffd > 0, "no undecodable output in 60 seeds: the check did not exercise the case"
PY

out=$(curl -s $J $B/v1/completions -d '{"model":"tiny","prompt":"Hi","max_tokens":3,"temperature":0,"logprobs":2}')
check "logprobs: tokens, token_logprobs, top_logprobs with 2 entries" python3 -c "
import json,sys; lp=json.loads(sys.argv[1])['choices'][0]['logprobs']
assert len(lp['tokens'])==3 and len(lp['token_logprobs'])==3 and all(len(t)<=2 and len(t)>=1 for t in lp['top_logprobs'])
assert all(x<=0 for x in lp['token_logprobs'])" "$out"

# ---- echo: the prompt's own logprobs (the scoring call compositions use) ----------------
LONG="The quick brown fox jumps over the lazy dog while the kitchen lights turn on and off, and the thermostat in the bedroom reads twenty one degrees at seven in the morning. Then the assistant answers that the garage door is closed, the porch light is off, and the living room blinds go down at dusk."
IDS=$(printf '%s\n' "$LONG" | "$SHOAL" tokenize -m "$M" | tr ' ' ',')
curl -s $J $B/v1/completions -d "{\"model\":\"tiny\",\"prompt\":[$IDS],\"max_tokens\":0,\"echo\":true,\"logprobs\":1}" >"$TMP/score.json"
check "echo + max_tokens 0: every prompt token scored once, the first null, nothing generated" python3 - "$TMP/score.json" "$IDS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ids = sys.argv[2].split(",")
c = d["choices"][0]; lp = c["logprobs"]
assert len(ids) > 70, len(ids)  # spans several scoring chunks
assert len(lp["tokens"]) == len(ids) and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
assert all(x <= 0 for x in lp["token_logprobs"][1:])
assert c["finish_reason"] == "length" and d["usage"]["completion_tokens"] == 0
assert "".join(lp["tokens"]).lstrip() == c["text"].lstrip(), (lp["tokens"], c["text"])
PY
check "echo scores equal generation's: top-1 at positions across chunk edges = greedy next token's logprob" python3 - "$TMP/score.json" "$IDS" "$B" <<'PY'
import json, sys, urllib.request
d = json.load(open(sys.argv[1])); ids = [int(x) for x in sys.argv[2].split(",")]; B = sys.argv[3]
lp = d["choices"][0]["logprobs"]
for k in (1, 2, 31, 32, 33, 64, 65, len(ids) - 1):
    body = {"model": "tiny", "prompt": ids[:k], "max_tokens": 1, "temperature": 0, "logprobs": 1}
    r = json.load(urllib.request.urlopen(urllib.request.Request(B + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})))
    g = r["choices"][0]["logprobs"]["token_logprobs"][0]
    top = max(lp["top_logprobs"][k].values())
    assert abs(g - top) < 2e-3, (k, g, top)
PY
out=$(curl -s $J $B/v1/completions -d '{"model":"tiny","prompt":"Hello world","max_tokens":4,"temperature":0,"echo":true}')
check "echo with generation: the text is the prompt, then the same greedy tokens" python3 -c "
import json,sys; t=json.loads(sys.argv[1])['choices'][0]['text']
g=t[len('Hello world'):].lstrip()
assert t.startswith('Hello world') and g and g == sys.argv[2][:len(g)], (t, sys.argv[2])" "$out" "$TEXT"
curl -sN $J $B/v1/completions -d '{"model":"tiny","prompt":"Hello world","max_tokens":4,"temperature":0,"echo":true,"logprobs":1,"stream":true}' >"$TMP/sse_echo.txt"
check "echo streamed: chunks join to the same text, prompt tokens first" python3 - "$TMP/sse_echo.txt" "$out" <<'PY'
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n\n") if l.startswith("data: ")]
ch = [json.loads(e) for e in ev[:-1]]
text = "".join(c["choices"][0]["text"] for c in ch)
assert text == json.loads(sys.argv[2])["choices"][0]["text"], (text,)
assert ch[0]["choices"][0]["logprobs"]["token_logprobs"] == [None]
PY
err_is "max_tokens 0 without echo is a 400 naming max_tokens" 400 max_tokens $J $B/v1/completions -d '{"model":"tiny","prompt":"Hi","max_tokens":0}'

curl -s -D "$TMP/h.txt" -o "$TMP/rid.json" $J -H 'X-Request-Id: test-req-1' -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' $B/v1/completions -d '{"model":"other","prompt":"Hi","max_tokens":2}'
# (the answer goes through a file: a sampled text may hold any quote character)
check "X-Request-Id echoed; second model answers" bash -c "grep -qi '^X-Request-Id: test-req-1' '$TMP/h.txt' && grep -q '\"model\":\"other\"' '$TMP/rid.json'"
check "request log: JSON line with ids, model hash, no prompt" python3 - "$TMP/serve.log" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
r = [x for x in rows if x.get("request_id") == "test-req-1"]
assert r and r[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and r[0]["model"] == "other"
assert len(r[0]["model_sha256"]) == 64 and r[0]["status"] == 200 and "prompt" not in r[0]
PY

# ---- chat (qwen2 model, ChatML template from the file) --------------------------------------
out=$(curl -s $J $B/v1/chat/completions -d '{"model":"other","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}')
check "chat: chat.completion with an assistant message" python3 -c "
import json,sys; d=json.loads(sys.argv[1])
assert d['object']=='chat.completion' and d['id'].startswith('chatcmpl-')
m=d['choices'][0]['message']; assert m['role']=='assistant' and isinstance(m['content'],str)
assert d['usage']['completion_tokens']==4 and d['usage']['prompt_tokens']>=10" "$out"
curl -sN $J $B/v1/chat/completions -d '{"model":"other","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"stream":true}' >"$TMP/chat.txt"
check "chat stream: first delta has the role, deltas join, [DONE]" python3 - "$TMP/chat.txt" <<'PY'
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n\n") if l.startswith("data: ")]
assert ev[-1] == "[DONE]"
ch = [json.loads(e) for e in ev[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in ch)
assert ch[0]["choices"][0]["delta"]["role"] == "assistant"
assert ch[-1]["choices"][0]["finish_reason"] == "length"
PY

# ---- embeddings ----------------------------------------------------------------------------
out=$(curl -s $J $B/v1/embeddings -d '{"model":"other","input":["the cat sat","the cat sat","a different sentence"]}')
check "embeddings: unit vectors, equal inputs equal, usage" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); v=[x['embedding'] for x in d['data']]
assert d['object']=='list' and [x['index'] for x in d['data']]==[0,1,2] and len(v[0])==64
dot=lambda a,b: sum(x*y for x,y in zip(a,b))
assert all(abs(dot(a,a)-1)<1e-5 for a in v) and v[0]==v[1] and v[0]!=v[2]
assert d['usage']['prompt_tokens']>=9" "$out"
err_is "embeddings: empty input list: 400" 400 input $J $B/v1/embeddings -d '{"input":[]}'

# ---- bad input: 4xx with an OpenAI error object, server keeps serving ----------------------
err_is "malformed JSON: 400" 400 invalid_request_error $J $B/v1/completions -d '{"prompt":'
err_is "wrong type: 400 names the param" 400 max_tokens $J $B/v1/completions -d '{"prompt":"a","max_tokens":"x"}'
err_is "unknown model: 404 model_not_found" 404 model_not_found $J $B/v1/completions -d '{"model":"nope","prompt":"a"}'
err_is "chat: unknown role: 400" 400 "messages[0].role" $J $B/v1/chat/completions -d '{"messages":[{"role":"wizard","content":"x"}]}'
err_is "chat: image content part: 400" 400 "messages[0].content[0].type" $J $B/v1/chat/completions -d '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}'
err_is "n=17: 400 (at most 16 choices)" 400 n $J $B/v1/completions -d '{"prompt":"a","n":17}'
err_is "empty prompt: 400" 400 prompt $J $B/v1/completions -d '{"prompt":""}'
err_is "invalid UTF-8: 400" 400 invalid_request_error $J $B/v1/completions --data-binary $'{"prompt":"\xff\xfe"}'
python3 -c "import json; print(json.dumps({'model':'tiny','prompt':'word ' * 40000}))" >"$TMP/long.json"
err_is "prompt over the context: 400 context_length_exceeded" 400 context_length_exceeded $J $B/v1/completions --data-binary @"$TMP/long.json"
head -c 5000000 /dev/zero | tr '\0' 'a' >"$TMP/big.txt"
err_is "body over 4 MiB: 413" 413 request_too_large $J $B/v1/completions --data-binary @"$TMP/big.txt"
err_is "GET on a POST endpoint: 405" 405 invalid_request_error $B/v1/completions
err_is "unknown route: 404" 404 invalid_request_error $B/v2/nothing
err_is "impossible deadline: 503 at once" 503 deadline_ms $J $B/v1/completions -d '{"prompt":"a","max_tokens":400,"deadline_ms":0.01}'
err_is "an unknown field: 400 naming it, never ignored" 400 frobnicate $J $B/v1/completions -d '{"prompt":"a","max_tokens":1,"frobnicate":{"x":1}}'
err_is "an unknown nested field: 400 naming its path" 400 "messages[0].colour" $J $B/v1/chat/completions -d '{"messages":[{"role":"user","content":"x","colour":"red"}]}'
err_is "a field OpenAI defines that shoal cannot honour: 400" 400 audio $J $B/v1/chat/completions -d '{"messages":[{"role":"user","content":"x"}],"audio":{"voice":"alloy","format":"wav"}}'
check "a documented no-op field is accepted" bash -c "curl -sf $J $B/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":1,\"service_tier\":\"auto\"}' | grep -q chat.completion"
check "still healthy after bad input" bash -c "curl -sf $B/health | grep -q ok"

# ---- cancellation: a client that hangs up mid-stream frees its slot ------------------------
# A raw socket reads 20 kB of the stream and closes; /slots is then polled as fast as Python can.
before=$(curl -s $B/metrics | awk '/^shoal_cancellations_total\{model="tiny"\}/ {print $2}')
ms=$(python3 - "$PORT" <<'PY'
import http.client, json, socket, sys, time
port = int(sys.argv[1])
def busy():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/slots")
    n = sum(m["busy"] for m in json.loads(c.getresponse().read()))
    c.close()
    return n
body = json.dumps({"model": "tiny", "prompt": "Hi", "max_tokens": 100000, "stream": True, "temperature": 0})
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
got = 0
while got < 20000:
    got += len(s.recv(65536))
t0 = time.perf_counter()
s.close()
while busy() != 0 and time.perf_counter() - t0 < 30:
    time.sleep(0.0005)
print(round((time.perf_counter() - t0) * 1e3, 1) if busy() == 0 else "never")
PY
)
after=$(curl -s $B/metrics | awk '/^shoal_cancellations_total\{model="tiny"\}/ {print $2}')
check "disconnect mid-stream: slot freed (${ms} ms after hang-up), cancellation counted" \
  python3 -c "assert '$ms' != 'never' and float('$ms') < 1000 and ${after:-0} > ${before:-0}"

# ---- metrics -----------------------------------------------------------------------------
curl -s $B/metrics >"$TMP/metrics.txt"
check "metrics: Prometheus text with the documented series" python3 - "$TMP/metrics.txt" <<'PY'
import sys
t = open(sys.argv[1]).read()
for name in ["shoal_requests_total", "shoal_time_to_first_token_seconds_bucket", "shoal_time_per_output_token_seconds_count",
             "shoal_request_duration_seconds_sum", "shoal_queue_wait_seconds_bucket", "shoal_prompt_tokens_total",
             "shoal_generated_tokens_total", "shoal_prefix_cache_tokens_total", "shoal_cancellations_total",
             "shoal_rejections_total", "shoal_busy_slots", "shoal_queue_depth", "shoal_resident_memory_bytes"]:
    assert name in t, name
assert '# TYPE shoal_time_to_first_token_seconds histogram' in t
assert 'shoal_requests_total{model="tiny",endpoint="/v1/completions",status="200"}' in t
assert 'status="404"' in t and 'reason="deadline"' in t
assert 'model="nope"' not in t  # client-chosen names never become labels
PY

# ---- the official openai client (Node) ---------------------------------------------------
if ensure_node_clients >/dev/null 2>&1; then
  node "$ROOT/tests/integration/node/openai_client.mjs" "$B/v1" tiny other >"$TMP/node.txt" 2>&1
  cat "$TMP/node.txt"
  np=$(grep -oE '^[0-9]+ passed' "$TMP/node.txt" | awk '{print $1}'); nf=$(grep -oE '[0-9]+ failed$' "$TMP/node.txt" | awk '{print $1}')
  T_PASS=$((T_PASS + ${np:-0})); T_FAIL=$((T_FAIL + ${nf:-1}))
else
  bad "npm ci of the openai client (tests/integration/node)"
fi

# ---- graceful shutdown: SIGTERM lets the request in flight finish, exit 0 ----------------
curl -s $J $B/v1/completions -d '{"model":"tiny","prompt":"Hi","max_tokens":300,"temperature":0}' >"$TMP/inflight.json" &
CP=$!
wait_busy "$B" 1 ""   # the signal must find the request running, not still on its way
kill -TERM $SPID
wait $CP
wait $SPID; rc=$?
SPID=""
check "SIGTERM: in-flight request completed, exit 0" python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); assert d['usage']['completion_tokens']==300 and int(sys.argv[2])==0" "$TMP/inflight.json" $rc

# ---- auth and a small queue ------------------------------------------------------------
start_server "$TMP/serve2.log" -m "$M" --api-key sekrit --slots 1 --max-queue 1 -t 1 || bad "start with key"
B="http://127.0.0.1:$PORT"
check "auth: /health needs no key" bash -c "curl -sf $B/health >/dev/null"
err_is "auth: no key is 401" 401 invalid_api_key $B/v1/models
err_is "auth: wrong key is 401" 401 invalid_api_key -H 'Authorization: Bearer sekriT' $B/v1/models
check "auth: right key works" bash -c "curl -sf -H 'Authorization: Bearer sekrit' $B/v1/models | grep -q '\"m\"'"
# One slot, a queue of one: a long stream holds the slot, then five requests arrive. One waits
# in the queue, four are turned away at once; the stream is then hung up so the queued one runs.
AUTH='Authorization: Bearer sekrit'
curl -sN -H "$AUTH" $J $B/v1/completions -d '{"prompt":"Hi","max_tokens":100000,"stream":true}' >/dev/null 2>&1 &
LONG=$!
wait_busy "$B" 1 "$AUTH"
pids=()
for i in 1 2 3 4 5; do
  curl -s -o /dev/null -D "$TMP/q$i.h" -w '%{http_code}\n' -H "$AUTH" $J $B/v1/completions \
    -d '{"prompt":"Hi","max_tokens":8}' >"$TMP/q$i.code" &
  pids+=($!)
done
for _ in $(seq 1 1000); do   # the four refusals come back without waiting for the slot
  [ "$(cat "$TMP"/q*.code 2>/dev/null | grep -c 429)" -ge 4 ] && break
  sleep 0.01
done
kill $LONG 2>/dev/null; wait $LONG 2>/dev/null
wait "${pids[@]}"
codes=$(cat "$TMP"/q*.code | sort | uniq -c | tr '\n' ' ')
n429=$(grep -l 429 "$TMP"/q*.code | wc -l)
n200=$(grep -l 200 "$TMP"/q*.code | wc -l)
check "full queue: 429 with Retry-After, the queued one 200 ($codes)" bash -c "[ $n429 -eq 4 ] && [ $n200 -eq 1 ] && grep -qi '^Retry-After: 1' \$(grep -l 429 $TMP/q*.code | head -1 | sed 's/code$/h/')"
stop_server

"$SHOAL" serve -m "$M" --host 0.0.0.0 --port 0 >"$TMP/e.txt" 2>&1; rc=$?
check "non-loopback host without a key is refused" bash -c "[ $rc -eq 1 ] && grep -q 'api-key' '$TMP/e.txt'"
"$SHOAL" serve -m "$TMP/missing.gguf" --port 0 >"$TMP/e.txt" 2>&1; rc=$?
check "missing model file: clear error, exit 1" bash -c "[ $rc -eq 1 ] && grep -q 'cannot open' '$TMP/e.txt'"
finish
