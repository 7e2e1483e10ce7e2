#!/usr/bin/env python3
"""Checks of the OpenAI API surface (stdlib only): structured outputs, tool calls, n > 1,
logit_bias, the Responses API and its store, embeddings' dimensions.

  api_client.py BASE CHAT_MODEL ENCODER LOGFILE [FMT]

FMT is the tool-call format the server uses for CHAT_MODEL ("hermes" or "llama3"). LOGFILE is
the server's request log (--log-prompts), read to see the prompts the server built. Prints one
line per check and "N passed, M failed"; exits 1 on a failure.
"""
import base64
import os
import http.client
import json
import math
import re
import struct
import sys

BASE, MODEL, ENC, LOG = sys.argv[1:5]
FMT = sys.argv[5] if len(sys.argv) > 5 else "hermes"
HOST = BASE.split("//")[1]
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   api: {name}")
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed += 1
        print(f"FAIL api: {name}: {type(e).__name__}: {e}")


def req(method, path, body=None, stream=False):
    c = http.client.HTTPConnection(HOST, timeout=120)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    if stream and r.status == 200:
        return r.status, data
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def post(path, body, stream=False):
    return req("POST", path, body, stream)


def sse(data):
    """[(event or None, parsed data)] of an SSE body, [DONE] dropped."""
    out = []
    for block in data.split("\n\n"):
        ev, payload = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                payload = line[6:]
        if payload and payload != "[DONE]":
            out.append((ev, json.loads(payload)))
    return out


def need(c, msg):
    if not c:
        raise AssertionError(msg)


# ---- a validator for the JSON Schema subset the tests use -------------------------------
def validate(v, s, path="$"):
    t = s.get("type")
    if "anyOf" in s:
        errs = []
        for sub in s["anyOf"]:
            try:
                validate(v, sub, path)
                return
            except AssertionError as e:
                errs.append(str(e))
        raise AssertionError(f"{path}: no anyOf branch matches ({errs})")
    if "const" in s:
        need(v == s["const"], f"{path}: {v!r} is not the const {s['const']!r}")
    if "enum" in s:
        need(v in s["enum"], f"{path}: {v!r} not in {s['enum']}")
    if t == "object":
        need(isinstance(v, dict), f"{path}: not an object: {v!r}")
        props = s.get("properties", {})
        for k in s.get("required", []):
            need(k in v, f"{path}: required '{k}' missing in {v!r}")
        if s.get("additionalProperties") is False:
            for k in v:
                need(k in props, f"{path}: extra property '{k}'")
        for k, sub in props.items():
            if k in v:
                validate(v[k], sub, f"{path}.{k}")
    elif t == "array":
        need(isinstance(v, list), f"{path}: not an array")
        need(len(v) >= s.get("minItems", 0), f"{path}: fewer than minItems")
        need(len(v) <= s.get("maxItems", 10**9), f"{path}: more than maxItems")
        for i, x in enumerate(v):
            validate(x, s.get("items", {}), f"{path}[{i}]")
    elif t == "integer":
        need(isinstance(v, int) and not isinstance(v, bool), f"{path}: not an integer: {v!r}")
    elif t == "number":
        need(isinstance(v, (int, float)) and not isinstance(v, bool), f"{path}: not a number")
    elif t == "string":
        need(isinstance(v, str), f"{path}: not a string")
        need(len(v) >= s.get("minLength", 0) and len(v) <= s.get("maxLength", 10**9), f"{path}: length")
        if "pattern" in s:
            need(re.search(s["pattern"], v), f"{path}: {v!r} does not match {s['pattern']}")
    elif t == "boolean":
        need(isinstance(v, bool), f"{path}: not a boolean")
    if t in ("integer", "number"):
        if "minimum" in s:
            need(v >= s["minimum"], f"{path}: {v} < minimum {s['minimum']}")
        if "maximum" in s:
            need(v <= s["maximum"], f"{path}: {v} > maximum {s['maximum']}")


SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["lights_on", "lights_off", "set_temperature"]},
        "room": {"type": "string", "maxLength": 12},
        "level": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 1, "maxItems": 3},
        "detail": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                   "additionalProperties": False},
    },
    "required": ["intent", "room", "level", "tags", "detail"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {
        "name": "set_lights", "description": "Switch the lights of a room",
        "parameters": {"type": "object", "properties": {
            "room": {"type": "string", "enum": ["kitchen", "bedroom", "hall"]},
            "on": {"type": "boolean"},
            "brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["room", "on"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 20}}, "required": ["city"], "additionalProperties": False}}},
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
MSG = [{"role": "user", "content": "turn on the kitchen lights"}]
G = {"temperature": 0, "max_tokens": 120}


def chat(extra):
    return post("/v1/chat/completions", {"model": MODEL, "messages": MSG, **G, **extra})


def valid_calls(calls, names=None):
    need(calls, "no tool_calls")
    for c in calls:
        need(c["type"] == "function" and c["id"].startswith("call_"), f"call shape {c}")
        name = c["function"]["name"]
        need(name in PARAMS and (names is None or name in names), f"unexpected function {name}")
        validate(json.loads(c["function"]["arguments"]), PARAMS[name])


# ---- structured outputs -------------------------------------------------------------------
def t_json_object():
    for seed in (1, 2, 3):
        s, j = chat({"response_format": {"type": "json_object"}, "temperature": 1, "seed": seed, "max_tokens": 200})
        need(s == 200, j)
        c = j["choices"][0]
        if c["finish_reason"] == "stop":
            need(isinstance(json.loads(c["message"]["content"]), dict), c["message"]["content"])
        else:  # cut by max_tokens: a prefix of an object
            need(c["message"]["content"].lstrip().startswith("{"), c)


def t_json_schema():
    for seed in (1, 2, 3, 4):
        s, j = chat({"response_format": {"type": "json_schema", "json_schema": {"name": "cmd", "strict": True,
                                                                                  "schema": SCHEMA}},
                     "temperature": 1, "seed": seed, "max_tokens": 300})
        need(s == 200, j)
        c = j["choices"][0]
        need(c["finish_reason"] == "stop", f"finish {c['finish_reason']}: {c['message']['content']!r}")
        validate(json.loads(c["message"]["content"]), SCHEMA)


def t_json_schema_stream():
    s, data = chat({"response_format": {"type": "json_schema", "json_schema": {"name": "cmd", "schema": SCHEMA}},
                    "stream": True, "temperature": 1, "seed": 7, "max_tokens": 300})
    need(s == 200, data)
    text = "".join(d["choices"][0]["delta"].get("content") or "" for _, d in sse(data) if d.get("choices"))
    validate(json.loads(text), SCHEMA)


def t_completions_schema():
    s, j = post("/v1/completions", {"model": MODEL, "prompt": "A command as JSON:", "temperature": 1, "seed": 5,
                                    "max_tokens": 300,
                                    "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}})
    need(s == 200, j)
    validate(json.loads(j["choices"][0]["text"]), SCHEMA)


def t_grammar():
    seen = set()
    for seed in range(6):
        s, j = chat({"response_format": {"type": "grammar", "grammar": 'root ::= ("yes" | "no") "."'},
                     "temperature": 1, "seed": seed})
        need(s == 200, j)
        t = j["choices"][0]["message"]["content"]
        need(t in ("yes.", "no."), repr(t))
        need(j["choices"][0]["finish_reason"] == "stop", j)
        seen.add(t)


def t_bad_schema():
    s, j = chat({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}}}})
    need(s == 400 and "multipleOf" in j["error"]["message"], (s, j))
    s, j = chat({"response_format": {"type": "grammar", "grammar": "root ::= undefined-rule"}})
    need(s == 400 and "undefined-rule" in j["error"]["message"], (s, j))


# ---- tools --------------------------------------------------------------------------------
def t_tools_required():
    for seed in (1, 2, 3):
        s, j = chat({"tools": TOOLS, "tool_choice": "required", "temperature": 1, "seed": seed, "max_tokens": 200})
        need(s == 200, j)
        c = j["choices"][0]
        need(c["finish_reason"] == "tool_calls", c)
        need(c["message"]["content"] is None, c["message"])
        valid_calls(c["message"]["tool_calls"])


def t_tools_named():
    s, j = chat({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                 "temperature": 1, "seed": 3, "max_tokens": 200})
    need(s == 200, j)
    calls = j["choices"][0]["message"]["tool_calls"]
    valid_calls(calls, {"get_weather"})


def t_tools_not_parallel():
    for seed in (1, 2, 3):
        s, j = chat({"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False,
                     "temperature": 1, "seed": seed, "max_tokens": 200})
        need(s == 200, j)
        need(len(j["choices"][0]["message"]["tool_calls"]) == 1, j)


def t_tools_none():
    s, j = chat({"tools": TOOLS, "tool_choice": "none", "max_tokens": 8})
    need(s == 200, j)
    m = j["choices"][0]["message"]
    need("tool_calls" not in m and isinstance(m["content"], str), m)


def t_tools_auto():
    # a random model rarely opens a call by itself: the answer must be well formed either way
    for seed in (1, 2):
        s, j = chat({"tools": TOOLS, "temperature": 1, "seed": seed, "max_tokens": 30})
        need(s == 200, j)
        c = j["choices"][0]
        if c["finish_reason"] == "tool_calls":
            valid_calls(c["message"]["tool_calls"])
        else:
            need(isinstance(c["message"]["content"], str) and "tool_calls" not in c["message"], c)


def t_tools_stream():
    s, data = chat({"tools": TOOLS, "tool_choice": "required", "stream": True, "temperature": 1, "seed": 4,
                    "max_tokens": 200})
    need(s == 200, data)
    calls, finish = {}, None
    for _, d in sse(data):
        for ch in d.get("choices", []):
            for tc in ch["delta"].get("tool_calls") or []:
                e = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                e["id"] = tc.get("id") or e["id"]
                fn = tc.get("function", {})
                e["name"] += fn.get("name") or ""
                e["arguments"] += fn.get("arguments") or ""
            finish = ch.get("finish_reason") or finish
    need(finish == "tool_calls" and calls, (finish, calls))
    valid_calls([{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in calls.values()])


def t_tool_messages():
    conv = MSG + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "set_lights", "arguments": "{\"room\":\"kitchen\",\"on\":true}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "MARKER-RESULT-42"}]
    s, j = post("/v1/chat/completions", {"model": MODEL, "messages": conv, "tools": TOOLS, "max_tokens": 4,
                                         "temperature": 0, "user": "tool-messages-check"})
    need(s == 200, j)
    prompt = None
    for line in open(LOG):
        if "MARKER-RESULT-42" in line:
            prompt = json.loads(line).get("prompt")
    need(prompt and "MARKER-RESULT-42" in prompt, "the tool result is not in the prompt")
    if FMT == "hermes":
        need("<tool_response>\nMARKER-RESULT-42\n</tool_response>" in prompt, prompt)
        need("<tool_call>\n{\"name\": \"set_lights\"" in prompt and "<tools>" in prompt, prompt)
    else:
        need("ipython" in prompt and "\"parameters\"" in prompt, prompt)


def t_tools_bad():
    s, j = chat({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "format": "hostname-of-mars"}}}}}],
        "tool_choice": "required"})
    need(s == 400 and j["error"]["param"].startswith("tools[0]"), (s, j))


