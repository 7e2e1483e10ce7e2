#!/usr/bin/env python3
"""gguf_set_pre.py IN.gguf OUT.gguf PRE — copies a tensor-less (vocabulary-only) GGUF file with
its tokenizer.ggml.pre string replaced, so that one BPE vocabulary can exercise every
pre-tokenizer (used by scripts/tokcompare.sh)."""
import struct
import sys

src, dst, pre = sys.argv[1], sys.argv[2], sys.argv[3].encode()
b = open(src, "rb").read()
key = b"tokenizer.ggml.pre"
k = b.find(struct.pack("<Q", len(key)) + key)
if k < 0:
    sys.exit("no tokenizer.ggml.pre key in " + src)
v = k + 8 + len(key)
vtype, n = struct.unpack_from("<IQ", b, v)
assert vtype == 8, "tokenizer.ggml.pre is not a string"
n_tensors = struct.unpack_from("<Q", b, 8)[0]
assert n_tensors == 0, "only vocabulary-only files are supported"
out = b[:v + 4] + struct.pack("<Q", len(pre)) + pre + b[v + 12 + n:]
open(dst, "wb").write(out)
