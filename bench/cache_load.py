#!/usr/bin/env python3
"""Throughput of a node with a response cache against one without, on the same request stream
(a benchmark, not a test; standard library only).

    python3 bench/cache_load.py URL_UNCACHED URL_CACHED [--n 600] [--repeat 0.7] [--clients 8]
        [--model NAME] [--max-tokens 16] [--seed 1]

The stream: N chat requests (greedy, max_tokens tokens) where each request repeats one of the
earlier prompts with probability --repeat (uniformly among them), else asks a new one. The
same stream goes to both URLs, from --clients threads, uncached first; prints requests/s of
each, the ratio, and the hits the cached node reported (X-Shoal-Cache).
"""
import argparse, http.client, json, random, threading, time


def stream(n, repeat, seed):
    rng, seen, out = random.Random(seed), [], []
    for _ in range(n):
        if seen and rng.random() < repeat:
            out.append(rng.choice(seen))
        else:
            seen.append("please handle request %d of the evening" % len(seen))
            out.append(seen[-1])
    return out


def run(url, prompts, clients, model, max_tokens):
    host = url.split("//")[1].rstrip("/")
    lock, idx, hits, fails = threading.Lock(), [0], [0], [0]

    def worker():
        c = http.client.HTTPConnection(host, timeout=60)
        while True:
            with lock:
                if idx[0] >= len(prompts):
                    return
                p = prompts[idx[0]]
                idx[0] += 1
            body = {"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens, "temperature": 0}
            if model:
                body["model"] = model
            c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            with lock:
                hits[0] += r.getheader("X-Shoal-Cache") == "hit"
                fails[0] += r.status != 200

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(prompts) / (time.monotonic() - t0), hits[0], fails[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uncached")
    ap.add_argument("cached")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--repeat", type=float, default=0.7)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    prompts = stream(a.n, a.repeat, a.seed)
    u, _, f1 = run(a.uncached, prompts, a.clients, a.model, a.max_tokens)
    c, hits, f2 = run(a.cached, prompts, a.clients, a.model, a.max_tokens)
    distinct = len(set(prompts))
    print("| node | requests/s | hits | failed |")
    print("| --- | --- | --- | --- |")
    print("| no cache | %.0f | - | %d |" % (u, f1))
    print("| --cache | %.0f | %d of %d (%d distinct prompts) | %d |" % (c, hits, a.n, distinct, f2))
    print("\nratio %.2fx (the ceiling with free hits is %.2fx: the %d distinct prompts still generate)"
          % (c / u, a.n / distinct, distinct))


if __name__ == "__main__":
    main()
