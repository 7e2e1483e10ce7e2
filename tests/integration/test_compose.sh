#!/usr/bin/env bash
# Integration: compositions (docs/cluster.md) with the shipped models, through the HTTP API.
#   1. In one process: the assistant pipeline (examples/assistant.yaml as shipped), classifier
#      routing, classifier and generator cascades, a classifier ensemble, weighted routing with
#      sticky users, metrics and the request log.
#   2. Across nodes on loopback: the same pipeline and a cascade whose steps live on other
#      processes, then kill -9 of a node under load: the declared fallbacks answer, nothing is
#      lost and nothing hangs.
#   3. Every file under examples/ starts as shipped and answers.
#   4. Bad composition configs are refused at start-up with the line and the reason.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

M=$ROOT/models
for f in assistant replies iot; do
  [ -f "$M/$f.gguf" ] || { bad "models/$f.gguf is missing"; finish; exit 1; }
done
CLIENT="python3 $ROOT/tests/integration/compose_client.py"

# start NAME ARGS...: start_named (serve_lib.sh) on a free port
start() { local name=$1; shift; start_named "$name" --port 0 "$@"; }

# req NAME PATH JSON: one request to the router; the answer (status, headers, body) in $TMP/NAME.json
req() { $CLIENT call "$R" "$2" "$3" >"$TMP/$1.json"; }
# expect DESC NAME PYTHON-EXPR: the expression over r (the answer of req NAME) is true
expect() {
  local d=$1 n=$2 e=$3
  if python3 -c "import json,sys; r=json.load(open('$TMP/$n.json')); b=r['body']; h=r['headers']; sys.exit(0 if ($e) else 1)" 2>"$TMP/expect.err"; then
    ok "$d"
  else
    bad "$d: $(head -c 600 "$TMP/$n.json") $(cat "$TMP/expect.err")"
  fi
}
chat() { printf '{"model":"%s","messages":[{"role":"user","content":"%s"}]%s}' "$1" "$2" "${3:-}"; }

# ---------------------------------------------------------------- 1. one process
start asst --config "$ROOT/examples/assistant.yaml" --log-file "$TMP/asst-req.log" ||
  { bad "examples/assistant.yaml starts as shipped"; finish; exit 1; }
ok "examples/assistant.yaml starts as shipped"
R=http://127.0.0.1:$PORT_asst
req p1 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights')"
expect "pipeline: a device command gives an action and a reply" p1 \
  "r['status']==200 and b['choices'][0]['message']['content'].strip()!='' and [s['name'] for s in b['shoal']['pipeline']['steps'] if s['ran']]==['intent','action','reply']"
expect "pipeline: intent and slots in shoal.pipeline" p1 \
  "b['shoal']['pipeline']['steps'][0]['label']=='lights_on' and b['shoal']['pipeline']['steps'][0]['slots']=={'room':'kitchen'}"
expect "pipeline: the action JSON validated (lights_on, kitchen)" p1 \
  "b['shoal']['pipeline']['steps'][1]['action']=={'intent':'lights_on','room':'kitchen'} and b['shoal']['pipeline']['steps'][1]['ok']"
expect "pipeline: the reply names the room" p1 "'kitchen' in b['choices'][0]['message']['content'].lower()"
expect "pipeline: label and confidence headers" p1 "h['x-shoal-label']=='lights_on' and float(h['x-shoal-confidence'])>0.85"
expect "pipeline: every step's time, the total" p1 "all('ms' in s for s in b['shoal']['pipeline']['steps'] if s['ran']) and b['shoal']['pipeline']['total_ms']>0"
req p2 /v1/chat/completions "$(chat assistant 'tell me a joke about robots')"
expect "pipeline: not a command -> the chat step answers" p2 \
  "r['status']==200 and [s['name'] for s in b['shoal']['pipeline']['steps'] if s['ran']]==['intent','chat'] and b['choices'][0]['message']['content']"
req p3 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' ',"stream":true')"
expect "pipeline: streamed as SSE with the same content" p3 \
  "h['content-type'].startswith('text/event-stream') and b.rstrip().endswith('data: [DONE]') and ''.join(json.loads(l[6:])['choices'][0]['delta'].get('content') or '' for l in b.split('\n') if l.startswith('data: {'))==json.load(open('$TMP/p1.json'))['body']['choices'][0]['message']['content']"
req p4 /v1/chat/completions "$(chat gpt-4o-mini 'switch off the lights in the bedroom')"
expect "pipeline: through its alias; lights_off with the bedroom" p4 \
  "b['shoal']['pipeline']['steps'][1]['action']=={'intent':'lights_off','room':'bedroom'}"
