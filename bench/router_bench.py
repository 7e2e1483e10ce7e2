#!/usr/bin/env python3
"""What a shoal router adds: latency over calling its node directly, and requests/s.

    python3 bench/router_bench.py --direct http://127.0.0.1:N --router http://127.0.0.1:R
        [--model tiny] [--requests 2000] [--rounds 3] [--clients 8] [--seconds 5]
        [--router-pid PID]

1. Added latency: one keep-alive connection, requests one at a time, tiny completions
   (max_tokens 1, greedy). Each round sends --requests to the node directly and --requests
   through the router, interleaved in blocks of 50 so both see the same machine state. The
   router's added latency is the difference of the two medians (and of the p99s); the median
   over --rounds rounds is reported.
2. Throughput: --clients processes, each with its own keep-alive connection, send tiny requests
   back to back for --seconds, first to the node directly and then through the router.
   With --router-pid, the router's CPU time per request (from /proc) is reported too: the
   cost that bounds how many requests/s one core of routing sustains.
Standard library only. Prints Markdown.
"""
import argparse, http.client, json, multiprocessing as mp, os, statistics, time, urllib.parse


def conn_for(url):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.connect()
    import socket
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def body_for(model, i):
    return json.dumps({"model": model, "prompt": f"hi {i % 7}", "max_tokens": 1, "temperature": 0})


def one(c, body):
    t0 = time.perf_counter_ns()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    t = time.perf_counter_ns() - t0
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}")
    return t / 1000.0  # us


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(p / 100.0 * (len(s) - 1) + 0.5))]


def latency_round(a):
    cd, cr = conn_for(a.direct), conn_for(a.router)
    d, r = [], []
    for i in range(20):  # warm-up
        one(cd, body_for(a.model, i)), one(cr, body_for(a.model, i))
    i = 0
    while len(d) < a.requests:
        for _ in range(50):
            d.append(one(cd, body_for(a.model, i))); i += 1
        for _ in range(50):
            r.append(one(cr, body_for(a.model, i))); i += 1
    cd.close(), cr.close()
    return d, r


def worker(url, model, seconds, q):
    c = conn_for(url)
    n, i = 0, 0
    t_end = time.time() + seconds
    while time.time() < t_end:
        one(c, body_for(model, i)); i += 1; n += 1
    q.put(n)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(url, a):
    q = mp.Queue()
    ps = [mp.Process(target=worker, args=(url, a.model, a.seconds, q)) for _ in range(a.clients)]
    t0 = time.time()
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / (time.time() - t0), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--direct", required=True)
    ap.add_argument("--router", required=True)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--router-pid", type=int, default=0)
    a = ap.parse_args()

    rows = []
    for k in range(a.rounds):
        d, r = latency_round(a)
        rows.append((statistics.median(d), statistics.median(r), pct(d, 99), pct(r, 99)))
    print(f"Added latency, {a.requests} sequential tiny requests per side per round, {a.rounds} rounds:\n")
    print("| round | direct p50 us | router p50 us | added p50 us | direct p99 us | router p99 us | added p99 us |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, (dm, rm, d99, r99) in enumerate(rows):
        print(f"| {k + 1} | {dm:.0f} | {rm:.0f} | {rm - dm:.0f} | {d99:.0f} | {r99:.0f} | {r99 - d99:.0f} |")
    add50 = statistics.median(x[1] - x[0] for x in rows)
    add99 = statistics.median(x[3] - x[2] for x in rows)
    print(f"\nmedian over rounds: added p50 {add50:.0f} us, added p99 {add99:.0f} us\n")

    dr, _ = throughput(a.direct, a)
    c0 = cpu_seconds(a.router_pid) if a.router_pid else 0
    rr, n = throughput(a.router, a)
    c1 = cpu_seconds(a.router_pid) if a.router_pid else 0
    print(f"Throughput, {a.clients} client processes, {a.seconds:.0f} s each side:\n")
    print("| path | requests/s |")
    print("| --- | --- |")
    print(f"| node directly | {dr:.0f} |")
    print(f"| through the router | {rr:.0f} |")
    if a.router_pid:
        us = (c1 - c0) / n * 1e6
        print(f"\nrouter CPU per request: {us:.0f} us (user+system, {n} requests) -> "
              f"about {1e6 / us:.0f} requests/s per core of routing")


if __name__ == "__main__":
    main()
