#!/usr/bin/env python3
"""Scores trained specialists on a JSONL split through shoal itself (python3 standard library).

    python3 scripts/eval_models.py assistant MODEL.gguf DATA.jsonl [--min-intent A] [--min-f1 F] [--embed]
    python3 scripts/eval_models.py iot MODEL.gguf DATA.jsonl [--min-acc A]
    python3 scripts/eval_models.py replies MODEL.gguf DATA.jsonl [--min-acc A]

  assistant  intent accuracy and slot F1 (exact span: the same slot name and the same character
             offsets) of `shoal classify --json` on the file's texts; the worst intents and
             templates, and a few errors. --embed: also the pooled embeddings' paraphrase
             recall@1 (the nearest other utterance by cosine has the same intent and slot values).
  iot        label accuracy of `shoal classify --json` on the IoT windows.
  replies    the reply LM answering each action prompt (greedy, through `shoal serve`'s
             /v1/chat/completions): a reply passes when it names the intent's device word and
             every slot value the reply should repeat (room, level, color, ...), and chat
             prompts get an answer that names no device action (--min-acc applies to these);
             IoT findings are scored apart: the explanation names the machine and the anomaly.

--json prints the figures as one JSON object. With a --min-* threshold the exit status is 1
when a figure is below it. SHOAL (environment) is the binary (default build/shoal).
"""
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "build", "shoal"))


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def run_on_texts(args, texts):
    """runs `shoal ARGS -f FILE` on the texts (one per line, escaped as shoal reads them):
    (stdout, seconds)"""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for t in texts:
            f.write(t.replace("\\", "\\\\").replace("\n", "\\n") + "\n")
        name = f.name
    try:
        t0 = time.time()
        out = subprocess.run([SHOAL] + args + ["-f", name], capture_output=True, text=True, check=True).stdout
        return out, time.time() - t0
    finally:
        os.unlink(name)


def classify(model, texts):
    out, dt = run_on_texts(["classify", "-m", model, "--json"], texts)
    data = json.loads(out)["data"]
    assert len(data) == len(texts), "classify answered %d of %d inputs" % (len(data), len(texts))
    return data, dt


def embed(model, texts):
    """L2-normalized pooled embeddings (`shoal embed`, one line of numbers per text)"""
    out, _ = run_on_texts(["embed", "-m", model], texts)
    vecs = [[float(x) for x in line.split()] for line in out.splitlines() if line.strip()]
    assert len(vecs) == len(texts), "embed answered %d of %d inputs" % (len(vecs), len(texts))
    return vecs


def paraphrase_recall(model, rows):
    """for each utterance whose meaning (intent and slot values: the "group") another utterance
    of the split shares, is its nearest neighbour by cosine one of those paraphrases?"""
    rows = [r for r in rows if r["intent"] != "chat" and r.get("group")]
    count = collections.Counter(r["group"] for r in rows)
    if not any(c > 1 for c in count.values()):
        return None
    vecs = embed(model, [r["text"] for r in rows])
    hit = n = 0
    for i, r in enumerate(rows):
        if count[r["group"]] < 2:
            continue
        best, bj = -2.0, -1
        for j, v in enumerate(vecs):
            if j != i:
                c = sum(a * b for a, b in zip(vecs[i], v))
                if c > best:
                    best, bj = c, j
        n += 1
        hit += rows[bj]["group"] == r["group"]
    return hit / n, n


def gold_spans(text, slots):
    """(name, start, end) in code points: each slot's text found in the text, longest first,
    an occurrence used once (the trainer's rule)"""
    used, out = [], []
    for name, val in sorted(slots.items(), key=lambda kv: -len(kv[1])):
        at = 0
        while True:
            i = text.find(val, at)
            if i < 0:
                break
            if not any(i < b and a < i + len(val) for a, b in used):
                used.append((i, i + len(val)))
                out.append((name, i, i + len(val)))
                break
            at = i + 1
    return out