req p5 /v1/chat/completions "$(chat assistant 'hi' ',"response_format":{"type":"json_object"}')"
expect "pipeline: a request field it cannot honour (response_format) is a 400 naming it" p5 "r['status']==400 and 'response_format' in b['error']['message']"
# tool calls: the intent names the function, the slots are the arguments, typed by its schema
F_ON='{"type":"function","function":{"name":"lights_on","parameters":{"type":"object","properties":{"room":{"type":"string"}},"required":["room"]}}}'
F_DIM='{"type":"function","function":{"name":"set_brightness","parameters":{"type":"object","properties":{"level":{"type":"integer","minimum":0,"maximum":100},"room":{"type":"string"}},"required":["level"]}}}'
F_TEMP='{"type":"function","function":{"name":"set_temperature","parameters":{"type":"object","properties":{"temperature":{"type":"number"}}}}}'
F_MUSIC='{"type":"function","function":{"name":"play_music","parameters":{"type":"object","properties":{"genre":{"type":"string","enum":["Jazz","Rock","Classical"]}},"required":["genre"]}}}'
F_DOOR='{"type":"function","function":{"name":"lock_door","parameters":{"type":"object","properties":{},"additionalProperties":true}}}'
TOOLS=",\"tools\":[$F_ON,$F_DIM,$F_TEMP,$F_MUSIC,$F_DOOR]"
TC="b['choices'][0]['message']['tool_calls'][0]"
req q1 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' "$TOOLS")"
expect "tools: a declared intent is answered with a tool call (finish_reason tool_calls, content null)" q1 \
  "r['status']==200 and b['choices'][0]['finish_reason']=='tool_calls' and b['choices'][0]['message']['content'] is None and len(b['choices'][0]['message']['tool_calls'])==1"
expect "tools: the call is lights_on {room: kitchen}, an id call_..., type function" q1 \
  "$TC['function']['name']=='lights_on' and json.loads($TC['function']['arguments'])=={'room':'kitchen'} and $TC['id'].startswith('call_') and len($TC['id'])>10 and $TC['type']=='function'"
expect "tools: shoal.pipeline.tool_call says so; X-Shoal-Tool-Call; the reply step skipped" q1 \
  "b['shoal']['pipeline']['tool_call']['called'] and b['shoal']['pipeline']['tool_call']['intent']=='lights_on' and h['x-shoal-tool-call']=='lights_on' and [s['name'] for s in b['shoal']['pipeline']['steps'] if s['ran']]==['intent','action'] and 'skipped' in b['shoal']['pipeline']['steps'][2]"
req q1b /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' "$TOOLS")"
expect "tools: each call has its own id" q1b "b['choices'][0]['message']['tool_calls'][0]['id']!=json.load(open('$TMP/q1.json'))['body']['choices'][0]['message']['tool_calls'][0]['id']"
req q2 /v1/chat/completions "$(chat assistant 'set the kitchen lights to 20 percent' "$TOOLS")"
expect "tools: a slot the schema types integer is a JSON number (level 20), strings stay strings" q2 \
  "$TC['function']['name']=='set_brightness' and $TC['function']['arguments']=='{\"level\":20,\"room\":\"kitchen\"}' and type(json.loads($TC['function']['arguments'])['level']) is int"
req q3 /v1/chat/completions "$(chat assistant 'dim the bedroom lights to twenty percent' "$TOOLS")"
expect "tools: number words become numbers (twenty -> 20)" q3 \
  "json.loads($TC['function']['arguments'])=={'level':20,'room':'bedroom'} and b['shoal']['pipeline']['steps'][0]['slots']['level']=='twenty'"
req q4 /v1/chat/completions "$(chat assistant 'set the thermostat to 21 degrees' "$TOOLS")"
expect "tools: type number (temperature 21)" q4 "json.loads($TC['function']['arguments'])=={'temperature':21}"
req q5 /v1/chat/completions "$(chat assistant 'play some jazz' "$TOOLS")"
expect "tools: an enum value matched case-insensitively, in the enum's spelling (jazz -> Jazz)" q5 \
  "$TC['function']['name']=='play_music' and json.loads($TC['function']['arguments'])=={'genre':'Jazz'}"
req q6 /v1/chat/completions "$(chat assistant 'lock the front door' "$TOOLS")"
expect "tools: additionalProperties true keeps a slot the schema does not list" q6 \
  "$TC['function']['name']=='lock_door' and json.loads($TC['function']['arguments'])=={'door':'front door'}"
req q7 /v1/chat/completions "$(chat assistant 'set the kitchen lights to 20 percent' ',"tools":[{"type":"function","function":{"name":"set_brightness","parameters":{"type":"object","properties":{"level":{"type":"integer"}}}}}]')"
expect "tools: a slot that is not a property is dropped, and the record names it" q7 \
  "json.loads($TC['function']['arguments'])=={'level':20} and 'room' in b['shoal']['pipeline']['tool_call']['dropped']"
req q8 /v1/chat/completions "$(chat assistant 'set the kitchen lights to 20 percent' "$TOOLS,\"stream\":true")"
check "tools: streamed: a delta with the call (index 0, id, name, arguments), a chunk with finish_reason tool_calls, [DONE]" \
  python3 - "$TMP/q8.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); b = r["body"]
assert r["headers"]["content-type"].startswith("text/event-stream") and b.rstrip().endswith("data: [DONE]"), b[:300]
ch = [json.loads(l[6:]) for l in b.split("\n") if l.startswith("data: {")]
d = ch[0]["choices"][0]["delta"]
assert d["role"] == "assistant" and d["content"] is None, d
c = d["tool_calls"][0]
assert c["index"] == 0 and c["id"].startswith("call_") and c["type"] == "function", c
assert c["function"]["name"] == "set_brightness" and json.loads(c["function"]["arguments"]) == {"level": 20, "room": "kitchen"}, c
assert ch[-1]["choices"][0]["finish_reason"] == "tool_calls" and ch[-1]["shoal"]["pipeline"]["tool_call"]["called"], ch[-1]
PY
req q9 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' "$TOOLS,\"tool_choice\":\"none\"")"
expect "tools: tool_choice none answers with the reply text as before" q9 \
  "r['status']==200 and b['choices'][0]['finish_reason']=='stop' and b['choices'][0]['message']['content']==json.load(open('$TMP/p1.json'))['body']['choices'][0]['message']['content'] and not b['shoal']['pipeline']['tool_call']['called'] and 'x-shoal-tool-call' not in h"
