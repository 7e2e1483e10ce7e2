#!/usr/bin/env python3
"""End-to-end cost of constrained decoding: the same chat requests with and without a grammar.

    python3 bench/grammar_e2e.py -m MODEL.gguf [--shoal build/shoal] [--rounds 9] [--runs 1]
        [--max-tokens 64] [-t 2] [--seed 1000] [--json OUT.json]

Each run starts its own `shoal serve --port 0 -m m=MODEL --slots 1 -t T --responses-db none
--log-file LOG`, sends two unconstrained warm-up requests and one tiny GBNF request (which builds
the model's grammar index, a one-off per server: see docs/grammar.md), then for --rounds rounds
sends one request of every variant, interleaved (the order rotates by one each round):

  plain        unconstrained chat, temperature 1, streamed
  schema       response_format json_schema, the same schema every round (round 1 is cold)
  schema_cold  the same schema with a per-round "description" (ignored by the compiler), so its
               compiled grammar, and with it the mask cache, is new every round
  json_object  response_format json_object, streamed (one grammar per server: round 1 is cold)
  object_cold  json_schema {"type": "object"} (any object, as json_object) with a per-round
               "description": a cold any-object grammar every round
  tools_none   two tools, tool_choice "none": unconstrained, the tools prompt, not streamed
  tools        the same tools, tool_choice "required" (round 1 is cold); not streamed, since the
               text of a call is held back until the call ends
  tools_cold   the same with a per-round maxLength of the e-mail body (401, 402, ...): a new
               grammar every round, and a prompt of the same length

Two more variants, only when named in --variants (e.g. --variants plain,str_cold,str400_cold),
show what a bounded string costs: an object of one string property, cold every round, without
a bound (str_cold) and with maxLength 400 (str400_cold).

All requests use seed = --seed + round, max_tokens --max-tokens, and a system turn that starts
with a unique tag, so no prompt is served from the prefix cache (the same prefill for every
request of a prompt shape). Per-token decode time comes from the server's request log (JSON
lines; ttft_ms and total_ms both count from the request's arrival, so the grammar compile and
the first mask land in ttft):

  log ms/token    = (total_ms - ttft_ms) / (completion_tokens - 1)
  stream ms/token = (last content chunk - first content chunk) / (completion_tokens - 1), one
                    less token when the answer ended with an end-of-generation token (streamed
                    variants only; a cross-check of the log measure)

Requests with fewer than 8 completion tokens (a random model sometimes closes a JSON object at
once) are left out of the per-token figures. Per variant the script prints the median per-token
ms over the rounds, its ratio to plain's median, the median of the per-round ratios, and the
median ttft, with cold requests (the first request of a grammar) apart from warm ones. With
--runs K it repeats everything on K fresh servers and also prints the median over the runs.
Standard library only.
"""
import argparse, http.client, json, os, shutil, statistics, subprocess, sys, tempfile, time

SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["person", "company", "robot"]},
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "maxLength": 60},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5},
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "maxLength": 60},
                "city": {"type": "string", "maxLength": 40},
                "zip": {"type": "string", "maxLength": 10},
                "country": {"enum": ["FR", "DE", "US", "JP", "BR"]},
            },
            "required": ["street", "city", "country"],
        },
        "active": {"type": "boolean"},
        "notes": {"type": "string", "maxLength": 200},
    },
    "required": ["kind", "name", "age", "email", "tags", "address", "active"],
}


def tools(body_max=400):
    return [
        {"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14}},
                "required": ["city", "unit", "days"]}}},
        {"type": "function", "function": {
            "name": "send_email", "description": "Send an email",
            "parameters": {"type": "object", "properties": {
                "to": {"type": "string", "maxLength": 60},
                "subject": {"type": "string", "maxLength": 80},
                "body": {"type": "string", "maxLength": body_max},
                "cc": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 3}},
                "required": ["to", "subject", "body"]}}},
    ]


