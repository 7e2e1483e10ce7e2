#!/usr/bin/env bash
# What shoal train writes, loaded by llama.cpp (through the llama_peer harness). Not part of
# `make test`: it needs the peer (shared/peer/setup.sh).
#
#   scripts/compare-train.sh [WORKDIR]
#
#   - the intent classifier exported by `shoal train encoder --export-llama`
#     (build/models-train/assistant-intent-llama.gguf, written by `make models`): the raw
#     intent logits of shoal classify --raw and llama_peer classify on the assistant test
#     texts, rel L2 and the argmax of every line; in f32 and after Q8_0 quantization (each
#     engine quantizing with its own quantizer: the bytes are the same, docs/quantization.md);
#   - the reply LM (models/replies.gguf, with the BPE vocabulary shoal learnt): llama.cpp loads
#     it; shoal tokenize and llama_peer tokenize give the same ids on the test prompts; greedy
#     generation gives the same tokens in both engines on the ChatML-formatted prompts.
# The last line is "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHOAL=$ROOT/build/shoal
PEER=${PEER:-$HOME/.cache/shoal-peer/bin/llama_peer}
W=${1:-$(mktemp -d /tmp/shoal-compare-train-XXXXXX)}
mkdir -p "$W"
[ -x "$PEER" ] || { echo "llama_peer not found at $PEER (run shared/peer/setup.sh)" >&2; exit 2; }
EXP=build/models-train/assistant-intent-llama.gguf
LM=models/replies.gguf
[ -s "$EXP" ] && [ -s "$LM" ] || { echo "run make models first ($EXP, $LM)" >&2; exit 2; }
[ -s build/data/assistant/test.jsonl ] || python3 scripts/gen_data.py build/data --seed 1 >/dev/null
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }

python3 -c '
import json, sys
rows = [json.loads(l) for l in open("build/data/assistant/test.jsonl")][:200]
open(sys.argv[1], "w").write("".join(r["text"].replace("\\", "\\\\") + "\n" for r in rows))
rows = [json.loads(l) for l in open("build/data/replies/test.jsonl")][:40]
open(sys.argv[2], "w").write("".join(r["prompt"] + "\n" for r in rows))
' "$W/texts.txt" "$W/prompts.txt"

# rel L2 over all numbers, lines whose argmax agrees
cmp_rows() {
  python3 - "$1" "$2" <<'PY'
import math, sys
a = [[float(v) for v in l.split()] for l in open(sys.argv[1]) if l.strip() and not l.startswith("labels")]
b = [[float(v) for v in l.split()] for l in open(sys.argv[2]) if l.strip() and not l.startswith("labels")]
if len(a) != len(b) or not a:
    print("lines %d vs %d" % (len(a), len(b))); sys.exit(1)
num = sum((x - y) ** 2 for r, s in zip(a, b) for x, y in zip(r, s))
den = sum(y * y for s in b for y in s) or 1
arg = sum(1 for r, s in zip(a, b) if r.index(max(r)) == s.index(max(s)))
print("%.3g %d %d" % (math.sqrt(num / den), arg, len(a)))
PY
}

for q in f32 q8_0; do
  F=$EXP
  if [ $q = q8_0 ]; then
    F=$W/intent-q8_0.gguf
    "$SHOAL" quantize "$EXP" "$F" q8_0 >/dev/null 2>&1
    "$PEER" quantize "$EXP" "$W/intent-q8_0-peer.gguf" q8_0 >/dev/null 2>&1
    if cmp -s "$F" "$W/intent-q8_0-peer.gguf"; then ok "intent export, Q8_0: shoal quantize == llama.cpp's, byte for byte"
    else bad "intent export, Q8_0: the two quantizers' files differ"; fi
  fi
  "$SHOAL" classify -m "$F" -f "$W/texts.txt" --raw -t 2 >"$W/shoal-$q.txt" 2>"$W/shoal-$q.err"
  "$PEER" classify "$F" -f "$W/texts.txt" -t 2 >"$W/peer-$q.txt" 2>"$W/peer-$q.err"
  read -r rel arg n <<<"$(cmp_rows "$W/shoal-$q.txt" "$W/peer-$q.txt")"
  tol=1e-4; [ $q = q8_0 ] && tol=2e-2
  if [ -n "${n:-}" ] && python3 -c "import sys; sys.exit(0 if $rel <= $tol and $arg == $n else 1)"; then
    ok "intent export, $q: llama.cpp loads it; $n texts, logits rel L2 $rel (<= $tol), argmax $arg/$n"
  else
    bad "intent export, $q: rel L2 ${rel:-?}, argmax ${arg:-?}/${n:-?} ($W/shoal-$q.txt vs $W/peer-$q.txt)"
  fi
done

# the LM's BPE vocabulary: the same ids from both tokenizers (ChatML text, special tokens parsed)
python3 -c '
import sys
for l in open(sys.argv[1]):
    print("<|im_start|>user\\n" + l.rstrip("\n") + "<|im_end|>\\n<|im_start|>assistant\\n")
' "$W/prompts.txt" >"$W/chatml.txt"
"$PEER" tokenize "$LM" --special --no-bos <"$W/chatml.txt" >"$W/peer-tok.txt" 2>"$W/peer-tok.err"
"$SHOAL" tokenize -m "$LM" --special --no-bos <"$W/chatml.txt" >"$W/shoal-tok.txt" 2>"$W/shoal-tok.err"
if [ -s "$W/peer-tok.txt" ] && cmp -s "$W/peer-tok.txt" "$W/shoal-tok.txt"; then
  ok "reply LM: llama.cpp loads the BPE vocabulary; the same ids on $(wc -l <"$W/chatml.txt") ChatML prompts"
else
  bad "reply LM tokenizer: $W/shoal-tok.txt vs $W/peer-tok.txt"
fi

# greedy generation, token for token
agree=0
total=0
while read -r ids; do
  [ -n "$ids" ] || continue
  total=$((total + 1))
  p=$("$PEER" gen "$LM" --ids "$ids" -n 24 -t 2 2>/dev/null | sed -n 's/^tokens: //p')
  s=$("$SHOAL" run -m "$LM" --ids "$ids" -n 24 --temp 0 --ignore-eos --json -t 2 2>/dev/null |
      python3 -c 'import json,sys; print(" ".join(str(t) for t in json.load(sys.stdin)["tokens"]))' 2>/dev/null)
  if [ -n "$p" ] && [ "$p" = "$s" ]; then agree=$((agree + 1)); else echo "  differs: ids $ids"; echo "    peer  $p"; echo "    shoal $s"; fi
done <"$W/peer-tok.txt"
if [ "$total" -gt 0 ] && [ "$agree" -eq "$total" ]; then
  ok "reply LM: greedy tokens agree with llama.cpp on $agree/$total prompts (24 tokens each)"
else
  bad "reply LM: greedy tokens agree on $agree/$total prompts"
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