req q10 /v1/chat/completions "$(chat assistant 'tell me a joke' "$TOOLS")"
expect "tools: auto and an intent with no declared function (chat): the reply text, and the record says why" q10 \
  "b['choices'][0]['finish_reason']=='stop' and b['choices'][0]['message']['content'] and 'chat' in b['shoal']['pipeline']['tool_call']['reason']"
req q11 /v1/chat/completions "$(chat assistant 'turn on the lights' "$TOOLS")"
expect "tools: a required property without a slot (room): no call, the reply text, the record names it" q11 \
  "b['choices'][0]['finish_reason']=='stop' and b['choices'][0]['message']['content'] and b['shoal']['pipeline']['tool_call']['called']==False and 'room' in b['shoal']['pipeline']['tool_call']['reason']"
req q12 /v1/chat/completions "$(chat assistant 'tell me a joke' "$TOOLS,\"tool_choice\":\"required\"")"
expect "tools: tool_choice required and an intent with no declared function: 422 naming the intent" q12 \
  "r['status']==422 and b['error']['code']=='tool_call_not_possible' and \"intent 'chat'\" in b['error']['message']"
req q13 /v1/chat/completions "$(chat assistant 'play some jazz' "$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"lights_on\"}}")"
expect "tools: tool_choice naming another function than the intent's: 422 naming both" q13 \
  "r['status']==422 and 'lights_on' in b['error']['message'] and 'play_music' in b['error']['message']"
req q14 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' "$TOOLS,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"lights_on\"}}")"
expect "tools: tool_choice naming the intent's function: the call" q14 "$TC['function']['name']=='lights_on'"
req q15 /v1/chat/completions "{\"model\":\"assistant\",\"messages\":[{\"role\":\"user\",\"content\":\"turn on the kitchen lights\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"lights_on\",\"arguments\":\"{\\\"room\\\":\\\"kitchen\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"ok\"}]$TOOLS}"
expect "tools: the turn after the call (its tool result sent back): the reply text, no second call" q15 \
  "r['status']==200 and b['choices'][0]['finish_reason']=='stop' and 'kitchen' in b['choices'][0]['message']['content'].lower() and 'tool result' in b['shoal']['pipeline']['tool_call']['reason']"
req q16 /v1/completions "{\"model\":\"assistant\",\"prompt\":\"turn on the kitchen lights\"$TOOLS}"
expect "tools: on completions a 400" q16 "r['status']==400 and 'tools' in b['error']['message']"
if ensure_node_clients; then
  (cd "$ROOT/tests/integration/node" && BASE="$R/v1" node --input-type=module - >"$TMP/node.txt" 2>&1) <<'JS'
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.env.BASE, apiKey: "none", maxRetries: 0 });
const tools = [{ type: "function", function: { name: "set_brightness", parameters: { type: "object",
  properties: { level: { type: "integer" }, room: { type: "string" } }, required: ["level"] } } }];
const messages = [{ role: "user", content: "set the kitchen lights to 20 percent" }];
const r = await client.chat.completions.create({ model: "assistant", messages, tools });
const c = r.choices[0].message.tool_calls[0];
if (r.choices[0].finish_reason !== "tool_calls" || c.function.name !== "set_brightness" ||
    JSON.parse(c.function.arguments).level !== 20) throw new Error(JSON.stringify(r.choices[0]));
let name = "", args = "", fin = "";
for await (const ch of await client.chat.completions.create({ model: "assistant", messages, tools, stream: true })) {
  for (const t of ch.choices[0].delta.tool_calls || []) { name += t.function?.name || ""; args += t.function?.arguments || ""; }
  fin = ch.choices[0].finish_reason || fin;
}
if (name !== "set_brightness" || JSON.parse(args).room !== "kitchen" || fin !== "tool_calls") throw new Error(name + args + fin);
const next = await client.chat.completions.create({ model: "assistant", tools, messages: [...messages, r.choices[0].message,
  { role: "tool", tool_call_id: c.id, content: "done" }] });
if (!next.choices[0].message.content) throw new Error(JSON.stringify(next.choices[0]));
console.log("node ok");
JS
  check "tools: the official Node client (openai): a call, a streamed call, the reply after the tool result ($(tail -c 300 "$TMP/node.txt"))" grep -q "node ok" "$TMP/node.txt"
else
  bad "npm ci of the node clients (tests/integration/node)"
fi
req p6 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' ',"temperature":0.3')"
expect "pipeline: a field the steps do not use is named in shoal.pipeline.ignored" p6 "b['shoal']['pipeline']['ignored']==['temperature']"
req p7 /v1/embeddings '{"model":"assistant","input":"x"}'
expect "pipeline: other endpoints are a 400" p7 "r['status']==400"
kill -TERM "$PID_asst"; wait "$PID_asst" 2>/dev/null
check "request log: decisions, no prompt text" bash -c \
  "grep -q '\"decision\":\"pipeline intent:ok action:ok reply:ok chat:skipped\"' '$TMP/asst-req.log' && ! grep -qi 'kitchen' '$TMP/asst-req.log'"
