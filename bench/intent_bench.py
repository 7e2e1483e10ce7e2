#!/usr/bin/env python3
"""Intent classification, shoal's shipped assistant encoder against nlp.js (node-nlp), on the
same training and test splits (BENCHMARKS.md). python3 standard library; needs node and the
npm package in bench/nlpjs (installed on first use with `npm ci`/`npm install`).

    python3 bench/intent_bench.py [--model models/assistant.gguf] [--data build/data/assistant]
                                  [--split test]

shoal: intent accuracy (and slot F1) from scripts/eval_models.py; latency per utterance as a
client sees it: each utterance of the split posted alone to /v1/classify of a local
`shoal serve` (loopback HTTP, JSON, one forward pass for intent and slots), median and p95; and
the forward pass alone (`shoal bench --task classify`, one input of the split's median token
count per pass). nlp.js: trained on the training split, scored on the same split
(bench/nlpjs/bench.mjs), its classify() and process() called in-process (no HTTP).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "build", "shoal"))


def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    model = opt("--model", os.path.join(ROOT, "models", "assistant.gguf"))
    data = opt("--data", os.path.join(ROOT, "build", "data", "assistant"))
    split = opt("--split", "test")
    test = os.path.join(data, split + ".jsonl")
    rows = [json.loads(l) for l in open(test) if l.strip()]
    texts = [r["text"] for r in rows]

    ev = json.loads(subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "eval_models.py"), "assistant",
                                    model, test, "--json"], capture_output=True, text=True, check=True).stdout)

    # the split's median token count (for the forward-pass benchmark)
    tok = subprocess.run([SHOAL, "tokenize", "-m", model], input="\n".join(t.replace("\\", "\\\\") for t in texts) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    med_tokens = int(statistics.median(len(l.split()) for l in tok))
    bench = json.loads(subprocess.run([SHOAL, "bench", "-m", model, "--task", "classify", "-L", str(med_tokens),
                                       "-N", "400", "-b", "1", "-r", "5", "-t", "2", "--json"],
                                      capture_output=True, text=True, check=True).stdout)

    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    srv = subprocess.Popen([SHOAL, "serve", "-m", "a=" + model, "--port", "0", "-t", "2"], stdout=log, stderr=log)
    try:
        port = None
        for _ in range(400):
            time.sleep(0.05)
            txt = open(log.name).read()
            if "on http://" in txt:
                port = int(txt.split("on http://")[1].split()[0].rsplit(":", 1)[1].rstrip("/"))
                break
        if port is None:
            sys.exit("intent_bench: shoal serve did not start:\n" + open(log.name).read())
        url = "http://127.0.0.1:%d/v1/classify" % port
        lat = []
        for rep in range(2):  # the first pass warms up
            for t in texts:
                body = json.dumps({"model": "a", "input": t}).encode()
                t0 = time.perf_counter()
                with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"})) as r:
                    r.read()
                if rep:
                    lat.append(1000 * (time.perf_counter() - t0))
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(log.name)
    lat.sort()

    nd = os.path.join(ROOT, "bench", "nlpjs")
    if not os.path.isdir(os.path.join(nd, "node_modules", "node-nlp")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=nd, check=True, capture_output=True)
    nl = json.loads(subprocess.run(["node", os.path.join(nd, "bench.mjs"), os.path.join(data, "train.jsonl"), test],
                                   capture_output=True, text=True, check=True).stdout)

    print("split %s: %d utterances (median %d tokens); trained on %d" % (split, len(rows), med_tokens, nl["train"]))
    print("| | intent accuracy | slot F1 | latency per utterance, p50 / p95 | training |")
    print("| --- | --- | --- | --- | --- |")
    print("| shoal, %s (%s) | %.2f%% | %.2f%% | %.3f / %.3f ms through HTTP (/v1/classify); %.3f ms the forward pass | `make models` |" %
          (os.path.basename(model), bench["type"], 100 * ev["intent_accuracy"], 100 * ev["slot_f1"],
           lat[len(lat) // 2], lat[int(0.95 * len(lat))], bench["pass_ms"]))
    print("| %s | %.2f%% | - | %.3f / %.3f ms classify(), %.3f / %.3f ms process(), in-process | %.1f s |" %
          (nl["peer"], 100 * nl["intent_accuracy"], nl["classify_ms_p50"], nl["classify_ms_p95"],
           nl["process_ms_p50"], nl["process_ms_p95"], nl["train_seconds"]))


if __name__ == "__main__":
    main()
