#!/usr/bin/env python3
"""Writes the malformed-GGUF regression corpus: tests/data/malformed/*.gguf and MANIFEST.

Each file is a small GGUF image with one thing wrong. MANIFEST has one line per file:
    <file name> <TAB> <substring the error message must contain>
`shoal inspect` must exit 1 with that message for every file (never crash); the unit tests
parse them too, under AddressSanitizer. Re-run this script after changing it; the files are
committed so the tests do not need Python.
"""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "malformed")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, t, payload):
    return s(key) + struct.pack("<I", t) + payload


def kv_u32(key, v):
    return kv(key, U32, struct.pack("<I", v))


def kv_str(key, v):
    return kv(key, STR, s(v))


def tinfo(name, dims, t, off):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<II", t, 0)[:4] + struct.pack("<Q", off)


def header(n_t, n_kv, version=3, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, n_t, n_kv)


def pad(b, a=32):
    return b + b"\0" * ((-len(b)) % a)


def image(kvs, tensors, data, version=3, align=32):
    """A full file: header, kvs, tensor infos, padding, data."""
    b = header(len(tensors), len(kvs), version) + b"".join(kvs) + b"".join(tensors)
    return pad(b, align) + data


GOOD_KVS = [kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1)]
GOOD_T = [tinfo("a", [8], 0, 0), tinfo("b", [4, 2], 0, 32)]
GOOD_DATA = b"\x00" * 64

cases = {}


def case(name, expect, data):
    cases[name] = (expect, data)


good = image(GOOD_KVS, GOOD_T, GOOD_DATA)
case("empty.gguf", "empty file", b"")
case("bad-magic.gguf", "not a GGUF file", b"GGML" + good[4:])
case("text-file.gguf", "not a GGUF file", b"hello, this is not a model\n" * 4)
case("version-1.gguf", "version 1 is not supported", header(0, 0, 1))
case("version-99.gguf", "unsupported GGUF version 99", header(0, 0, 99))
case("big-endian.gguf", "big-endian", b"GGUF" + struct.pack(">IQQ", 3, 0, 0))
case("truncated-header.gguf", "tensor count", good[:14])
case("huge-kv-count.gguf", "metadata count", header(0, 2**62))
case("huge-tensor-count.gguf", "tensor count", header(2**40, 0))
case("truncated-in-key.gguf", "key", good[:24 + 10])
case("truncated-in-value.gguf", "string length", image([kv_str("general.architecture", "llama")], [], b"")[:24 + 8 + 20 + 4 + 8 + 2])
case("key-length-huge.gguf", "string length", header(0, 1) + struct.pack("<Q", 2**63) + b"x" * 16)
case("key-empty.gguf", "length 0 is outside", header(0, 1) + s("") + struct.pack("<I", U8) + b"\x01")
case("key-with-nul.gguf", "NUL byte", header(0, 1) + s("gen\0eral") + struct.pack("<I", U8) + b"\x01")
case("unknown-value-type.gguf", "unknown value type 13", header(0, 1) + s("k") + struct.pack("<I", 13) + b"\0" * 8)
case("string-value-too-long.gguf", "string length", header(0, 1) + s("k") + struct.pack("<IQ", STR, 1000) + b"abc")
case("array-unknown-elem.gguf", "unknown array element type", header(0, 1) + s("k") + struct.pack("<IIQ", ARR, 77, 1) + b"\0" * 8)
case("array-count-huge.gguf", "cannot fit", header(0, 1) + s("k") + struct.pack("<IIQ", ARR, U32, 2**60) + b"\0" * 16)
case("array-of-strings-huge.gguf", "cannot fit", header(0, 1) + s("k") + struct.pack("<IIQ", ARR, STR, 2**59) + b"\0" * 16)
nested = struct.pack("<IQ", ARR, 1) * 12 + struct.pack("<IQ", U8, 0)
case("array-nested-too-deep.gguf", "nested more than", header(0, 1) + s("k") + struct.pack("<I", ARR) + nested)
case("array-string-elem-truncated.gguf", "array element 1", header(0, 1) + s("k") + struct.pack("<IIQ", ARR, STR, 3) + s("ab") + struct.pack("<Q", 1000) + b"xy" + b"\0" * 16)
case("duplicate-key.gguf", "duplicate metadata key 'llama.block_count'", image(GOOD_KVS + [kv_u32("llama.block_count", 2)], [], b""))
case("alignment-not-pow2.gguf", "not a power of two", image([kv_u32("general.alignment", 24)], [], b""))
case("alignment-zero.gguf", "not a power of two", image([kv_u32("general.alignment", 0)], [], b""))
case("alignment-wrong-type.gguf", "general.alignment has type str", image([kv_str("general.alignment", "32")], [], b""))
case("tensor-zero-dims.gguf", "0 dimensions", image([], [tinfo("a", [], 0, 0)], GOOD_DATA))
case("tensor-five-dims.gguf", "5 dimensions", image([], [tinfo("a", [1, 1, 1, 1, 1], 0, 0)], GOOD_DATA))
case("tensor-negative-dim.gguf", "negative", image([], [tinfo("a", [2**63 + 5], 0, 0)], GOOD_DATA))
case("tensor-elem-overflow.gguf", "overflows", image([], [tinfo("a", [2**40, 2**40], 0, 0)], GOOD_DATA))
case("tensor-unknown-type.gguf", "unknown tensor type id 4", image([], [tinfo("a", [8], 4, 0)], GOOD_DATA))
case("tensor-type-huge.gguf", "unknown tensor type id", image([], [tinfo("a", [8], 1000, 0)], GOOD_DATA))
case("tensor-bad-block-multiple.gguf", "not a multiple of the Q4_0 block size 32", image([], [tinfo("a", [48], 2, 0)], GOOD_DATA))
case("tensor-misaligned-offset.gguf", "not a multiple of the alignment", image([], [tinfo("a", [4], 0, 4)], GOOD_DATA))
case("tensor-offset-past-end.gguf", "runs past the end", image([], [tinfo("a", [8], 0, 1 << 40)], GOOD_DATA))
case("tensor-size-past-end.gguf", "runs past the end", image([], [tinfo("a", [1 << 20], 0, 0)], GOOD_DATA))
case("tensor-overlap.gguf", "overlap", image([], [tinfo("a", [16], 0, 0), tinfo("b", [16], 0, 32)], b"\0" * 128))
case("tensor-duplicate-name.gguf", "duplicate tensor name 'a'", image([], [tinfo("a", [8], 0, 0), tinfo("a", [8], 0, 32)], GOOD_DATA))
case("tensor-name-empty.gguf", "length 0 is outside", image([], [tinfo("", [8], 0, 0)], GOOD_DATA))
case("tensor-name-too-long.gguf", "outside 1..255", image([], [tinfo("n" * 300, [8], 0, 0)], GOOD_DATA))
case("truncated-in-tensor-info.gguf", "tensor", good[: len(image(GOOD_KVS, [], b"")) + 12])
case("truncated-data.gguf", "runs past the end", good[:-40])
case("data-section-missing.gguf", "before the data section", (header(1, 0) + tinfo("a", [8], 0, 0)))