check "request log: a tool call answered is in the decision" \
  grep -q '"decision":"pipeline intent:ok action:ok reply:skipped chat:skipped tool_call=lights_on"' "$TMP/asst-req.log"

# a random-weight LM with the replies vocabulary (a member that disagrees) and a random reranker
"$SHOAL" gen-model --vocab "$M/replies.gguf" -o "$TMP/noise.gguf" --dim 64 --layers 1 --heads 2 --ffn 128 \
  --ctx 512 --seed 9 2>/dev/null
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-bert-bge.gguf" --arch bert -o "$TMP/rr.gguf" --dim 64 --layers 1 \
  --heads 2 --seed 2 --pooling rank --cls-dense 2>/dev/null
cat >"$TMP/comp.yaml" <<EOF
local:
  - {name: noise-lm, path: $TMP/noise.gguf}
  - {name: rr-enc, path: $TMP/rr.gguf}
  - {name: nlu, path: $M/assistant.gguf}
  - {name: nlu2, path: $M/assistant.gguf}
  - {name: iot, path: $M/iot.gguf}
  - {name: lm, path: $M/replies.gguf}
  - {name: lm2, path: $M/replies.gguf}
models:
  - {name: intent, backends: [nlu]}
  - {name: intent2, backends: [nlu2]}
  - {name: iotc, backends: [iot]}
  - {name: reply, backends: [lm]}
  - {name: reply2, backends: [lm2]}
  - {name: route, policy: classify, classifier: intent, routes: {lights_on: reply, chat: reply2}, min_confidence: 0.5, default: reply2}
  - {name: route-strict, policy: classify, classifier: intent, routes: {lights_on: reply}, min_confidence: 1.0, default: reply2}
  - {name: casc-accept, policy: cascade, cascade: [intent, intent2], signal: classifier_prob, threshold: 0.0}
  - {name: casc-escalate, policy: cascade, cascade: [intent, intent2], signal: classifier_prob, threshold: 1.0}
  - {name: gcasc-accept, policy: cascade, cascade: [reply, reply2], signal: mean_logprob, threshold: -1000}
  - {name: gcasc-escalate, policy: cascade, cascade: [reply, reply2], signal: min_prob, threshold: 1.0}
  - {name: ens, policy: ensemble, ensemble: [intent, {model: intent2, weight: 3}]}
  - {name: ens-bad, policy: ensemble, ensemble: [intent, iotc]}
  - {name: noise, backends: [noise-lm]}
  - {name: rr, backends: [rr-enc]}
  - {name: mix-same, policy: ensemble, combine: tokens, ensemble: [reply, reply2]}
  - {name: mix-gate0, policy: ensemble, combine: tokens, gate: 0, ensemble: [reply, reply2]}
  - {name: mix-noise, policy: ensemble, combine: tokens, gate: 0.5, ensemble: [{model: reply, weight: 3}, noise]}
  - {name: best, policy: ensemble, combine: best_of, k: 3, scorer: reply2, ensemble: [reply]}
  - {name: best-rr, policy: ensemble, combine: best_of, k: 3, scorer: rr, score: rerank, ensemble: [reply]}
  - name: asst-fn
    policy: pipeline
    functions: {set_brightness: dim_lights}
    steps:
      - {name: nlu, classify: intent}
      - {name: say, generate: reply, prompt: "{{nlu.label}}{{nlu.slots_kv|lower}}", max_tokens: 16}
  - name: canary
    policy: weighted
    sticky: user
    backends: [{local: lm, weight: 3}, {local: lm2, weight: 1}]
EOF
start comp --config "$TMP/comp.yaml" --log-file "$TMP/comp-req.log" || { bad "composition config starts"; finish; exit 1; }
R=http://127.0.0.1:$PORT_comp
G=',"max_tokens":6,"temperature":0'
req c1 /v1/chat/completions "$(chat route 'turn on the kitchen lights' "$G")"
expect "classify routing: lights_on -> reply (local:lm), with label headers" c1 \
  "r['status']==200 and h['x-shoal-backend']=='local:lm' and h['x-shoal-label']=='lights_on' and float(h['x-shoal-confidence'])>0.5"
req c2 /v1/chat/completions "$(chat route 'tell me a joke' "$G")"
expect "classify routing: chat -> reply2 (local:lm2)" c2 "h['x-shoal-backend']=='local:lm2' and h['x-shoal-label']=='chat'"
req c3 /v1/chat/completions "$(chat route 'what is the weather in paris' "$G")"
expect "classify routing: an unmapped label -> default" c3 "h['x-shoal-backend']=='local:lm2' and h['x-shoal-label']=='get_weather'"
req c4 /v1/chat/completions "$(chat route-strict 'turn on the kitchen lights' "$G")"
expect "classify routing: below min_confidence -> default" c4 "h['x-shoal-backend']=='local:lm2'"
req c5 /v1/chat/completions "$(chat route 'turn on the kitchen lights' "$G,\"stream\":true")"
expect "classify routing: a stream goes through to the target" c5 \
  "h['x-shoal-backend']=='local:lm' and h['content-type'].startswith('text/event-stream') and 'data: [DONE]' in b"