# ---- n > 1, logit_bias ---------------------------------------------------------------------
def t_n():
    s, j = chat({"n": 3, "temperature": 1, "seed": 11, "max_tokens": 12})
    need(s == 200 and [c["index"] for c in j["choices"]] == [0, 1, 2], j)
    texts = [c["message"]["content"] for c in j["choices"]]
    need(len(set(texts)) > 1, f"three samples with seeds 11, 12, 13 all equal: {texts}")
    need(3 <= j["usage"]["completion_tokens"] <= 36 and j["usage"]["prompt_tokens"] > 0, j["usage"])
    # each choice equals the same request alone with its seed
    s1, one = chat({"temperature": 1, "seed": 12, "max_tokens": 12})
    need(one["choices"][0]["message"]["content"] == texts[1], (one, texts))


def t_n_stream():
    s, data = chat({"n": 2, "stream": True, "temperature": 1, "seed": 3, "max_tokens": 6})
    need(s == 200, data)
    fin = {}
    for _, d in sse(data):
        for ch in d.get("choices", []):
            if ch.get("finish_reason"):
                fin[ch["index"]] = ch["finish_reason"]
    need(fin == {0: "length", 1: "length"}, fin)


def t_logit_bias():
    s, j = post("/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 5, "temperature": 0,
                                    "logit_bias": {"1000": 100}, "return_token_ids": True})
    need(s == 200, j)
    need(j["choices"][0]["token_ids"] == [1000] * 5, j["choices"][0])
    s, j = post("/v1/completions", {"model": MODEL, "prompt": "Hello", "logit_bias": {"99999999": 5}})
    need(s == 400, j)