os.makedirs(OUT, exist_ok=True)
for f in os.listdir(OUT):
    if f.endswith(".gguf"):
        os.unlink(os.path.join(OUT, f))
with open(os.path.join(OUT, "MANIFEST"), "w") as m:
    for name, (expect, data) in sorted(cases.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        m.write(f"{name}\t{expect}\n")
print(f"wrote {len(cases)} malformed files to {os.path.normpath(OUT)}", file=sys.stderr)

# ---- fuzz seeds: a few valid images plus the malformed ones ---------------------------------
SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus", "gguf")
os.makedirs(SEEDS, exist_ok=True)
arr_kvs = [
    kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 3) + s("<s>") + s("\u2581a") + s("<0x0A>")),
    kv("tokenizer.ggml.scores", ARR, struct.pack("<IQ", F32, 3) + struct.pack("<3f", 0, -1, -2)),
    kv("x.nested", ARR, struct.pack("<IQ", ARR, 2) + struct.pack("<IQ", U8, 2) + b"\1\2" + struct.pack("<IQ", STR, 1) + s("z")),
    kv("x.f64", F64, struct.pack("<d", 0.25)), kv("x.bool", BOOL, b"\1"), kv("x.i64", I64, struct.pack("<q", -7)),
]
valid = {
    "valid-basic.gguf": good,
    "valid-arrays.gguf": image(GOOD_KVS + arr_kvs, GOOD_T, GOOD_DATA),
    "valid-align64.gguf": image([kv_u32("general.alignment", 64)], [tinfo("a", [32], 8, 0), tinfo("b", [256], 12, 64)], b"\0" * 256, align=64),
    "valid-empty.gguf": header(0, 0),
    "valid-v2.gguf": image(GOOD_KVS, GOOD_T, GOOD_DATA, version=2),
}
for name, data in list(valid.items()) + [(n, d) for n, (e, d) in cases.items() if d]:
    with open(os.path.join(SEEDS, name), "wb") as f:
        f.write(data)
print(f"wrote {len(valid)} valid seeds and the malformed files to {os.path.normpath(SEEDS)}", file=sys.stderr)
