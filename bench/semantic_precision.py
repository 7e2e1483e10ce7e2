#!/usr/bin/env python3
"""Semantic cache precision on tests/data/semantic/pairs.jsonl (standard library only).

    python3 bench/semantic_precision.py URL [--pairs FILE] [--model NAME] [--check MIN_SIM]

URL is a node started with --semantic-cache ENCODER and --min-similarity 0.01 (so that every
candidate that passes the partition and the false-hit guard is reported with its similarity).
For each pair: DELETE /v1/cache, ask a (stored), ask b, and read X-Shoal-Cache / -Similarity.
A pair hits at threshold t when the node answered b from a with similarity >= t. Prints the
hit rate on the paraphrases ("hit": true) and the false hits on the near misses ("hit": false)
over thresholds. With --check T, exits 1 unless at T the near misses have no false hit and the
paraphrases hit at least --min-hit (0.8) of the time.
"""
import argparse, http.client, json, os, sys

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--pairs", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "semantic", "pairs.jsonl"))
ap.add_argument("--model", default=None)
ap.add_argument("--check", type=float, default=None)
ap.add_argument("--min-hit", type=float, default=0.8)
a = ap.parse_args()
host = a.url.split("//")[1].rstrip("/")
c = http.client.HTTPConnection(host, timeout=30)


def ask(text):
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0}
    if a.model:
        body["model"] = a.model
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("%s answered %d" % (text, r.status))
    hit = r.getheader("X-Shoal-Cache") == "hit"
    return hit, float(r.getheader("X-Shoal-Similarity") or "-2")


pairs = [json.loads(l) for l in open(a.pairs) if l.strip()]
res = []
for p in pairs:
    c.request("DELETE", "/v1/cache")
    c.getresponse().read()
    ask(p["a"])
    hit, sim = ask(p["b"])
    res.append((p, hit, sim))
pos = [r for r in res if r[0]["hit"]]
neg = [r for r in res if not r[0]["hit"]]
print("%d paraphrase pairs (must hit), %d near misses (must not)\n" % (len(pos), len(neg)))
print("| min_similarity | paraphrases hit | near misses hit (false hits) |")
print("| --- | --- | --- |")
ok = True
for t in (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.97, 0.99):
    ph = sum(1 for _, h, s in pos if h and s >= t)
    fh = sum(1 for _, h, s in neg if h and s >= t)
    print("| %.2f | %d / %d (%.0f%%) | %d / %d |" % (t, ph, len(pos), 100.0 * ph / len(pos), fh, len(neg)))
    if a.check is not None and abs(t - a.check) < 1e-9:
        ok = fh == 0 and ph >= a.min_hit * len(pos)
print("\nnear misses stopped by the partition or the guard at any threshold: %d / %d" %
      (sum(1 for _, h, _ in neg if not h), len(neg)))
for p, h, s in neg:
    if h:
        print("  reached by similarity only (%.4f): %s | %s (%s)" % (s, p["a"], p["b"], p.get("why")))
for p, h, s in pos:
    if not h or s < 0.93:
        print("  paraphrase %s (%.4f): %s | %s" % ("hit" if h else "missed", s, p["a"], p["b"]))
if a.check is not None and not ok:
    sys.exit("precision check failed at %.2f" % a.check)