# ---- the Responses API --------------------------------------------------------------------
def t_responses():
    s, r = post("/v1/responses", {"model": MODEL, "input": "turn on the kitchen lights", "max_output_tokens": 8,
                                  "temperature": 0, "instructions": "You are a home assistant."})
    need(s == 200 and r["object"] == "response" and r["status"] in ("completed", "incomplete"), r)
    msg = r["output"][0]
    need(msg["type"] == "message" and msg["content"][0]["type"] == "output_text", msg)
    need(r["usage"]["output_tokens"] == 8 and r["instructions"] == "You are a home assistant.", r)
    s, g = req("GET", "/v1/responses/" + r["id"])
    need(s == 200 and g["output"] == r["output"], g)
    # continue the conversation: the earlier turn is in the prompt, the old instructions are not
    s, r2 = post("/v1/responses", {"model": MODEL, "input": [{"role": "user", "content": "MARKER-SECOND-TURN"}],
                                   "previous_response_id": r["id"], "max_output_tokens": 4, "temperature": 0})
    need(s == 200 and r2["previous_response_id"] == r["id"], r2)
    prompt = None
    for line in open(LOG):
        if "MARKER-SECOND-TURN" in line:
            prompt = json.loads(line).get("prompt")
    need(prompt and "turn on the kitchen lights" in prompt and msg["content"][0]["text"] in prompt, prompt)
    need("You are a home assistant." not in prompt, "instructions carried over")
    s, d = req("DELETE", "/v1/responses/" + r2["id"])
    need(s == 200 and d["deleted"] is True, d)
    s, g = req("GET", "/v1/responses/" + r2["id"])
    need(s == 404, g)
    s, e = post("/v1/responses", {"model": MODEL, "input": "x", "previous_response_id": r2["id"]})
    need(s == 404 and e["error"]["param"] == "previous_response_id", e)
    s, r3 = post("/v1/responses", {"model": MODEL, "input": "no store", "store": False, "max_output_tokens": 2})
    need(s == 200, r3)
    s, g = req("GET", "/v1/responses/" + r3["id"])
    need(s == 404, (s, g))
    open(LOG + ".kept-id", "w").write(r["id"])


def t_responses_stream():
    s, data = post("/v1/responses", {"model": MODEL, "input": "hello", "stream": True, "max_output_tokens": 10,
                                     "temperature": 0}, stream=True)
    need(s == 200, data)
    evs = sse(data)
    types = [e for e, _ in evs]
    need(types[0] == "response.created" and types[1] == "response.in_progress", types)
    need(types[-1] in ("response.completed", "response.incomplete"), types)
    need([d["sequence_number"] for _, d in evs] == list(range(len(evs))), "sequence numbers")
    need(all(d["type"] == e for e, d in evs), "event names match types")
    text = "".join(d["delta"] for e, d in evs if e == "response.output_text.delta")
    final = evs[-1][1]["response"]
    need(final["output"][0]["content"][0]["text"] == text, (text, final["output"]))
    done = [d for e, d in evs if e == "response.output_text.done"]
    need(done and done[0]["text"] == text, done)
    s, g = req("GET", "/v1/responses/" + final["id"])
    need(s == 200 and g["output"][0]["content"][0]["text"] == text, g)


def t_responses_tools_format():
    tools = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]}
             for t in TOOLS]
    s, r = post("/v1/responses", {"model": MODEL, "input": "lights", "tools": tools, "tool_choice": "required",
                                  "temperature": 1, "seed": 2, "max_output_tokens": 200})
    need(s == 200, r)
    fc = [o for o in r["output"] if o["type"] == "function_call"]
    need(fc, r["output"])
    for o in fc:
        validate(json.loads(o["arguments"]), PARAMS[o["name"]])
    # the call's result goes back as a function_call_output item
    s, r2 = post("/v1/responses", {"model": MODEL, "previous_response_id": r["id"], "max_output_tokens": 4,
                                   "input": [{"type": "function_call_output", "call_id": fc[0]["call_id"],
                                              "output": "MARKER-FC-OUTPUT"}], "tools": tools})
    need(s == 200, r2)
    s, r3 = post("/v1/responses", {"model": MODEL, "input": "a command", "temperature": 1, "seed": 3,
                                   "max_output_tokens": 300,
                                   "text": {"format": {"type": "json_schema", "name": "cmd", "schema": SCHEMA,
                                                       "strict": True}}})
    need(s == 200, r3)
    validate(json.loads(r3["output"][0]["content"][0]["text"]), SCHEMA)
    s, data = post("/v1/responses", {"model": MODEL, "input": "lights", "tools": tools, "tool_choice": "required",
                                     "stream": True, "temperature": 1, "seed": 2, "max_output_tokens": 200},
                   stream=True)
    evs = sse(data)
    args = [d for e, d in evs if e == "response.function_call_arguments.done"]
    need(args and json.loads(args[0]["arguments"]) is not None, [e for e, _ in evs])


