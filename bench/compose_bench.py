#!/usr/bin/env python3
"""Compositions with the shipped models over loopback HTTP (BENCHMARKS.md, docs/cluster.md).
python3 standard library only; needs build/shoal, models/ and the case-study data
(`python3 scripts/gen_data.py build/data --seed 1`, which `make models` also writes).

    python3 bench/compose_bench.py pipeline [--n 400]     the assistant pipeline, 1 and 8 clients
    python3 bench/compose_bench.py cascade  [--png FILE] [--strong assistant-large]
                                                          tiny -> full intent encoder cascade
    python3 bench/compose_bench.py ensemble               classifier ensemble against its members
    python3 bench/compose_bench.py all

pipeline: examples/assistant.yaml as shipped; the test split's utterances posted as chat
  requests, each client sending back to back; end-to-end latency per request (text in, action
  plus reply out) p50 / p90 / p99, requests/s, and how many answers took a step's fallback.
cascade: models/assistant-tiny.gguf first, models/assistant.gguf when the tiny model's top
  probability is below the threshold. One cascade name per threshold in one server, so every
  point is measured, not simulated: intent accuracy on the split and mean latency, as the client
  sees it (HTTP) and inside the server (the request log's total_ms). The threshold is chosen on
  the dev split (the lowest whose dev accuracy reaches 99% of the full model's) and reported on
  the test split.
ensemble: assistant.gguf, assistant-b.gguf and assistant-tiny.gguf, alone and averaged.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "build", "shoal"))
DATA = os.path.join(ROOT, "build", "data", "assistant")
MODELS = os.path.join(ROOT, "models")
THRESHOLDS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]


def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def rows(split):
    path = os.path.join(DATA, split + ".jsonl")
    if not os.path.exists(path):
        sys.exit("compose_bench: %s is missing (python3 scripts/gen_data.py build/data --seed 1)" % path)
    return [json.loads(l) for l in open(path) if l.strip()]


def serve(config, log):
    lf = open(log + ".out", "w")
    p = subprocess.Popen([SHOAL, "serve", "--config", config, "--port", "0", "--log-file", log], stdout=lf, stderr=lf)
    for _ in range(600):
        time.sleep(0.05)
        txt = open(log + ".out").read()
        if "on http://" in txt:
            return p, int(txt.split("on http://")[1].split()[0].rsplit(":", 1)[1].rstrip("/"))
        if p.poll() is not None:
            sys.exit("compose_bench: shoal serve exited:\n" + txt)
    p.kill()
    sys.exit("compose_bench: shoal serve did not start")


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())
    return out, (time.perf_counter() - t0) * 1e3


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


# ---------------------------------------------------------------- pipeline

def pipeline():
    n = int(opt("--n", "400"))
    texts = [r["text"] for r in rows("test")]
    with tempfile.TemporaryDirectory() as tmp:
        srv, port = serve(os.path.join(ROOT, "examples", "assistant.yaml"), os.path.join(tmp, "log"))
        try:
            for t in texts[:20]:  # warm up: first touch of the weights, the schedulers' speed estimates
                post(port, "/v1/chat/completions", {"model": "assistant", "messages": [{"role": "user", "content": t}]})
            print("== assistant pipeline (examples/assistant.yaml), %d test-split utterances per run" % n)
            print("%-8s %8s %8s %8s %8s %10s %10s" % ("clients", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s", "fallbacks"))
            for clients in (1, 8):
                lock = threading.Lock()
                state = {"i": 0, "ms": [], "fb": 0, "err": 0}

                def worker():
                    while True:
                        with lock:
                            if state["i"] >= n:
                                return
                            t = texts[state["i"] % len(texts)]
                            state["i"] += 1
                        try:
                            out, ms = post(port, "/v1/chat/completions",
                                           {"model": "assistant", "messages": [{"role": "user", "content": t}]})
                            fb = any("fallback" in s for s in out["shoal"]["pipeline"]["steps"])
                        except Exception:
                            ms, fb = None, False
                        with lock:
                            if ms is None:
                                state["err"] += 1
                            else:
                                state["ms"].append(ms)
                                state["fb"] += fb

                t0 = time.perf_counter()
                ts = [threading.Thread(target=worker) for _ in range(clients)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                wall = time.perf_counter() - t0
                ms = state["ms"]
                print("%-8d %8.2f %8.2f %8.2f %8.2f %10.1f %6d/%d%s" % (
                    clients, pct(ms, 0.5), pct(ms, 0.9), pct(ms, 0.99), max(ms), len(ms) / wall, state["fb"], len(ms),
                    (" errors %d" % state["err"]) if state["err"] else ""))
        finally:
            srv.terminate()
            srv.wait()


# ---------------------------------------------------------------- cascade

def cascade_config(tmp):
    lines = ["local:",
             "  - {name: tiny, path: %s/assistant-tiny.gguf}" % MODELS,
             "  - {name: full, path: %s/%s.gguf}" % (MODELS, opt("--strong", "assistant")),
             "models:",
             "  - {name: tiny, backends: [tiny]}",
             "  - {name: full, backends: [full]}"]
    for th in THRESHOLDS:
        lines.append("  - {name: casc-%g, policy: cascade, cascade: [tiny, full], signal: classifier_prob, threshold: %g}"
                     % (th, th))
    path = os.path.join(tmp, "cascade.yaml")
    open(path, "w").write("\n".join(lines) + "\n")
    return path


class Conn:
    """One keep-alive connection (a client that keeps its connection, as the OpenAI SDKs do)."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path, body):
        t0 = time.perf_counter()
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        out = json.loads(self.c.getresponse().read())
        return out, (time.perf_counter() - t0) * 1e3


