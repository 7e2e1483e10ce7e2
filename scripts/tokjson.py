#!/usr/bin/env python3
"""tokjson.py CORPUS REF SHOAL VOCAB [FLAGS...] — checks `shoal tokenize --json` on the same
inputs as the line-based comparison: unescapes each corpus line (\\n \\t \\r \\\\ \\xHH), sends
all of them as one JSON array (lines with bytes that are not UTF-8 are skipped: JSON strings
cannot hold them) and compares each id array with the reference line. Prints
"checked N, agree M"."""
import json
import subprocess
import sys


def unescape(b):
    out = bytearray()
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            m = {0x6E: 10, 0x74: 9, 0x72: 13, 0x5C: 0x5C}
            if n in m:
                out.append(m[n]); i += 2; continue
            if n == 0x78 and i + 3 < len(b):
                try:
                    out.append(int(b[i + 2:i + 4].decode(), 16)); i += 4; continue
                except ValueError:
                    pass
        out.append(c); i += 1
    return bytes(out)


corpus, ref, shoal, vocab = sys.argv[1:5]
flags = sys.argv[5:]
lines = open(corpus, "rb").read().split(b"\n")[:-1]
refs = open(ref).read().split("\n")
texts, idx = [], []
for i, l in enumerate(lines):
    try:
        texts.append(unescape(l).decode("utf-8"))
        idx.append(i)
    except UnicodeDecodeError:
        pass
r = subprocess.run([shoal, "tokenize", "-m", vocab, "--json"] + flags,
                   input=json.dumps(texts).encode(), capture_output=True)
got = json.loads(r.stdout)
agree = sum(1 for k, i in enumerate(idx) if " ".join(map(str, got[k])) == refs[i])
print("checked %d agree %d" % (len(idx), agree))
sys.exit(0 if agree == len(idx) else 1)