# ---- embeddings ---------------------------------------------------------------------------
def t_dimensions():
    s, j = post("/v1/embeddings", {"model": ENC, "input": "hello there", "dimensions": 16})
    need(s == 400 and j["error"]["param"] == "dimensions", (s, j))
    s, full = post("/v1/embeddings", {"model": ENC, "input": "hello there"})
    need(s == 200, full)
    n = len(full["data"][0]["embedding"])
    s, same = post("/v1/embeddings", {"model": ENC, "input": "hello there", "dimensions": n,
                                      "encoding_format": "base64"})
    need(s == 200, same)
    raw = base64.b64decode(same["data"][0]["embedding"])
    vec = struct.unpack(f"<{len(raw) // 4}f", raw)
    need(len(vec) == n and all(abs(a - b) < 1e-6 for a, b in zip(vec, full["data"][0]["embedding"])), "base64")
    s, j = post("/v1/embeddings", {"model": ENC, "input": "hello there", "dimensions": n + 1})
    need(s == 400, j)


def t_dimensions_matryoshka(model):
    def f():
        s, full = post("/v1/embeddings", {"model": model, "input": "hello there"})
        s, cut = post("/v1/embeddings", {"model": model, "input": "hello there", "dimensions": 16})
        need(s == 200, cut)
        v = cut["data"][0]["embedding"]
        need(len(v) == 16 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4, "16 floats of unit length")
        w = full["data"][0]["embedding"][:16]
        norm = math.sqrt(sum(x * x for x in w))
        need(all(abs(a - b / norm) < 1e-5 for a, b in zip(v, w)), "the renormalized prefix")
    return f


checks = [("response_format json_object: a JSON object", t_json_object),
          ("response_format json_schema strict: valid against the schema (4 seeds)", t_json_schema),
          ("json_schema while streaming", t_json_schema_stream),
          ("response_format on /v1/completions", t_completions_schema),
          ("raw GBNF grammar (shoal extension)", t_grammar),
          ("unsupported schema keyword / bad grammar: 400 naming it", t_bad_schema),
          ("tools, tool_choice required: valid tool_calls, finish tool_calls", t_tools_required),
          ("tool_choice naming a function", t_tools_named),
          ("parallel_tool_calls false: exactly one call", t_tools_not_parallel),
          ("tool_choice none: text", t_tools_none),
          ("tool_choice auto: well-formed either way", t_tools_auto),
          ("tool calls streamed as deltas", t_tools_stream),
          ("assistant tool_calls and tool messages in the prompt", t_tool_messages),
          ("a parameters schema that cannot be enforced: 400", t_tools_bad),
          ("n = 3: three choices, each the request alone with its seed", t_n),
          ("n = 2 streamed: both choices finish", t_n_stream),
          ("logit_bias", t_logit_bias),
          ("responses: create, GET, previous_response_id, DELETE, store false", t_responses),
          ("responses: the event stream", t_responses_stream),
          ("responses: tools, function_call_output, text.format", t_responses_tools_format),
          ] + ([("embeddings dimensions without --matryoshka; base64", t_dimensions)] if ENC != "none" else [])
if len(sys.argv) > 6:
    checks.append(("embeddings dimensions with --matryoshka", t_dimensions_matryoshka(sys.argv[6])))
only = [c for c in checks if FMT == "hermes" or c[1] in (t_tools_required, t_tools_stream, t_tool_messages,
                                                          t_tools_not_parallel)]
tag = os.environ.get("API_TAG", FMT)
for name, fn in only:
    check(f"[{tag}] {name}", fn)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