F_DL='{"type":"function","function":{"name":"dim_lights","parameters":{"type":"object","properties":{"level":{"type":"number"},"room":{"type":"string","enum":["KITCHEN","BEDROOM"]}},"required":["level","room"],"additionalProperties":false}}}'
req f1 /v1/chat/completions "$(chat asst-fn 'dim the bedroom lights to twenty percent' ",\"tools\":[$F_DL]")"
expect "tools: functions: maps the intent set_brightness to dim_lights; no action step: the classify step decides" f1 \
  "b['choices'][0]['finish_reason']=='tool_calls' and b['choices'][0]['message']['tool_calls'][0]['function']['name']=='dim_lights' and json.loads(b['choices'][0]['message']['tool_calls'][0]['function']['arguments'])=={'level':20,'room':'BEDROOM'} and b['shoal']['pipeline']['tool_call']['intent']=='set_brightness'"
req f2 /v1/chat/completions "$(chat asst-fn 'dim the bedroom lights to twenty percent' ",\"tools\":[$F_DIM]")"
expect "tools: a mapped intent does not call its own name (set_brightness declared, dim_lights not): text" f2 \
  "b['choices'][0]['finish_reason']=='stop' and b['choices'][0]['message']['content'] and 'dim_lights' in b['shoal']['pipeline']['tool_call']['reason']"
req k1 /v1/classify '{"model":"casc-accept","input":"turn on the kitchen lights"}'
expect "cascade: a confident first stage answers" k1 \
  "b['shoal']['cascade']['stage']==1 and b['shoal']['cascade']['model']=='intent' and len(b['shoal']['cascade']['tried'])==1 and b['data'][0]['label']=='lights_on' and h['x-shoal-stage'].startswith('1/2')"
req k2 /v1/classify '{"model":"casc-escalate","input":"turn on the kitchen lights"}'
expect "cascade: below the threshold, escalated to the next stage" k2 \
  "b['shoal']['cascade']['stage']==2 and [t['model'] for t in b['shoal']['cascade']['tried']]==['intent','intent2'] and b['shoal']['cascade']['tried'][0]['confidence']<1.0"
req k3 /v1/chat/completions "$(chat gcasc-accept 'lights_on room=kitchen' "$G")"
expect "cascade (generators, mean log-prob): stage 1; log-probs not asked, not returned" k3 \
  "b['shoal']['cascade']['stage']==1 and b['shoal']['cascade']['confidence']<=0 and b['choices'][0]['logprobs'] is None and b['choices'][0]['message']['content']"
req k4 /v1/chat/completions "$(chat gcasc-escalate 'lights_on room=kitchen' "$G,\"logprobs\":true")"
expect "cascade (generators, min prob): escalated; asked log-probs returned" k4 \
  "b['shoal']['cascade']['stage']==2 and b['choices'][0]['logprobs']['content']"
req k5 /v1/chat/completions "$(chat gcasc-escalate 'lights_on room=kitchen' "$G,\"stream\":true")"
expect "cascade: a streaming client gets the accepted answer as SSE" k5 \
  "h['content-type'].startswith('text/event-stream') and b.rstrip().endswith('data: [DONE]') and '\"stage\":2' in b"
req e1 /v1/classify '{"model":"ens","input":["turn on the kitchen lights","tell me a joke"]}'
req e0 /v1/classify '{"model":"intent","input":["turn on the kitchen lights","tell me a joke"]}'
expect "ensemble: weighted average of identical members equals the member" e1 \
  "[d['label'] for d in b['data']]==['lights_on','chat'] and abs(b['data'][0]['score']-json.load(open('$TMP/e0.json'))['body']['data'][0]['score'])<1e-5 and b['shoal']['ensemble']['disagreement']==False and len(b['shoal']['ensemble']['members'])==2"
expect "ensemble: entities from a member" e1 "b['data'][0]['entities'][0]['text']=='kitchen'"
req e2 /v1/classify '{"model":"ens-bad","input":"turn on the kitchen lights"}'
expect "ensemble: members with different label sets are an error naming them" e2 \
  "r['status']==500 and 'intent' in b['error']['message'] and 'iotc' in b['error']['message']"
req e3 /v1/chat/completions "$(chat ens hi)"
expect "ensemble: chat is a 400 (it answers classify)" e3 "r['status']==400"
# generator ensembles: token-level in lockstep, and best-of-k with a scorer
req t0 /v1/chat/completions "$(chat reply 'lights_on room=kitchen' ',"max_tokens":12,"temperature":0')"
req t1 /v1/chat/completions "$(chat mix-same 'lights_on room=kitchen' ',"max_tokens":12,"temperature":0')"
expect "token ensemble: identical members give the member's own greedy text, no disagreement" t1 \
  "r['status']==200 and b['choices'][0]['message']['content']==json.load(open('$TMP/t0.json'))['body']['choices'][0]['message']['content'] and b['shoal']['ensemble']['disagreed']==0 and b['shoal']['ensemble']['tokens']>0"
