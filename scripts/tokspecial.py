#!/usr/bin/env python3
"""tokspecial.py VOCAB.gguf — prints a corpus (escaped lines, as scripts/tokcorpus.py) built
around the vocabulary's special tokens (types unknown / control / user-defined / unused): each
alone, padded with spaces, glued to text, doubled, truncated, followed by newlines, and random
mixtures. Used by scripts/tokcompare.sh; reads the GGUF metadata with the standard library."""
import random
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_kv(path):
    b = open(path, "rb").read()
    p = 0

    def u(fmt):
        nonlocal p
        v = struct.unpack_from(fmt, b, p)[0]
        p += struct.calcsize(fmt)
        return v

    def s():
        nonlocal p
        n = u("<Q")
        v = b[p:p + n]
        p += n
        return v

    def value(t):
        if t == 8:
            return s()
        if t == 9:
            et, n = u("<I"), u("<Q")
            if et in (8, 9):
                return [value(et) for _ in range(n)]
            fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                   11: "q", 12: "d"}[et]
            nonlocal p
            v = list(struct.unpack_from("<%d%s" % (n, fmt), b, p))
            p += n * SIZES[et]
            return v
        fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
               11: "<q", 12: "<d"}[t]
        return u(fmt)

    assert b[:4] == b"GGUF"
    p = 8
    u("<Q")
    n_kv = u("<Q")
    kv = {}
    for _ in range(n_kv):
        k = s().decode()
        kv[k] = value(u("<I"))
    return kv


def esc(x):
    out = bytearray()
    for c in x:
        if c == 0x5C:
            out += b"\\\\"
        elif c == 10:
            out += b"\\n"
        elif c == 9:
            out += b"\\t"
        elif c == 13:
            out += b"\\r"
        elif c < 0x20 or c == 0x7F:
            out += b"\\x%02x" % c
        else:
            out.append(c)
    return bytes(out)


kv = read_kv(sys.argv[1])
toks = kv["tokenizer.ggml.tokens"]
types = kv.get("tokenizer.ggml.token_type", [1] * len(toks))
sp = [t for t, ty in zip(toks, types) if ty in (2, 3, 4, 5)][:400]
sp += [b"</s>", b"<s>", b"<|endoftext|>", b"<|im_end|>", b"<|end|>"]
rng = random.Random(5)
lines = []
for t in sp:
    lines += [t, b" " + t + b" ", b"x" + t + b"y", t + t, t + b"\n\n  z", b"  " + t + b"\t",
              t[:-1], t[1:]]
for _ in range(300):
    lines.append(b"".join(rng.choice([rng.choice(sp), b" ", b"ab", b"\n", b"  ", "é".encode(),
                                      b"12"]) for _ in range(6)))
sys.stdout.buffer.write(b"".join(esc(x) + b"\n" for x in lines))
