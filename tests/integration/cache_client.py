#!/usr/bin/env python3
"""Load for the cache tests (stdlib only).

  cache_client.py loadfor BASE SECONDS CLIENTS BODY   POST BODY to BASE/v1/completions from CLIENTS
                                                       threads for SECONDS; prints {"sent", "ok",
                                                       "statuses", "tiers": {tier or "miss": n}}
  cache_client.py distinct BASE N CLIENTS              N different deterministic prompts, once each
"""
import http.client
import json
import sys
import threading
import time


def post(conn, path, body):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("X-Shoal-Cache-Tier") or r.getheader("X-Shoal-Cache") or ""


def run(base, clients, next_body):
    host = base.split("//")[1]
    lock = threading.Lock()
    st = {"sent": 0, "ok": 0, "statuses": {}, "tiers": {}}

    def worker():
        conn = http.client.HTTPConnection(host, timeout=20)
        while True:
            body = next_body()
            if body is None:
                return
            try:
                status, tier = post(conn, "/v1/completions", body)
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection(host, timeout=20)
                status, tier = 0, ""
            with lock:
                st["sent"] += 1
                st["ok"] += status == 200
                st["statuses"][str(status)] = st["statuses"].get(str(status), 0) + 1
                st["tiers"][tier] = st["tiers"].get(tier, 0) + 1

    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(st))


def main():
    a = sys.argv[1:]
    if a[0] == "loadfor":
        end = time.monotonic() + float(a[2])
        body = a[4].encode()
        run(a[1], int(a[3]), lambda: body if time.monotonic() < end else None)
    elif a[0] == "distinct":
        n, i, lock = int(a[2]), [0], threading.Lock()

        def nxt():
            with lock:
                if i[0] >= n:
                    return None
                i[0] += 1
                return json.dumps({"prompt": "request number %d" % i[0], "max_tokens": 4,
                                   "temperature": 0}).encode()
        run(a[1], int(a[3]), nxt)
    else:
        sys.exit("usage: see the module doc")


if __name__ == "__main__":
    main()