def score_all(port, models, data, log):
    """{model: (accuracy, mean client ms, mean server ms)} over data; the models are interleaved
    utterance by utterance, so that every model sees the same machine state"""
    start = os.path.getsize(log) if os.path.exists(log) else 0
    conn = Conn(port)
    hit = {m: 0 for m in models}
    ms = {m: [] for m in models}
    for r in data:
        for m in models:
            out, t = conn.post("/v1/classify", {"model": m, "input": r["text"]})
            hit[m] += out["data"][0]["label"] == r["intent"]
            ms[m].append(t)
    time.sleep(0.2)
    server = {m: [] for m in models}
    with open(log) as f:
        f.seek(start)
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("model") in server and j.get("path") == "/v1/classify" and "attempts" in j:
                server[j["model"]].append(j["total_ms"])
    return {m: (hit[m] / len(data), statistics.mean(ms[m]), statistics.mean(server[m]) if server[m] else float("nan"))
            for m in models}


def cascade():
    for f in ("assistant-tiny", opt("--strong", "assistant")):
        if not os.path.exists(os.path.join(MODELS, f + ".gguf")):
            sys.exit("compose_bench: models/%s.gguf is missing (make models)" % f)
    dev, test = rows("dev"), rows("test")
    png = opt("--png", os.path.join(ROOT, "docs", "cascade.png"))
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "req.log")
        srv, port = serve(cascade_config(tmp), log)
        try:
            for r in dev[:50]:
                post(port, "/v1/classify", {"model": "tiny", "input": r["text"]})
                post(port, "/v1/classify", {"model": "full", "input": r["text"]})
            res = {}
            models = ["tiny", "full"] + ["casc-%g" % t for t in THRESHOLDS]
            for split, data in (("dev", dev), ("test", test)):
                for m, v in score_all(port, models, data, log).items():
                    res[(split, m)] = v
        finally:
            srv.terminate()
            srv.wait()
    full_dev = res[("dev", "full")][0]
    chosen = next((t for t in THRESHOLDS if res[("dev", "casc-%g" % t)][0] >= 0.99 * full_dev), THRESHOLDS[-1])
    print("== cascade: assistant-tiny -> %s (signal classifier_prob), intent accuracy and mean latency"
          % opt("--strong", "assistant"))
    print("%-14s %9s %9s %12s %12s %9s %12s" % ("model", "dev acc", "test acc", "client ms", "server ms",
                                              "vs full", "server vs"))
    ft = res[("test", "full")]
    for m in ["tiny", "full"] + ["casc-%g" % t for t in THRESHOLDS]:
        d, t = res[("dev", m)], res[("test", m)]
        print("%-14s %8.2f%% %8.2f%% %12.3f %12.3f %8.1f%% %11.1f%%%s" % (
            m, d[0] * 100, t[0] * 100, t[1], t[2], t[0] / ft[0] * 100, t[2] / ft[2] * 100,
            "   <- chosen on dev" if m == "casc-%g" % chosen else ""))
    c = res[("test", "casc-%g" % chosen)]
    print("\nchosen threshold %g (dev): test accuracy %.2f%% = %.1f%% of the full model's %.2f%%; mean latency "
          "%.1f%% of the full model's as the client sees it, %.1f%% inside the server"
          % (chosen, c[0] * 100, c[0] / ft[0] * 100, ft[0] * 100, c[1] / ft[1] * 100, c[2] / ft[2] * 100))
    plot(res, png)
    print("plot: %s" % os.path.relpath(png, ROOT))