# variant: (streamed, cold every round, baseline for the ratio of ttft)
VARIANTS = {
    "plain": (True, False, "plain"),
    "schema": (True, False, "plain"),
    "schema_cold": (True, True, "plain"),
    "json_object": (True, False, "plain"),
    "object_cold": (True, True, "plain"),
    "tools_none": (False, False, "plain"),
    "tools": (False, False, "tools_none"),
    "tools_cold": (False, True, "tools_none"),
    "str_cold": (True, True, "plain"),
    "str400_cold": (True, True, "plain"),
}
DEFAULT = [v for v in VARIANTS if not v.startswith("str")]


def body_of(variant, rnd, tag, args):
    person = not variant.startswith("tools")
    b = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "[%s] You are a helpful assistant." % tag},
            {"role": "user", "content": "Describe a person as JSON." if person
             else "What is the weather in Paris? Then mail it to Bob."},
        ],
        "temperature": 1,
        "seed": args.seed + rnd,
        "max_tokens": args.max_tokens,
    }
    if variant == "schema":
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    elif variant == "schema_cold":
        s = dict(SCHEMA, description="a person, round %d of run %s" % (rnd, args.run_id))
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": s}}
    elif variant == "json_object":
        b["response_format"] = {"type": "json_object"}
    elif variant == "object_cold":
        s = {"type": "object", "description": "round %d of run %s" % (rnd, args.run_id)}
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "object", "schema": s}}
    elif variant in ("str_cold", "str400_cold"):
        prop = {"type": "string", "maxLength": 400} if variant == "str400_cold" else {"type": "string"}
        s = {"type": "object", "properties": {"text": prop}, "required": ["text"],
             "description": "round %d of run %s" % (rnd, args.run_id)}
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "text", "schema": s}}
    elif variant == "tools_none":
        b["tools"], b["tool_choice"] = tools(), "none"
    elif variant == "tools":
        b["tools"], b["tool_choice"] = tools(), "required"
    elif variant == "tools_cold":
        b["tools"], b["tool_choice"] = tools(401 + rnd % 599), "required"
    if VARIANTS[variant][0]:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


