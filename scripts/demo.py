#!/usr/bin/env python3
"""The main job (`make run`): the shipped specialists answering, through `shoal serve`.

    python3 scripts/demo.py [--models DIR] [TEXT...]

Starts `shoal serve` on a free loopback port with models/assistant.gguf, models/iot.gguf and
models/replies.gguf, then:
  * voice commands (the arguments, or a few built-in ones) go to /v1/classify on the assistant
    encoder: the intent with its probability and the slots with their character spans, in one
    forward pass; the intent and slots become the reply LM's action prompt ("lights_on
    room=kitchen"), and /v1/chat/completions on the reply LM answers it;
  * an IoT sensor window goes to /v1/classify on the IoT encoder for its anomaly label; the
    sensor that stands out becomes the reply LM's prompt for a one-sentence explanation.
Each line shows the round-trip time of the HTTP request as this client measured it. The steps are
chained here, in the client.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_data  # noqa: E402  (the IoT window's change line and summary, as the training data has them)

SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "build", "shoal"))
COMMANDS = [
    "turn on the kitchen lights",
    "um, could you set the bedroom lights to 40 percent please",
    "it's way too dark in the living room",
    "set a timer for 10 minutes",
    "Play some jazz by Miles Davis",
    "what's the weather like in Berlin tomorrow",
    "add milk to my shopping list",
    "who wrote the odyssey?",
]
# An IoT window: three readings per sensor and its baseline (pump 7's vibration is 4.6x its baseline).
IOT = {"machine": "pump 7", "readings": {"temperature": ([61.8, 62.5, 63.1], 61.0),
                                        "vibration": ([9.9, 12.7, 14.6], 3.2),
                                        "pressure": ([4.02, 3.98, 4.01], 4.0)}}


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())
    return out, 1000 * (time.perf_counter() - t0)


def start(models, config=None):
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    args = [SHOAL, "serve", "--port", "0", "--responses-db", "none"]
    if config:
        args += ["--config", config]
    else:
        for name in ("assistant", "iot", "replies"):
            path = os.path.join(models, name + ".gguf")
            if not os.path.exists(path):
                sys.exit("demo: %s is missing (make models trains it)" % path)
            args += ["-m", "%s=%s" % (name, path)]
    srv = subprocess.Popen(args, stdout=log, stderr=log)
    for _ in range(400):
        time.sleep(0.05)
        txt = open(log.name).read()
        if "on http://" in txt:
            return srv, int(txt.split("on http://")[1].split()[0].rsplit(":", 1)[1].rstrip("/")), log.name
        if srv.poll() is not None:
            sys.exit("demo: shoal serve exited:\n" + txt)
    srv.terminate()
    sys.exit("demo: shoal serve did not start:\n" + open(log.name).read())


def reply(port, prompt):
    out, ms = post(port, "/v1/chat/completions", {"model": "replies", "temperature": 0, "max_tokens": 48,
                                                  "messages": [{"role": "user", "content": prompt}]})
    return out["choices"][0]["message"]["content"].strip(), ms


def main():
    argv = sys.argv[1:]
    models = os.path.join(ROOT, "models")
    if argv[:1] == ["--models"]:
        models, argv = argv[1], argv[2:]
    srv, port, logname = start(models)
    try:
        post(port, "/v1/classify", {"model": "assistant", "input": "warm up"})  # first-touch of the weights
        print("== voice assistant: models/assistant.gguf (intent + slots) -> models/replies.gguf")
        for text in argv or COMMANDS:
            out, ms = post(port, "/v1/classify", {"model": "assistant", "input": text})
            d = out["data"][0]
            slots = {e["label"]: e["text"] for e in d.get("entities", [])}
            print('\n"%s"' % text)
            print("  intent  %-16s p=%.3f   (%.2f ms round trip)" % (d["label"], d["score"], ms))
            for e in d.get("entities", []):
                print("  slot    %-10s %-18s chars %d..%d  p=%.2f" %
                      (e["label"], '"%s"' % e["text"], e["start"], e["end"], e["score"]))
            prompt = text if d["label"] == "chat" else gen_data.action_text(d["label"], slots)
            answer, ms2 = reply(port, prompt)
            print("  action  %s" % prompt)
            print("  reply   %s   (%.1f ms)" % (answer, ms2))
        print("\n== industrial IoT: models/iot.gguf (anomaly label) -> models/replies.gguf (explanation)")
        rd = IOT["readings"]
        (tw, tb), (vw, vb), (pw, pb) = rd["temperature"], rd["vibration"], rd["pressure"]
        text = gen_data.IOT_TEMPLATES[0].format(m=IOT["machine"], t=gen_data.fmt(tw), tb="%.1f" % tb,
                                                v=gen_data.fmt(vw, 2), vb="%.2f" % vb, p=gen_data.fmt(pw, 2),
                                                pb="%.2f" % pb)
        window = text + " | " + gen_data.iot_changes(rd)
        out, ms = post(port, "/v1/classify", {"model": "iot", "input": window})
        d = out["data"][0]
        print("\n%s" % window)
        print("  label   %-16s p=%.3f   (%.2f ms round trip)" % (d["label"], d["score"], ms))
        sm = gen_data.iot_summary(rd)
        prompt = gen_data.iot_prompt({"intent": d["label"], "machine": IOT["machine"], "summary": sm})
        answer, ms2 = reply(port, prompt)
        print("  finding %s" % prompt)
        print("  reply   %s   (%.1f ms)" % (answer, ms2))
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(logname)
    if models == os.path.join(ROOT, "models"):
        tool_calls(argv or COMMANDS[:2])


# The functions an OpenAI client would declare for the assistant (the pipeline maps the intent to
# the function of the same name and the slots to its arguments, typed by the schema).
TOOLS = [
    {"type": "function", "function": {"name": "set_brightness", "description": "Dim or brighten a room's lights",
                                      "parameters": {"type": "object", "properties": {
                                          "room": {"type": "string"}, "level": {"type": "integer", "minimum": 0,
                                                                               "maximum": 100}},
                                          "required": ["level"]}}},
    {"type": "function", "function": {"name": "lights_on", "description": "Switch a room's lights on",
                                      "parameters": {"type": "object", "properties": {"room": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "lights_off", "description": "Switch a room's lights off",
                                      "parameters": {"type": "object", "properties": {"room": {"type": "string"}}}}},
]


def tool_calls(commands):
    """The same assistant as one OpenAI chat model (examples/assistant.yaml) answering with tool calls."""
    srv, port, logname = start(None, os.path.join(ROOT, "examples", "assistant.yaml"))
    try:
        print("\n== the assistant as an OpenAI chat model with tools (examples/assistant.yaml)")
        post(port, "/v1/chat/completions", {"model": "assistant", "messages": [{"role": "user", "content": "hi"}]})
        for text in commands + ["dim the bedroom lights to twenty percent"]:
            out, ms = post(port, "/v1/chat/completions", {"model": "assistant", "tools": TOOLS,
                                                          "messages": [{"role": "user", "content": text}]})
            c = out["choices"][0]
            print('\n"%s"' % text)
            for call in c["message"].get("tool_calls") or []:
                print("  tool call  %s(%s)   (%.1f ms)" % (call["function"]["name"], call["function"]["arguments"], ms))
            if not c["message"].get("tool_calls"):
                print("  reply      %s   (%.1f ms; %s)" % (c["message"]["content"], ms, c["finish_reason"]))
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(logname)


if __name__ == "__main__":
    main()
