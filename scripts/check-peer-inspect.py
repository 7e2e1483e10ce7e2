#!/usr/bin/env python3
"""Cross-checks `shoal inspect --json` against llama.cpp on GGUF files written by another tool.

usage: check-peer-inspect.py SHOAL LLAMA_PEER MKGGUF_PY VOCAB_DIR WORKDIR

For a set of models (written by the peer kit's mkgguf.py and by `shoal gen-model`, plus
llama.cpp quantizations of them) it compares, per file:
  - parameter count and tensor bytes with `llama_peer info` (params:, size_bytes:)
  - n_embd / n_layer / n_head / n_head_kv / n_ctx_train / n_vocab with shoal's figures
  - every `meta:` key llama.cpp prints with shoal's metadata value
  - the whole tensor table (name, type, shape, offset, bytes) with `mkgguf.py --inspect`
and every vocab file's metadata. Prints one line per file and "N passed, M failed".
Needs the llama.cpp peer, so it is a developer check, not part of `make test`.
"""
import json, os, re, subprocess, sys

shoal, peer, mkgguf, vocab, work = sys.argv[1:6]
os.makedirs(work, exist_ok=True)
passed = failed = 0


def run(*a):
    return subprocess.run(a, capture_output=True, text=True, check=True).stdout


def check_file(path, vocab_only=False):
    global passed, failed
    problems = []
    j = json.loads(run(shoal, "inspect", "--json", path))
    info = run(peer, "info", path, *(["--vocab-only"] if vocab_only else []))
    fields = dict(re.findall(r"^(\w+): (.*)$", info, re.M))
    if not vocab_only:
        if int(fields["params"]) != j["n_params"]:
            problems.append(f"params {fields['params']} vs {j['n_params']}")
        if int(fields["size_bytes"]) != j["tensor_bytes"]:
            problems.append(f"bytes {fields['size_bytes']} vs {j['tensor_bytes']}")
        hp = j["hyperparameters"]
        for pk, sk in [("n_embd", "embedding_length"), ("n_layer", "block_count"),
                       ("n_head", "attention.head_count"), ("n_head_kv", "attention.head_count_kv"),
                       ("n_ctx_train", "context_length")]:
            if int(fields[pk]) != hp[sk]:
                problems.append(f"{pk} {fields[pk]} vs {hp[sk]}")
    if int(fields.get("n_vocab", j["vocab_size"])) != j["vocab_size"]:
        problems.append(f"n_vocab {fields['n_vocab']} vs {j['vocab_size']}")
    meta = j["metadata"]
    for k, v in re.findall(r"^meta: (\S+) = (.*)$", info, re.M):
        if k not in meta:
            problems.append(f"missing key {k}")
            continue
        mv = meta[k]
        if isinstance(mv, bool):
            ok = v == str(mv).lower()
        elif isinstance(mv, (int, float)):
            ok = abs(float(v) - mv) <= 1e-6 * max(1.0, abs(mv))
        elif isinstance(mv, str):
            # the peer prints newlines as \n and cuts long values
            pv = v.replace("\\n", "\n")
            ok = pv == mv or (len(pv) >= 100 and mv.startswith(pv[:100]))
        else:
            ok = True  # arrays: llama.cpp prints a summary only
        if not ok:
            problems.append(f"{k}: peer {v!r} vs shoal {mv!r}")
    # tensor table against mkgguf.py --inspect
    rows = re.findall(r"^\s+tensor (\S+)\s+(\S+)\s+(\S+)\s+off=(\d+)\s+bytes=(\d+)", run("python3", mkgguf, "--inspect", path), re.M)
    ts = {t["name"]: t for t in j["tensors"]}
    if len(rows) != len(ts):
        problems.append(f"tensor count {len(rows)} vs {len(ts)}")
    for name, typ, shape, off, nbytes in rows:
        t = ts.get(name)
        if not t or t["type"] != typ or "x".join(map(str, t["shape"])) != shape or t["offset"] != int(off) or t["bytes"] != int(nbytes):
            problems.append(f"tensor {name}: {typ} {shape} {off} {nbytes} vs {t}")
    if problems:
        failed += 1
        print(f"FAIL {os.path.basename(path)}: " + "; ".join(problems[:5]))
    else:
        passed += 1
        print(f"ok   {os.path.basename(path)}: {j['n_params']} params, {len(ts)} tensors, {len(meta)} keys agree")


models = []
def mk(name, *args):
    p = os.path.join(work, name)
    if not os.path.exists(p):
        subprocess.run(["python3", mkgguf, *args, "-o", p], check=True, capture_output=True)
    models.append(p)
    return p

def gen(name, *args):
    p = os.path.join(work, name)
    subprocess.run([shoal, "gen-model", *args, "-o", p], check=True, capture_output=True)
    models.append(p)
    return p

a = mk("mk-llama-spm-f32.gguf", "--vocab", f"{vocab}/ggml-vocab-llama-spm.gguf", "--dim", "128", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "256")
mk("mk-qwen2-f16.gguf", "--vocab", f"{vocab}/ggml-vocab-qwen2.gguf", "--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "1", "--ffn", "128", "--tied", "--qkv-bias", "--dtype", "f16")
mk("mk-llama-bpe-f16.gguf", "--vocab", f"{vocab}/ggml-vocab-llama-bpe.gguf", "--dim", "128", "--layers", "2", "--heads", "2", "--ffn", "256", "--dtype", "f16", "--rope-theta", "500000")
g = gen("gen-llama-spm-f32.gguf", "--vocab", f"{vocab}/ggml-vocab-llama-spm.gguf", "--dim", "256", "--layers", "2", "--heads", "8", "--kv-heads", "4", "--ffn", "512")
gen("gen-qwen2-f16.gguf", "--vocab", f"{vocab}/ggml-vocab-qwen2.gguf", "--dim", "128", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "256", "--tied", "--qkv-bias", "--dtype", "f16")
for src, t in [(a, "q8_0"), (a, "q4_0"), (g, "q4_k_m"), (g, "q6_k"), (g, "q5_1")]:
    out = src.replace(".gguf", f"-{t}.gguf")
    subprocess.run([peer, "quantize", src, out, t], check=True, capture_output=True)
    models.append(out)
for m in models:
    check_file(m)
for v in sorted(os.listdir(vocab)):
    if v.endswith(".gguf"):
        check_file(os.path.join(vocab, v), vocab_only=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