def plot(res, path):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from plot_train import Canvas
    cv = Canvas(640, 400)
    x0, y0, x1, y1 = 70, 30, 620, 350
    pts = [(res[("test", "casc-%g" % t)][2], res[("test", "casc-%g" % t)][0]) for t in THRESHOLDS]
    tiny, full = res[("test", "tiny")], res[("test", "full")]
    allx = [p[0] for p in pts] + [tiny[2], full[2]]
    ally = [p[1] for p in pts] + [tiny[0], full[0]]
    xlo, xhi = 0.0, max(allx) * 1.1
    ylo, yhi = min(ally) - 0.02, min(1.0, max(ally) + 0.02)

    def xy(x, y):
        return (x0 + int((x1 - x0) * (x - xlo) / (xhi - xlo)), y1 - int((y1 - y0) * (y - ylo) / (yhi - ylo)))

    grey, black = (200, 200, 200), (0, 0, 0)
    for i in range(5):
        yy = y1 - (y1 - y0) * i // 4
        cv.line(x0, yy, x1, yy, grey)
        cv.text(4, yy - 5, "%.1f" % ((ylo + (yhi - ylo) * i / 4) * 100), (60, 60, 60))
        xx = x0 + (x1 - x0) * i // 4
        cv.text(xx - 10, y1 + 10, "%.2f" % (xlo + (xhi - xlo) * i / 4), (60, 60, 60))
    cv.line(x0, y0, x0, y1, black)
    cv.line(x0, y1, x1, y1, black)
    cv.text(x0 + 6, 8, "TEST ACCURACY PCT VS SERVER MS: CASCADE BLUE TINY RED FULL GREEN", black)
    prev = None
    for x, y in sorted(pts):
        p = xy(x, y)
        if prev:
            cv.line(prev[0], prev[1], p[0], p[1], (30, 80, 220))
        for a in range(-2, 3):
            for b in range(-2, 3):
                cv.set(p[0] + a, p[1] + b, (30, 80, 220))
        prev = p
    for (m, col) in ((tiny, (220, 40, 40)), (full, (30, 160, 60))):
        p = xy(m[2], m[0])
        for a in range(-4, 5):
            for b in range(-4, 5):
                cv.set(p[0] + a, p[1] + b, col)
    cv.png(path)


# ---------------------------------------------------------------- ensemble

def ensemble():
    names = ["assistant", "assistant-b", "assistant-tiny"]
    for f in names:
        if not os.path.exists(os.path.join(MODELS, f + ".gguf")):
            sys.exit("compose_bench: models/%s.gguf is missing (make models)" % f)
    test = rows("test")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "ens.yaml")
        open(cfg, "w").write("\n".join(
            ["local:"] + ["  - {name: %s, path: %s/%s.gguf}" % (n, MODELS, n) for n in names] +
            ["models:"] + ["  - {name: m-%s, backends: [%s]}" % (n, n) for n in names] +
            ["  - {name: ens-ab, policy: ensemble, ensemble: [m-assistant, m-assistant-b]}",
             "  - {name: ens-abt, policy: ensemble, ensemble: [m-assistant, m-assistant-b, m-assistant-tiny]}"]) + "\n")
        log = os.path.join(tmp, "req.log")
        srv, port = serve(cfg, log)
        try:
            print("== classifier ensemble, intent accuracy on the test split (%d utterances)" % len(test))
            for m in ["m-" + n for n in names] + ["ens-ab", "ens-abt"]:
                hit, dis = 0, 0
                for i in range(0, len(test), 64):
                    chunk = test[i:i + 64]
                    out, _ = post(port, "/v1/classify", {"model": m, "input": [r["text"] for r in chunk]})
                    hit += sum(d["label"] == r["intent"] for d, r in zip(out["data"], chunk))
                print("%-18s %7.2f%%" % (m[2:] if m.startswith("m-") else m, hit / len(test) * 100))
        finally:
            srv.terminate()
            srv.wait()


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("pipeline", "all"):
        pipeline()
    if what in ("cascade", "all"):
        cascade()
    if what in ("ensemble", "all"):
        ensemble()
    if what not in ("pipeline", "cascade", "ensemble", "all"):
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