def send(port, body, rid):
    """One request; returns (content chunk times, completion_tokens, finish_reason)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json", "X-Request-Id": rid})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit("grammar_e2e: HTTP %d: %s" % (resp.status, resp.read()[:500]))
    if not body.get("stream"):
        j = json.loads(resp.read())
        conn.close()
        return [], j["usage"]["completion_tokens"], j["choices"][0]["finish_reason"]
    times, n, finish, buf = [], 0, None, b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        now = time.perf_counter()
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: "):
                continue
            data = ev[6:]
            if data == b"[DONE]":
                conn.close()
                return times, n, finish
            j = json.loads(data)
            if j.get("usage"):
                n = j["usage"]["completion_tokens"]
            for c in j.get("choices") or []:
                if (c.get("delta") or {}).get("content"):
                    times.append(now)
                if c.get("finish_reason"):
                    finish = c["finish_reason"]
    conn.close()
    return times, n, finish


def log_entry(path, rid):
    for _ in range(500):
        with open(path) as f:
            for line in f:
                if '"%s"' % rid in line and line.endswith("\n"):  # a line still being written: later
                    j = json.loads(line)
                    if j.get("request_id") == rid:
                        return j
        time.sleep(0.01)
    sys.exit("grammar_e2e: request %s is not in the log" % rid)


def start_server(args, log):
    out = open(log + ".out", "w")
    cmd = [args.shoal, "serve", "--port", "0", "-m", "m=" + args.model, "--slots", "1", "-t", str(args.threads),
           "--responses-db", "none", "--log-file", log]
    p = subprocess.Popen(cmd, stdout=out, stderr=out)
    for _ in range(1200):
        time.sleep(0.05)
        txt = open(log + ".out").read()
        if "on http://" in txt:
            return p, int(txt.split("on http://")[1].split()[0].rsplit(":", 1)[1].rstrip("/)"))
        if p.poll() is not None:
            sys.exit("grammar_e2e: shoal serve exited:\n" + txt)
    p.kill()
    sys.exit("grammar_e2e: shoal serve did not start")


def med(v):
    return statistics.median(v) if v else float("nan")


def one_run(args, run):
    tmp = tempfile.mkdtemp(prefix="grammar_e2e.")
    log = os.path.join(tmp, "requests.jsonl")
    p, port = start_server(args, log)
    recs = []
    try:
        for i in range(2):  # warm-up: page in the weights, first-request costs
            send(port, body_of("plain", -1 - i, "warm-up %d %s" % (i, args.run_id), args), "w%d" % i)
        if not args.cold_index:  # build the grammar index now, so that it is not in a cold request
            b = body_of("plain", -3, "warm-up index %s" % args.run_id, args)
            b["response_format"] = {"type": "grammar", "grammar": 'root ::= "ok"'}
            send(port, b, "w-index")
        seen = set()
        for r in range(args.rounds):
            k = r % len(args.order)
            for v in args.order[k:] + args.order[:k]:
                rid = "%s-%d-%d-%s" % (args.run_id, run, r, v)
                body = body_of(v, r, rid, args)
                times, n, finish = send(port, body, rid)
                e = log_entry(log, rid)
                cold = VARIANTS[v][1] or (v != "plain" and v != "tools_none" and v not in seen)
                seen.add(v)
                ct = e["completion_tokens"]
                rec = {"run": run, "round": r, "variant": v, "cold": cold, "tokens": ct, "finish": finish,
                       "prompt_tokens": e["prompt_tokens"], "cached_tokens": e["cached_tokens"],
                       "ttft_ms": e["ttft_ms"], "total_ms": e["total_ms"], "log_ms": None, "stream_ms": None}
                if ct >= args.min_tokens:
                    rec["log_ms"] = (e["total_ms"] - e["ttft_ms"]) / (ct - 1)
                    steps = ct - 1 - (1 if finish == "stop" else 0)
                    if len(times) >= 2 and steps > 0:
                        rec["stream_ms"] = (times[-1] - times[0]) * 1e3 / steps
                recs.append(rec)
                if args.verbose:
                    print(json.dumps(rec), file=sys.stderr)
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return recs


def groups(recs):
    """(label, variant, cold) rows: plain and tools_none, then every constrained variant's cold
    and warm requests."""
    out = [("plain", "plain", None), ("tools_none", "tools_none", None)]
    for v, label in (("schema", "json_schema"), ("json_object", "json_object"), ("tools", "tools required")):
        out.append((label + ", cold", v, True))
        out.append((label + ", warm", v, False))
        if v == "json_object":
            out.append(('json_schema {"type": "object"}, cold', "object_cold", True))
    out += [("one string, cold", "str_cold", True), ("one string maxLength 400, cold", "str400_cold", True)]
    present = {x["variant"] for x in recs}
    fam = {"schema": "schema_cold", "tools": "tools_cold"}
    return [o for o in out if o[1] in present or fam.get(o[1]) in present]


def select(recs, v, cold):
    fam = {"schema": ("schema", "schema_cold"), "tools": ("tools", "tools_cold")}.get(v, (v,))
    return [x for x in recs if x["variant"] in fam and (cold is None or x["cold"] == cold)]


def summarize(recs):
    """Per row: medians over the requests, ratio of medians, median of per-round ratios."""
    base = {}
    for v in ("plain", "tools_none"):
        base[v] = {(x["run"], x["round"]): x for x in recs if x["variant"] == v}
    rows = []
    for label, v, cold in groups(recs):
        xs = select(recs, v, cold)
        lm = [x["log_ms"] for x in xs if x["log_ms"] is not None]
        sm = [x["stream_ms"] for x in xs if x["stream_ms"] is not None]
        row = {"label": label, "n": len(xs), "n_tok": len(lm), "tokens": med([x["tokens"] for x in xs]),
               "prompt": med([x["prompt_tokens"] for x in xs]), "log_ms": med(lm), "stream_ms": med(sm),
               "ttft_ms": med([x["ttft_ms"] for x in xs])}
        bname = "tools_none" if v.startswith("tools") else "plain"
        b = [x["log_ms"] for x in recs if x["variant"] == bname and x["log_ms"] is not None]
        bt = [x["ttft_ms"] for x in recs if x["variant"] == bname]
        pb = [x["log_ms"] for x in recs if x["variant"] == "plain" and x["log_ms"] is not None]
        row["ratio_plain"] = row["log_ms"] / med(pb) if pb and lm else float("nan")
        row["ratio_base"] = row["log_ms"] / med(b) if b and lm else float("nan")
        pr = [x["log_ms"] / base[bname][(x["run"], x["round"])]["log_ms"] for x in xs
              if x["log_ms"] is not None and base[bname].get((x["run"], x["round"]), {}).get("log_ms")]
        row["round_ratio"] = med(pr)
        row["dttft_ms"] = row["ttft_ms"] - med(bt)
        row["base"] = bname
        rows.append(row)
    return rows


def table(rows, title):
    print("\n%s\n" % title)
    print("| variant | requests (per-token) | tokens | prompt | log ms/token | stream ms/token "
          "| ratio to plain | ratio to baseline (per-round median) | ttft ms | ttft - baseline ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    f = lambda x, d=2: "-" if x != x else "%.*f" % (d, x)
    for r in rows:
        print("| %s | %d (%d) | %s | %s | %s | %s | %s | %s vs %s (%s) | %s | %s |" % (
            r["label"], r["n"], r["n_tok"], f(r["tokens"], 0), f(r["prompt"], 0), f(r["log_ms"], 3),
            f(r["stream_ms"], 3), f(r["ratio_plain"], 3), f(r["ratio_base"], 3), r["base"],
            f(r["round_ratio"], 3), f(r["ttft_ms"], 1), f(r["dttft_ms"], 1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--shoal", default="build/shoal")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--min-tokens", type=int, default=8)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--cold-index", action="store_true",
                    help="do not build the grammar index before the rounds (the first cold request pays it)")
    ap.add_argument("--variants", default=",".join(DEFAULT),
                    help="comma-separated variants, in round order (default: %(default)s)")
    ap.add_argument("--json", help="write every request's figures to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.run_id = "%x" % (int(time.time() * 1000) & 0xffffffff)
    args.order = args.variants.split(",")
    for v in args.order:
        if v not in VARIANTS:
            sys.exit("grammar_e2e: unknown variant %r (known: %s)" % (v, ", ".join(VARIANTS)))
    if "plain" not in args.order:
        sys.exit("grammar_e2e: the variants must include plain (the baseline)")
    print("grammar_e2e: model %s, %d run(s) x %d rounds, max_tokens %d, -t %d, load average %s" % (
        args.model, args.runs, args.rounds, args.max_tokens, args.threads,
        " ".join("%.2f" % x for x in os.getloadavg())))
    allrecs, per_run = [], []
    for run in range(args.runs):
        recs = one_run(args, run)
        allrecs += recs
        rows = summarize(recs)
        per_run.append(rows)
        table(rows, "run %d (load average %s)" % (run + 1, " ".join("%.2f" % x for x in os.getloadavg())))
    if args.runs > 1:
        print("\nmedian over the %d runs of each run's figure\n" % args.runs)
        print("| variant | log ms/token | stream ms/token | ratio to plain | ratio to baseline "
              "| per-round ratio | ttft ms | ttft - baseline ms |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        f = lambda x, d=2: "-" if x != x else "%.*f" % (d, x)
        for i, r in enumerate(per_run[0]):
            col = lambda k: med([pr[i][k] for pr in per_run if pr[i][k] == pr[i][k]])
            print("| %s | %s | %s | %s | %s (%s) | %s | %s | %s |" % (
                r["label"], f(col("log_ms"), 3), f(col("stream_ms"), 3), f(col("ratio_plain"), 3),
                f(col("ratio_base"), 3), r["base"], f(col("round_ratio"), 3), f(col("ttft_ms"), 1),
                f(col("dttft_ms"), 1)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "rounds": args.rounds, "runs": args.runs,
                       "max_tokens": args.max_tokens, "threads": args.threads, "requests": allrecs}, f, indent=1)


if __name__ == "__main__":
    main()