req t2 /v1/chat/completions "$(chat mix-gate0 'lights_on room=kitchen' ',"max_tokens":12,"temperature":0')"
expect "token ensemble: gate 0 and agreeing members: no position averaged" t2 \
  "b['shoal']['ensemble']['averaged']==0 and b['choices'][0]['message']['content']==json.load(open('$TMP/t0.json'))['body']['choices'][0]['message']['content']"
req t3 /v1/completions '{"model":"mix-noise","prompt":"user: lights_on room=kitchen\nassistant:","max_tokens":10,"temperature":0}'
expect "token ensemble: a disagreeing member: positions averaged where they disagree, max_tokens kept" t3 \
  "r['status']==200 and b['shoal']['ensemble']['disagreed']>0 and b['shoal']['ensemble']['averaged']>=b['shoal']['ensemble']['disagreed'] and b['usage']['completion_tokens']<=10 and len(b['shoal']['ensemble']['members'])==2"
req t4 /v1/completions '{"model":"mix-noise","prompt":"user: lights_on room=kitchen\nassistant:","max_tokens":10,"temperature":0,"stream":true}'
expect "token ensemble: streamed, the same text" t4 \
  "''.join(json.loads(l[6:])['choices'][0]['text'] for l in b.split('\n') if l.startswith('data: {'))==json.load(open('$TMP/t3.json'))['body']['choices'][0]['text']"
req t5 /v1/completions '{"model":"mix-same","prompt":"x","top_p":0.5}'
expect "token ensemble: a sampling field it does not apply (top_p) is a 400 naming it" t5 "r['status']==400 and 'top_p' in b['error']['message']"
req b1 /v1/chat/completions "$(chat best 'lights_on room=kitchen' ',"max_tokens":12,"temperature":1.2')"
check "best_of (loglik): 3 seeded candidates, the chosen one scores highest, its score is the scorer's mean log-likelihood" \
  python3 - "$TMP/b1.json" "$R" <<'PY'