def eval_assistant(model, rows, args):
    data, dt = classify(model, [r["text"] for r in rows])
    ok = 0
    tp = n_pred = n_gold = 0
    per_intent = collections.Counter()
    per_intent_ok = collections.Counter()
    per_tmpl = collections.Counter()
    errors = []
    for r, d in zip(rows, data):
        per_intent[r["intent"]] += 1
        good = d["label"] == r["intent"]
        ok += good
        per_intent_ok[r["intent"]] += good
        if not good:
            per_tmpl[r.get("template", "?")] += 1
            errors.append("%s -> %s: %s" % (r["intent"], d["label"], r["text"]))
        gold = set(gold_spans(r["text"], r.get("slots", {})))
        pred = set((e["label"], e["start"], e["end"]) for e in d.get("entities", []))
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
        if gold != pred and len(errors) < 400:
            errors.append("slots %s -> %s: %s" % (sorted(gold), sorted(pred), r["text"]))
    p = tp / n_pred if n_pred else 1.0
    rc = tp / n_gold if n_gold else 1.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    res = {"n": len(rows), "intent_accuracy": ok / len(rows), "slot_precision": p, "slot_recall": rc,
           "slot_f1": f1, "seconds": dt,
           "per_intent": {k: per_intent_ok[k] / per_intent[k] for k in sorted(per_intent)}}
    pr = paraphrase_recall(model, rows) if args["embed"] else None
    if pr:
        res["paraphrase_recall_at_1"], res["paraphrase_queries"] = pr
    if not args["json"]:
        print("assistant: %d utterances: intent accuracy %.2f%%, slot F1 %.2f%% (P %.2f%%, R %.2f%%)" %
              (len(rows), 100 * res["intent_accuracy"], 100 * f1, 100 * p, 100 * rc))
        if pr:
            print("  embeddings: the nearest neighbour of %d utterances is a paraphrase (same intent and slot "
                  "values) for %.2f%%" % (pr[1], 100 * pr[0]))
        worst = sorted(res["per_intent"].items(), key=lambda kv: kv[1])[:5]
        print("  lowest intents: " + ", ".join("%s %.1f%%" % (k, 100 * v) for k, v in worst))
        if per_tmpl:
            print("  templates with errors: " + ", ".join("%s (%d)" % kv for kv in per_tmpl.most_common(8)))
        for e in errors[: args["show"]]:
            print("  " + e)
    fails = []
    if args["min_intent"] is not None and res["intent_accuracy"] < args["min_intent"]:
        fails.append("intent accuracy %.4f < %.4f" % (res["intent_accuracy"], args["min_intent"]))
    if args["min_f1"] is not None and f1 < args["min_f1"]:
        fails.append("slot F1 %.4f < %.4f" % (f1, args["min_f1"]))
    return res, fails


def eval_iot(model, rows, args):
    data, dt = classify(model, [r["text"] for r in rows])
    ok = sum(d["label"] == r["intent"] for r, d in zip(rows, data))
    conf = collections.Counter((r["intent"], d["label"]) for r, d in zip(rows, data) if d["label"] != r["intent"])
    res = {"n": len(rows), "accuracy": ok / len(rows), "seconds": dt}
    if not args["json"]:
        print("iot: %d windows: label accuracy %.2f%%" % (len(rows), 100 * res["accuracy"]))
        if conf:
            print("  confusions: " + ", ".join("%s->%s (%d)" % (a, b, n) for (a, b), n in conf.most_common(6)))
    fails = []
    if args["min_acc"] is not None and res["accuracy"] < args["min_acc"]:
        fails.append("label accuracy %.4f < %.4f" % (res["accuracy"], args["min_acc"]))
    return res, fails


# the word a reply must use for each intent (the device or the thing acted on)
DEVICE = {"lights_on": ["light"], "lights_off": ["light"], "set_brightness": ["light"], "set_color": ["light"],
          "set_temperature": ["thermostat"], "get_temperature": ["temperature"], "play_music": ["play", "music"],
          "pause_music": ["music"], "set_volume": ["volume"], "set_timer": ["timer"], "cancel_timer": ["timer"],
          "set_alarm": ["alarm", "wake"], "get_weather": ["weather"], "get_time": ["time"],
          "add_to_list": ["add", "list"], "lock_door": ["lock"], "unlock_door": ["unlock"]}
REPEAT = ["room", "level", "color", "temperature", "artist", "genre", "duration", "time", "item", "door",
          "location"]


