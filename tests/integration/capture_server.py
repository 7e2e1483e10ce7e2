#!/usr/bin/env python3
"""A capture server: what do OpenAI clients really send?

    capture_server.py OUT.jsonl [--port 0]     serve; prints "on http://127.0.0.1:PORT"
    capture_server.py --summarize OUT.jsonl     print, per scenario, each request's shape

Every request (any method, any path) is appended to OUT.jsonl as one JSON line: the scenario
label, method, path, query, headers and the JSON body. The answer is a minimal OpenAI-shaped
response, enough for a client not to crash: a chat completion (or its SSE stream), an
embeddings list (float or base64, as asked), a Responses API object (or its event stream), a
model list. When a request declares tools and asks for one (tool_choice "required" or a named
function, or any tools on a turn without a tool result yet), the answer is a tool call whose
arguments are made up from the declared JSON schema; a json_schema response format gets
content made up from its schema the same way, so parsers on the client side succeed.

A driver labels what follows with POST /__label {"label": "..."} (not recorded).
Python standard library only; loopback only.
"""
import base64
import json
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOCK = threading.Lock()
STATE = {"label": "", "seq": 0}
DIM = 8


# ---- made-up values from a JSON schema ---------------------------------------------------------
def sample(schema, defs=None, depth=0):
    if not isinstance(schema, dict) or depth > 12:
        return None
    defs = defs if defs is not None else {}
    defs = {**defs, **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return sample(defs.get(name, {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for k in ("anyOf", "oneOf", "allOf"):
        if k in schema and schema[k]:
            alts = [a for a in schema[k] if a.get("type") != "null"] or schema[k]
            return sample(alts[0], defs, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or (t is None and "properties" in schema):
        props = schema.get("properties", {})
        return {k: sample(v, defs, depth + 1) for k, v in props.items()}
    if t == "array":
        n = schema.get("minItems", 1)
        return [sample(schema.get("items", {}), defs, depth + 1) for _ in range(n)]
    if t == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if t == "integer":
        return int(schema.get("minimum", 1))
    if t == "number":
        return float(schema.get("minimum", 1.5))
    if t == "boolean":
        return True
    if t == "null":
        return None
    return "x"


def now():
    return int(time.time())


def next_id(prefix):
    with LOCK:
        STATE["seq"] += 1
        return f"{prefix}{STATE['seq']:06d}"


RESPONSES = {}  # id -> input tokens + output tokens, for previous_response_id


def prompt_size(body):
    """A made-up prompt token count that grows with the prompt (and the earlier response)."""
    parts = [body.get(k) for k in ("messages", "input", "instructions", "tools")]
    n = len(json.dumps(parts)) // 4 + 1
    return n + RESPONSES.get(body.get("previous_response_id"), 0)


def chat_usage(body):
    p = prompt_size(body)
    return {"prompt_tokens": p, "completion_tokens": 3, "total_tokens": p + 3,
            "prompt_tokens_details": {"cached_tokens": 0}}


# ---- chat completions ---------------------------------------------------------------------------
def chat_tool(body):
    """The (name, arguments) of the tool call to answer with, or None for text."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    functions = body.get("functions") or []
    if not tools and not functions:
        return None
    tc = body.get("tool_choice", body.get("function_call"))
    if tc == "none":
        return None
    last = (body.get("messages") or [{}])[-1]
    if last.get("role") in ("tool", "function") and tc in (None, "auto"):
        return None  # the follow-up turn: answer in text
    fns = [t["function"] for t in tools] or functions
    fn = fns[0]
    if isinstance(tc, dict):
        want = (tc.get("function") or {}).get("name") or tc.get("name")
        fn = next((f for f in fns if f.get("name") == want), fn)
    return fn["name"], json.dumps(sample(fn.get("parameters") or {"type": "object"}) or {})


def chat_text(body):
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return json.dumps(sample((rf.get("json_schema") or {}).get("schema") or {}))
    if rf.get("type") == "json_object":
        return "{}"
    return "Hello there, captured."


def chat_answer(body):
    tool = chat_tool(body)
    msg = {"role": "assistant", "content": None if tool else chat_text(body), "refusal": None}
    if tool:
        msg["tool_calls"] = [{"id": next_id("call_"), "type": "function",
                              "function": {"name": tool[0], "arguments": tool[1]}}]
    return {"id": next_id("chatcmpl-"), "object": "chat.completion", "created": now(),
            "model": body.get("model", "m"), "system_fingerprint": "capture",
            "choices": [{"index": 0, "message": msg, "logprobs": None,
                         "finish_reason": "tool_calls" if tool else "stop"}],
            "usage": chat_usage(body)}


def chat_stream(body):
    tool = chat_tool(body)
    cid, base = next_id("chatcmpl-"), {"object": "chat.completion.chunk", "created": now(),
                                       "model": body.get("model", "m"), "system_fingerprint": "capture"}

    def chunk(delta, finish=None):
        return dict(base, id=cid, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}])
    out = [chunk({"role": "assistant", "content": ""})]
    if tool:
        name, args = tool
        out.append(chunk({"tool_calls": [{"index": 0, "id": next_id("call_"), "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
        out.append(chunk({}, "tool_calls"))
    else:
        text = chat_text(body)
        step = max(1, len(text) // 3)
        for i in range(0, len(text), step):
            out.append(chunk({"content": text[i:i + step]}))
        out.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append(dict(base, id=cid, choices=[], usage=chat_usage(body)))
    return [json.dumps(c) for c in out] + ["[DONE]"]


# ---- completions ------------------------------------------------------------------------------
def completion_answer(body):
    return {"id": next_id("cmpl-"), "object": "text_completion", "created": now(),
            "model": body.get("model", "m"),
            "choices": [{"index": 0, "text": " captured", "logprobs": None, "finish_reason": "stop"}],
            "usage": chat_usage(body)}


# ---- embeddings ---------------------------------------------------------------------------------
def embeddings_answer(body):
    inp = body.get("input")
    inputs = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
    data = []
    for i, text in enumerate(inputs):
        h = sum(ord(ch) * (j + 1) for j, ch in enumerate(json.dumps(text)))
        v = [((h + 1) * (k + 1) % 7 - 3) / 10.0 + 0.05 for k in range(body.get("dimensions") or DIM)]
        n = sum(x * x for x in v) ** 0.5
        v = [x / n for x in v]
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        else:
            emb = v
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": body.get("model", "m"),
            "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}}


# ---- the Responses API --------------------------------------------------------------------------
def responses_tool(body):
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if not tools:
        return None
    tc = body.get("tool_choice")
    if tc == "none":
        return None
    inp = body.get("input")
    if isinstance(inp, list) and inp and isinstance(inp[-1], dict) and \
            inp[-1].get("type") == "function_call_output" and tc in (None, "auto"):
        return None
    fn = tools[0]
    if isinstance(tc, dict) and tc.get("name"):
        fn = next((t for t in tools if t.get("name") == tc["name"]), fn)
    return fn["name"], json.dumps(sample(fn.get("parameters") or {"type": "object"}) or {})


def responses_text(body):
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(sample(fmt.get("schema") or {}))
    if fmt.get("type") == "json_object":
        return "{}"
    return "Hello there, captured."


def responses_object(body, status="completed", output=None):
    p = prompt_size(body)
    RESPONSES[body["_rid"]] = p + 3
    return {"id": body["_rid"], "object": "response", "created_at": now(), "status": status,
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model", "m"),
            "output": output if output is not None else [], "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": p + 3} if status == "completed" else None,
            "user": None, "metadata": body.get("metadata") or {}, "output_text": None}


def responses_items(body):
    tool = responses_tool(body)
    if tool:
        return [{"type": "function_call", "id": next_id("fc_"), "call_id": next_id("call_"),
                 "name": tool[0], "arguments": tool[1], "status": "completed"}]
    return [{"type": "message", "id": next_id("msg_"), "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": responses_text(body), "annotations": [],
                          "logprobs": []}]}]


def responses_answer(body):
    body["_rid"] = next_id("resp_")
    items = responses_items(body)
    r = responses_object(body, output=items)
    r["output_text"] = "".join(c["text"] for it in items if it["type"] == "message" for c in it["content"])
    return r


def responses_stream(body):
    body["_rid"] = next_id("resp_")
    items = responses_items(body)
    ev, seq = [], [0]

    def e(kind, **kw):
        ev.append(json.dumps(dict(type=kind, sequence_number=seq[0], **kw)))
        seq[0] += 1
    e("response.created", response=responses_object(body, "in_progress"))
    e("response.in_progress", response=responses_object(body, "in_progress"))
    for i, it in enumerate(items):
        if it["type"] == "function_call":
            e("response.output_item.added", output_index=i, item=dict(it, arguments="", status="in_progress"))
            e("response.function_call_arguments.delta", item_id=it["id"], output_index=i, delta=it["arguments"])
            e("response.function_call_arguments.done", item_id=it["id"], output_index=i, arguments=it["arguments"])
            e("response.output_item.done", output_index=i, item=it)
        else:
            text = it["content"][0]["text"]
            e("response.output_item.added", output_index=i, item=dict(it, content=[], status="in_progress"))
            e("response.content_part.added", item_id=it["id"], output_index=i, content_index=0,
              part={"type": "output_text", "text": "", "annotations": []})
            step = max(1, len(text) // 3)
            for k in range(0, len(text), step):
                e("response.output_text.delta", item_id=it["id"], output_index=i, content_index=0,
                  delta=text[k:k + step], logprobs=[])
            e("response.output_text.done", item_id=it["id"], output_index=i, content_index=0, text=text, logprobs=[])
            e("response.content_part.done", item_id=it["id"], output_index=i, content_index=0,
              part=it["content"][0])
            e("response.output_item.done", output_index=i, item=it)
    e("response.completed", response=responses_object(body, "completed", items))
    return ev


# ---- the HTTP side ------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    out_path = None

    def log_message(self, *a):
        pass

    def record(self, body, raw):
        u = urlsplit(self.path)
        rec = {"label": STATE["label"], "t": time.time(), "method": self.command, "path": u.path,
               "query": u.query, "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body if body is not None else (raw.decode("utf-8", "replace") if raw else None)}
        with LOCK, open(self.out_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def send_json(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events, named=False):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for d in events:
            prefix = ""
            if named and d != "[DONE]":
                prefix = f"event: {json.loads(d)['type']}\n"
            self.wfile.write(f"{prefix}data: {d}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        self.record(None, b"")
        path = urlsplit(self.path).path
        if path.endswith("/models"):
            return self.send_json({"object": "list", "data": [
                {"id": "m", "object": "model", "created": 0, "owned_by": "capture"},
                {"id": "e", "object": "model", "created": 0, "owned_by": "capture", "meta": {"dim": DIM}}]})
        self.send_json({"status": "ok"})

    def do_DELETE(self):
        self.record(None, b"")
        self.send_json({"deleted": True})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(self.path).path
        if path == "/__label":
            STATE["label"] = (body or {}).get("label", "")
            return self.send_json({"ok": True})
        self.record(body, raw)
        body = body if isinstance(body, dict) else {}
        stream = bool(body.get("stream"))
        if path.endswith("/chat/completions"):
            return self.send_sse(chat_stream(body)) if stream else self.send_json(chat_answer(body))
        if path.endswith("/completions"):
            return self.send_json(completion_answer(body))
        if path.endswith("/embeddings"):
            return self.send_json(embeddings_answer(body))
        if path.endswith("/responses"):
            return self.send_sse(responses_stream(body), named=True) if stream else \
                self.send_json(responses_answer(body))
        self.send_json({"error": {"message": f"no route {path}", "type": "invalid_request_error",
                                  "param": None, "code": None}}, 404)


# ---- the summary --------------------------------------------------------------------------------
def shape(v, depth=0):
    """A compact description of a JSON value's shape: keys and types, lists by their first item."""
    if isinstance(v, dict):
        if depth > 6:
            return "{...}"
        return "{" + ", ".join(f"{k}: {shape(x, depth + 1)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        if len(v) > 6:
            return "[" + ", ".join(shape(x, depth + 1) for x in v[:6]) + f", ... ({len(v)} items)]"
        return "[" + ", ".join(shape(x, depth + 1) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v) if len(v) <= 40 else json.dumps(v[:37] + "...")
    return json.dumps(v)


def summarize(path):
    for line in open(path):
        r = json.loads(line)
        b = r.get("body")
        print(f"## {r['label']}: {r['method']} {r['path']}{'?' + r['query'] if r['query'] else ''}")
        hs = {k: v for k, v in r["headers"].items() if k in ("user-agent", "x-stainless-helper-method", "accept")}
        print(f"   headers: {json.dumps(hs)}")
        if isinstance(b, dict):
            print(f"   fields: {sorted(b.keys())}")
            for k, v in b.items():
                print(f"     {k}: {shape(v)}")
        elif b is not None:
            print(f"   body: {shape(b)}")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--summarize":
        return summarize(sys.argv[2])
    args = sys.argv[1:]
    port = 0
    if "--port" in args:
        i = args.index("--port")
        port = int(args[i + 1])
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    Handler.out_path = args[0]
    open(args[0], "a").close()
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"capture server on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