import json, sys, urllib.request
r = json.load(open(sys.argv[1])); b = r["body"]; e = b["shoal"]["ensemble"]
c = e["candidates"]; assert r["status"] == 200 and len(c) == 3 and len({x["seed"] for x in c}) == 3, e
assert max(x["score"] for x in c) == c[e["chosen"]]["score"], e
def score(text):
    body = {"model": "reply2", "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 0}
    q = urllib.request.Request(sys.argv[2] + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    lp = json.load(urllib.request.urlopen(q))["choices"][0]["logprobs"]["token_logprobs"]
    return sum(x for x in lp if x is not None), sum(1 for x in lp if x is not None)
p = "user: lights_on room=kitchen\nassistant: "
(s0, n0), (s1, n1) = score(p), score(p + b["choices"][0]["message"]["content"])
assert abs((s1 - s0) / (n1 - n0) - c[e["chosen"]]["score"]) < 1e-3, ((s1 - s0) / (n1 - n0), c[e["chosen"]])
PY
req b2 /v1/chat/completions "$(chat best-rr 'lights_on room=kitchen' ',"max_tokens":12,"temperature":1.2')"
check "best_of (rerank): the chosen candidate has the best reranker score, the reranker's own" \
  python3 - "$TMP/b2.json" "$R" <<'PY'
import json, sys, urllib.request
r = json.load(open(sys.argv[1])); b = r["body"]; e = b["shoal"]["ensemble"]; c = e["candidates"]
assert r["status"] == 200 and e["score"] == "rerank" and max(x["score"] for x in c) == c[e["chosen"]]["score"], e
body = {"model": "rr", "query": "lights_on room=kitchen", "documents": [b["choices"][0]["message"]["content"]]}
q = urllib.request.Request(sys.argv[2] + "/v1/rerank", json.dumps(body).encode(), {"Content-Type": "application/json"})
s = json.load(urllib.request.urlopen(q))["results"][0]["relevance_score"]
assert abs(s - c[e["chosen"]]["score"]) < 1e-4, (s, c[e["chosen"]])
PY
req b3 /v1/completions '{"model":"best","prompt":"hi","echo":true}'
expect "best_of: echo is a 400 naming it" b3 "r['status']==400 and 'echo' in b['error']['message']"

# weighted: 3:1 without a user; a user sticks to one backend
for i in $(seq 1 40); do
  curl -s -D - -o /dev/null "$R/v1/completions" -d '{"model":"canary","prompt":"hi","max_tokens":1}' |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-shoal-backend"{print $2}'
done >"$TMP/w.txt"
check "weighted 3:1: 30 of 40 to lm, 10 to lm2 ($(sort "$TMP/w.txt" | uniq -c | tr '\n' ' '))" \
  test "$(grep -c 'local:lm$' "$TMP/w.txt")" = 30
for u in alice bob carol dave; do
  for i in 1 2 3 4 5; do
    curl -s -D - -o /dev/null "$R/v1/completions" -d "{\"model\":\"canary\",\"prompt\":\"hi\",\"max_tokens\":1,\"user\":\"$u\"}" |
      tr -d '\r' | awk -F': ' -v u=$u 'tolower($1)=="x-shoal-backend"{print u, $2}'
  done
done >"$TMP/sticky.txt"
check "weighted, sticky user: each user always on one backend ($(sort "$TMP/sticky.txt" | uniq -c | tr "\n" " "))" test "$(sort -u "$TMP/sticky.txt" | wc -l)" = 4
curl -s "$R/metrics" >"$TMP/metrics.txt"
check "metrics: confidence histogram per stage" grep -q 'shoal_compose_confidence_bucket{model="casc-escalate",stage="intent",le="0.5"}' "$TMP/metrics.txt"
check "metrics: escalations" grep -qE '^shoal_compose_escalations_total\{model="casc-escalate",stage="intent"\} [1-9]' "$TMP/metrics.txt"
check "metrics: classify routes by label" grep -qE '^shoal_compose_routes_total\{model="route",label="lights_on",target="reply"\} [1-9]' "$TMP/metrics.txt"
check "metrics: ensemble disagreements series" grep -q '^shoal_compose_disagreements_total{model="ens"}' "$TMP/metrics.txt"
check "metrics: token-ensemble positions averaged" grep -qE '^shoal_compose_ensemble_tokens_total\{model="mix-noise",decided="averaged"\} [1-9]' "$TMP/metrics.txt"
kill -TERM "$PID_comp"; wait "$PID_comp" 2>/dev/null
check "request log: classify decision with label and confidence" bash -c \
  "grep '\"model\":\"route\"' '$TMP/comp-req.log' | grep -q '\"label\":\"lights_on\",\"confidence\"'"

# ---------------------------------------------------------------- 2. across nodes
start na -m nlu="$M/assistant.gguf" -t 1 --log-file /dev/null || { bad "node a"; finish; exit 1; }
start nb -m lm="$M/replies.gguf" -t 1 --log-file /dev/null || { bad "node b"; finish; exit 1; }
start nc -m nlu="$M/assistant.gguf" -t 1 --log-file /dev/null || { bad "node c"; finish; exit 1; }
sed -e "s|^local:|nodes:\n  - {name: a, url: \"http://127.0.0.1:$PORT_na\"}\n  - {name: b, url: \"http://127.0.0.1:$PORT_nb\"}\n  - {name: c, url: \"http://127.0.0.1:$PORT_nc\"}\nlocal:|" \
    -e "s|    backends: \[nlu\]|    backends: [{node: a, model: nlu}]|" \
    -e "s|    backends: \[replies\]|    backends: [{node: b, model: lm}]|" \
    -e "s|path: \.\./models/|path: $M/|" -e "/^listen:/d" \
    "$ROOT/examples/assistant.yaml" >"$TMP/remote.yaml"
cat >>"$TMP/remote.yaml" <<EOF
  - {name: intent-local, backends: [nlu]}
  - {name: casc, policy: cascade, cascade: [intent, intent-local], signal: classifier_prob, threshold: 0.0}
  - {name: intent-c, backends: [{node: c, model: nlu}]}
  - {name: casc-c, policy: cascade, cascade: [intent-c, intent-local], signal: classifier_prob, threshold: 0.0}
EOF
start rt --config "$TMP/remote.yaml" --log-file /dev/null || { bad "router over nodes starts"; finish; exit 1; }
R=http://127.0.0.1:$PORT_rt
req r1 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights')"
expect "across nodes: the pipeline's steps on two nodes" r1 \
  "b['shoal']['pipeline']['steps'][0]['backend']=='a/nlu' and b['shoal']['pipeline']['steps'][2]['backend']=='b/lm' and b['shoal']['pipeline']['steps'][2]['ok']"
req r2 /v1/classify '{"model":"casc","input":"turn on the kitchen lights"}'
expect "across nodes: cascade stage 1 on node a" r2 "b['shoal']['cascade']['stage']==1"
# kill -9 the first cascade stage's node after 10 of 60 classify requests from 4 clients
KILL_AFTER=10 KILL_PID=$PID_nc LOAD_PATH=/v1/classify $CLIENT load "$R" 60 4 '{"model":"casc-c","input":"turn on the kitchen lights"}' >"$TMP/cload.json"
check "fault: cascade stage killed under load: all 60 answered 200, none hung ($(cat "$TMP/cload.json"))" \
  python3 -c "import json; d=json.load(open('$TMP/cload.json')); exit(0 if d['ok']==60 and d['hung']==0 else 1)"
check "fault: after the kill the cascade escalated past the failed stage" \
  python3 -c "import json; d=json.load(open('$TMP/cload.json')); exit(0 if d['fallbacks']>=40 else 1)"
# kill -9 the intent node after 10 of 60 pipeline requests from 4 clients
KILL_AFTER=10 KILL_PID=$PID_na $CLIENT load "$R" 60 4 "$(chat assistant 'turn on the kitchen lights')" >"$TMP/load.json"
cat "$TMP/load.json"
check "fault: all 60 answered 200, none hung ($(cat "$TMP/load.json"))" \
  python3 -c "import json; d=json.load(open('$TMP/load.json')); exit(0 if d['ok']==60 and d['hung']==0 else 1)"
check "fault: the intent step's declared fallback answered after the kill" \
  python3 -c "import json; d=json.load(open('$TMP/load.json')); exit(0 if d['fallbacks']>=40 else 1)"
req r3 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights')"
expect "fault: with node a down, intent falls back to chat and the chat step answers" r3 \
  "r['status']==200 and b['shoal']['pipeline']['steps'][0]['ok']==False and 'fallback' in b['shoal']['pipeline']['steps'][0] and b['shoal']['pipeline']['steps'][3]['ran'] and b['choices'][0]['message']['content']"
req r4 /v1/classify '{"model":"casc","input":"turn on the kitchen lights"}'
expect "fault: a failed cascade stage escalates to the next" r4 \
  "r['status']==200 and b['shoal']['cascade']['stage']==2 and b['shoal']['cascade']['tried'][0]['ok']==False"
kill -9 "$PID_nb" 2>/dev/null
req r5 /v1/chat/completions "$(chat assistant 'tell me a joke')"
expect "fault: both nodes down: every step's fallback, still an answer" r5 \
  "r['status']==200 and b['choices'][0]['message']['content']=='Sorry, I cannot answer that right now.'"

# ---------------------------------------------------------------- 3. every example as shipped
start cas --config "$ROOT/examples/cascade.yaml" --log-file /dev/null || bad "examples/cascade.yaml starts"
R=http://127.0.0.1:$PORT_cas
req x1 /v1/classify '{"model":"intent","input":"dim the hallway lights"}'
expect "examples/cascade.yaml: the cascade answers" x1 "r['status']==200 and b['shoal']['cascade']['stage'] in (1,2)"
req x2 /v1/classify '{"model":"intent-vote","input":"dim the hallway lights"}'
expect "examples/cascade.yaml: the ensemble answers" x2 "r['status']==200 and len(b['shoal']['ensemble']['members'])==2"
req x3 /v1/chat/completions "$(chat chat 'tell me a joke' "$G")"
expect "examples/cascade.yaml: classify routing answers" x3 "r['status']==200 and h['x-shoal-backend']=='local:replies'"
kill -TERM "$PID_cas"; wait "$PID_cas" 2>/dev/null
setsid bash "$ROOT/examples/edge.sh" >"$TMP/edge.log" 2>&1 &
EDGE=$!
PIDS+=("$EDGE")
for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:18080/health && break; sleep 0.1; done
R=http://127.0.0.1:18080
req x4 /v1/chat/completions "$(chat assistant 'turn on the kitchen lights' ',"user":"alice"')"
expect "examples/edge.sh: the pipeline across the two nodes" x4 \
  "r['status']==200 and b['shoal']['pipeline']['steps'][0]['backend'] in ('nlu-node/assistant','nlu-node/assistant-b') and b['shoal']['pipeline']['steps'][1]['backend']=='lm-node/replies'"
kill -TERM -- -"$EDGE" 2>/dev/null; wait "$EDGE" 2>/dev/null
check "examples/edge.sh: stops its nodes and router" bash -c '! curl -sf -o /dev/null http://127.0.0.1:18080/health && ! curl -sf -o /dev/null http://127.0.0.1:18091/health'

# ---------------------------------------------------------------- 4. bad configs
badcfg() { # NAME WANT YAML
  printf '%s\n' "$3" >"$TMP/bad-$1.yaml"
  if out=$("$SHOAL" serve --config "$TMP/bad-$1.yaml" --port 0 2>&1 </dev/null); then
    bad "bad config ($1) was accepted"
  elif grep -q -- "$2" <<<"$out"; then ok "bad config ($1): $out"; else bad "bad config ($1): $out"; fi
}
badcfg schema "keyword 'pattern' is not supported" "local: [{name: n, path: $M/assistant.gguf}]
models:
  - {name: i, backends: [n]}
  - {name: p, policy: pipeline, steps: [{name: a, action: {x: y}, schema: {type: object, properties: {x: {type: string, pattern: a}}}}]}"
badcfg combine "combine 'vote' is not one of probs, tokens, best_of" "local: [{name: n, path: $M/replies.gguf}]
models:
  - {name: a, backends: [n]}
  - {name: e, policy: ensemble, combine: vote, ensemble: [a, a]}"
badcfg scorer "combine: best_of needs scorer" "local: [{name: n, path: $M/replies.gguf}]
models:
  - {name: a, backends: [n]}
  - {name: e, policy: ensemble, combine: best_of, ensemble: [a]}"
badcfg gate "gate is for combine: tokens" "local: [{name: n, path: $M/replies.gguf}]
models:
  - {name: a, backends: [n]}
  - {name: e, policy: ensemble, gate: 0.2, ensemble: [a, a]}"
badcfg fnname "functions: intent 'set_brightness': 'lights.set_brightness' is not a function name a client can declare" "local: [{name: n, path: $M/assistant.gguf}]
models:
  - {name: i, backends: [n]}
  - {name: p, policy: pipeline, functions: {set_brightness: lights.set_brightness}, steps: [{name: a, classify: i}]}"
badcfg fnpolicy "functions is not for this policy" "local: [{name: n, path: $M/assistant.gguf}]
models:
  - {name: i, backends: [n], functions: {a: b}}"
badcfg fnclassify "functions: needs a classify step" "local: [{name: n, path: $M/replies.gguf}]
models:
  - {name: i, backends: [n]}
  - {name: p, policy: pipeline, functions: {a: b}, steps: [{name: a, generate: i}]}"
badcfg ref "names no earlier step" "local: [{name: n, path: $M/assistant.gguf}]
models:
  - {name: i, backends: [n]}
  - {name: p, policy: pipeline, steps: [{name: a, classify: i, input: '{{b.text}}'}]}"
finish
