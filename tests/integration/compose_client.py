#!/usr/bin/env python3
"""HTTP client for tests/integration/test_compose.sh (standard library only).

    compose_client.py call BASE PATH JSON        one request: prints {"status", "headers", "body"} as JSON
    compose_client.py load BASE N CLIENTS JSON   N requests from CLIENTS threads (each with a 20 s timeout);
                                                 prints {"sent", "ok", "statuses", "fallbacks", "hung", "ms"}
                                                 where fallbacks counts answers whose pipeline took a step's
                                                 fallback or whose cascade escalated past a failed stage. KILL_AFTER=K with KILL_PID=P sends SIGKILL to P
                                                 after K answers.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse


def call(base, path, body, timeout=20):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode("utf-8", "replace")
    headers = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw
    return {"status": r.status, "headers": headers, "body": parsed}


def load(base, n, clients, body):
    lock = threading.Lock()
    state = {"sent": 0, "ok": 0, "statuses": {}, "fallbacks": 0, "hung": 0, "ms": [], "done": 0}
    kill_after = int(os.environ.get("KILL_AFTER", "0"))
    kill_pid = int(os.environ.get("KILL_PID", "0"))
    path = os.environ.get("LOAD_PATH", "/v1/chat/completions")

    def worker():
        while True:
            with lock:
                if state["sent"] >= n:
                    return
                state["sent"] += 1
            t0 = time.monotonic()
            try:
                r = call(base, path, body)
                st = r["status"]
                steps = (r["body"].get("shoal", {}).get("pipeline", {}).get("steps", [])
                         if isinstance(r["body"], dict) else [])
                fb = any("fallback" in s for s in steps)
                casc = (r["body"].get("shoal", {}).get("cascade") if isinstance(r["body"], dict) else None)
                fb = fb or bool(casc and any(not t["ok"] for t in casc["tried"]))
            except Exception:  # timeout or reset: counted as hung, never retried
                st, fb = 0, False
            ms = (time.monotonic() - t0) * 1e3
            with lock:
                state["statuses"][str(st)] = state["statuses"].get(str(st), 0) + 1
                state["ok"] += st == 200
                state["fallbacks"] += fb
                state["hung"] += st == 0
                state["ms"].append(ms)
                state["done"] += 1
                if kill_pid and state["done"] == kill_after:
                    os.kill(kill_pid, signal.SIGKILL)

    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ms = sorted(state.pop("ms"))
    state.pop("done")
    state["p50_ms"] = ms[len(ms) // 2] if ms else 0
    state["max_ms"] = ms[-1] if ms else 0
    return state


def main():
    a = sys.argv[1:]
    if a[:1] == ["call"]:
        print(json.dumps(call(a[1], a[2], a[3])))
    elif a[:1] == ["load"]:
        print(json.dumps(load(a[1], int(a[2]), int(a[3]), a[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
