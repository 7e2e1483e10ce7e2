#!/usr/bin/env python3
"""Bounded load through a shoal router while a node is killed (used by test_cluster.sh).

    cluster_load.py --url http://127.0.0.1:PORT --model NAME --requests 500 --clients 8
                    --kill-pid PID --kill-after 150 [--stream-every 4]

--clients threads send --requests completions in all (small, greedy); every --stream-every-th
request streams. After --kill-after requests have completed, the node with --kill-pid gets
SIGKILL. A request counts as:
  succeeded          a whole answer with status 200, or a stream that ended with [DONE];
  failed_mid_stream  a stream that had delivered tokens when its node died and then ended with
                     the router's SSE error event (allowed: nothing can be retried once tokens
                     reached the client);
  failed             anything else (an error status, a stream without tokens that broke...).
Prints one JSON line with the counts, the kill time and the backends seen, and exits 0 when
failed == 0. Standard library only.
"""
import argparse, http.client, json, os, signal, sys, threading, time, urllib.parse, urllib.request


def one(host, port, model, i, stream, out):
    body = {"model": model, "prompt": f"request {i}: the quick brown fox", "max_tokens": 6,
            "temperature": 0, "stream": stream}
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        backend = r.getheader("X-Shoal-Backend", "")
        data = r.read().decode("utf-8", "replace")
        if r.status != 200:
            return out("failed", backend, f"HTTP {r.status}: {data[:200]}")
        if not stream:
            j = json.loads(data)
            ok = j.get("object") == "text_completion" and j["choices"][0]["finish_reason"]
            return out("succeeded" if ok else "failed", backend, "" if ok else data[:200])
        events = [e[6:] for e in data.split("\n\n") if e.startswith("data: ")]
        tokens = sum(1 for e in events if e.startswith("{") and json.loads(e).get("choices"))
        if events and events[-1] == "[DONE]":
            return out("succeeded", backend, "")
        if "event: error" in data and tokens > 0:
            return out("failed_mid_stream", backend, "")
        return out("failed", backend, f"stream without [DONE], {tokens} token events: {data[-200:]}")
    except Exception as e:  # connection-level failure at the router: counts as failed
        return out("failed", "", repr(e))
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kill-pid", type=int, default=0)
    ap.add_argument("--kill-after", type=int, default=150)
    ap.add_argument("--stream-every", type=int, default=4)
    ap.add_argument("--watch-node", default="", help="node name: report ms from the kill to its ejection")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    lock = threading.Lock()
    counts = {"sent": 0, "succeeded": 0, "failed_mid_stream": 0, "failed": 0}
    backends, errors = {}, []
    state = {"next": 0, "done": 0, "kill_t": None}

    def record(kind, backend, err):
        with lock:
            counts[kind] += 1
            state["done"] += 1
            if backend:
                backends[backend] = backends.get(backend, 0) + 1
            if err and len(errors) < 5:
                errors.append(err)
            if a.kill_pid and state["kill_t"] is None and state["done"] >= a.kill_after:
                os.kill(a.kill_pid, signal.SIGKILL)
                state["kill_t"] = time.time()

    def client():
        while True:
            with lock:
                i = state["next"]
                if i >= a.requests:
                    return
                state["next"] += 1
                counts["sent"] += 1
            one(u.hostname, u.port, a.model, i, a.stream_every > 0 and i % a.stream_every == 0, record)

    def watch():
        # from the kill to the moment /v1/cluster shows the node out of rotation
        while state["kill_t"] is None:
            time.sleep(0.002)
        while time.time() - state["kill_t"] < 10:
            d = json.load(urllib.request.urlopen(a.url + "/v1/cluster"))
            n = [x for x in d["nodes"] if x["name"] == a.watch_node][0]
            if n["circuit"] != "closed" or n["health"] == "down":
                state["eject_ms"] = round((time.time() - state["kill_t"]) * 1000, 1)
                return
            time.sleep(0.005)

    wt = threading.Thread(target=watch) if a.watch_node and a.kill_pid else None
    if wt:
        wt.start()
    t0 = time.time()
    th = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if wt:
        wt.join()
    res = dict(counts, seconds=round(time.time() - t0, 2), backends=backends, errors=errors,
               eject_ms=state.get("eject_ms"))
    print(json.dumps(res))
    sys.exit(0 if counts["failed"] == 0 else 1)


if __name__ == "__main__":
    main()
