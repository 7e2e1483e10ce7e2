#!/usr/bin/env python3
"""Load benchmark for a running `shoal serve` node (or any OpenAI-compatible server).

    python3 bench/serve_load.py --url http://127.0.0.1:8080 [--model NAME] [--streams 1,4,8]
        [--tokens 128] [--rounds 3] [--ttft-prompt 32] [--ttft-runs 20] [--logprobs]

1. Aggregate generation throughput: for each concurrency C, C clients each stream one
   completion of --tokens tokens (greedy, ignore_eos-like: random-weight models rarely stop;
   requests that stop early are counted by what they produced) at the same time; throughput =
   all generated tokens / wall time from the first request sent to the last [DONE]. The median
   of --rounds rounds is reported, with per-stream tokens/s.
2. Time to first token: a prompt of exactly --ttft-prompt tokens (token ids, so the tokenizer is
   not measured), max_tokens 1, one request at a time; median and p90 of --ttft-runs runs,
   measured at the client from sending the request to receiving the first token's SSE event.
Tokens are counted from the final usage chunk (stream_options.include_usage), or, with
--logprobs, from the per-token log-probabilities (which makes the server compute a softmax over
the vocabulary for every token). Standard library only. Prints a Markdown table.
"""
import argparse, http.client, json, statistics, threading, time, urllib.parse


def stream_completion(host, port, body, result):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first = None
    n = usage_n = 0
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: "):
                continue
            data = ev[6:]
            if data == b"[DONE]":
                result.update(t0=t0, t_first=first, t_end=time.perf_counter(), n=n or usage_n)
                conn.close()
                return
            j = json.loads(data)
            if j.get("usage") and not j.get("choices"):
                usage_n = j["usage"]["completion_tokens"]
            if j.get("choices"):
                if first is None:
                    first = time.perf_counter()
                if j["choices"][0].get("logprobs"):
                    n += len(j["choices"][0]["logprobs"]["tokens"])
    result.update(t0=t0, t_first=first, t_end=time.perf_counter(), n=n, error=resp.status)


LOGPROBS = False  # --logprobs: ask for the chosen token's log-probability (costs a softmax per token)


def request_body(extra):
    body = dict(extra, temperature=0, stream=True, stream_options={"include_usage": True})
    if LOGPROBS:
        body["logprobs"] = 0
    return body


def run_round(host, port, model, c, tokens, seed0):
    results = [dict() for _ in range(c)]
    threads = []
    for i in range(c):
        body = request_body({"prompt": f"Stream {seed0 + i}: once upon a time in a land far away",
                             "max_tokens": tokens})
        if model:
            body["model"] = model
        threads.append(threading.Thread(target=stream_completion, args=(host, port, body, results[i])))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["t_end"] for r in results) - t0
    total = sum(r["n"] for r in results)
    per = [r["n"] / (r["t_end"] - r["t_first"]) for r in results if r["t_first"] and r["n"] > 1]
    return total / wall, statistics.median(per) if per else 0.0, total


def ttft(host, port, model, n_prompt, runs):
    out = []
    for i in range(runs):
        # distinct first token each run, so no prefix is reused from the previous run
        ids = [1] + [(1000 + 37 * i + 11 * k) % 30000 + 100 for k in range(n_prompt - 1)]
        body = request_body({"prompt": ids, "max_tokens": 1})
        if model:
            body["model"] = model
        r = {}
        stream_completion(host, port, body, r)
        out.append((r["t_first"] - r["t0"]) * 1e3)
    out.sort()
    return statistics.median(out), out[int(0.9 * (len(out) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model")
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ttft-prompt", type=int, default=32)
    ap.add_argument("--ttft-runs", type=int, default=20)
    ap.add_argument("--logprobs", action="store_true", help="request log-probabilities with every token")
    a = ap.parse_args()
    global LOGPROBS
    LOGPROBS = a.logprobs
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    run_round(host, port, a.model, 1, 8, 999)  # warm-up
    print(f"| concurrent streams | aggregate tok/s (median of {a.rounds}) | per-stream tok/s | vs 1 stream |")
    print("| --- | --- | --- | --- |")
    base = None
    for c in [int(x) for x in a.streams.split(",")]:
        rs = [run_round(host, port, a.model, c, a.tokens, 100 * r) for r in range(a.rounds)]
        agg = statistics.median(x[0] for x in rs)
        per = statistics.median(x[1] for x in rs)
        base = base or agg
        print(f"| {c} | {agg:.1f} | {per:.1f} | {agg / base:.2f}x |")
    med, p90 = ttft(host, port, a.model, a.ttft_prompt, a.ttft_runs)
    print(f"\ntime to first token, {a.ttft_prompt}-token prompt, one request at a time: "
          f"median {med:.2f} ms, p90 {p90:.2f} ms ({a.ttft_runs} runs)")


if __name__ == "__main__":
    main()