def reply_ok(row, reply):
    low = reply.lower()
    intent = row.get("intent")
    if intent == "iot":
        # "iot LABEL machine=M sensor=S ratio=R[ frozen]": the reply names the machine and the label's word
        machine = row["prompt"].split("machine=", 1)[1].split(" sensor=")[0].strip().lower()
        return machine in low and row["prompt"].split()[1].split("_")[0] in low
    if intent == "chat":
        return len(low.strip()) > 0 and not any(w in low for w in ("turning on", "turning off", "timer set", "locked"))
    if not any(w in low for w in DEVICE[intent]):
        return False
    return all(row["slots"][k].lower() in low for k in REPEAT if k in row.get("slots", {}))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def eval_replies(model, rows, args):
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    srv = subprocess.Popen([SHOAL, "serve", "-m", "lm=" + model, "--port", "0"], stdout=log, stderr=log)
    port = None
    try:
        for _ in range(300):
            time.sleep(0.05)
            with open(log.name) as f:
                txt = f.read()
            if "on http://" in txt:
                port = int(txt.split("on http://")[1].split()[0].rsplit(":", 1)[1].rstrip("/"))
                break
            if srv.poll() is not None:
                raise SystemExit("eval_models: shoal serve exited:\n" + txt)
        if port is None:
            raise SystemExit("eval_models: shoal serve did not start")
        ok, bad, t0 = 0, [], time.time()
        iot_n = iot_ok = 0
        for r in rows:
            body = json.dumps({"model": "lm", "messages": [{"role": "user", "content": r["prompt"]}],
                               "temperature": 0, "max_tokens": 48}).encode()
            req = urllib.request.Request("http://127.0.0.1:%d/v1/chat/completions" % port, body,
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                reply = json.loads(resp.read())["choices"][0]["message"]["content"]
            good = reply_ok(r, reply)
            if r.get("intent") == "iot":
                iot_n += 1
                iot_ok += good
            else:
                ok += good
            if not good:
                bad.append("%s => %s" % (r["prompt"], reply))
        dt = time.time() - t0
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(log.name)
    n = len(rows) - iot_n
    res = {"n": n, "accuracy": ok / n if n else 1.0, "iot_n": iot_n,
           "iot_accuracy": iot_ok / iot_n if iot_n else None, "seconds": dt}
    if not args["json"]:
        print("replies: %d assistant prompts: %.2f%% name the right device and slot values (%.1f ms per reply)" %
              (n, 100 * res["accuracy"], 1000 * dt / len(rows)))
        if iot_n:
            print("  %d IoT findings: %.2f%% of the explanations name the machine and the anomaly" %
                  (iot_n, 100 * res["iot_accuracy"]))
        for e in bad[: args["show"]]:
            print("  " + e)
    fails = []
    if args["min_acc"] is not None and res["accuracy"] < args["min_acc"]:
        fails.append("reply accuracy %.4f < %.4f" % (res["accuracy"], args["min_acc"]))
    return res, fails


def main():
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[0] not in ("assistant", "iot", "replies"):
        print(__doc__)
        sys.exit(2)
    kind, model, path = argv[:3]
    args = {"json": False, "embed": False, "show": 10, "min_intent": None, "min_f1": None, "min_acc": None, "limit": 0}
    i = 3
    while i < len(argv):
        a = argv[i]
        if a == "--json":
            args["json"] = True
        elif a == "--embed":
            args["embed"] = True
        elif a in ("--min-intent", "--min-f1", "--min-acc") and i + 1 < len(argv):
            args[a[2:].replace("-", "_")] = float(argv[i + 1])
            i += 1
        elif a in ("--show", "--limit") and i + 1 < len(argv):
            args[a[2:]] = int(argv[i + 1])
            i += 1
        else:
            sys.exit("eval_models: unknown option %s" % a)
        i += 1
    rows = load(path)
    if args["limit"]:
        rows = rows[: args["limit"]]
    if not rows:
        sys.exit("eval_models: %s has no rows" % path)
    res, fails = {"assistant": eval_assistant, "iot": eval_iot, "replies": eval_replies}[kind](model, rows, args)
    if args["json"]:
        print(json.dumps(res))
    for f in fails:
        print("eval_models: %s: %s: %s" % (kind, path, f), file=sys.stderr)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
