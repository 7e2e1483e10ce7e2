#!/usr/bin/env bash
# tokcompare.sh [VOCAB.gguf...] — compares `shoal tokenize` with llama.cpp's tokenizer (the peer
# harness llama_peer, built by the peer kit's setup.sh) on the corpus of scripts/tokcorpus.py,
# for every vocabulary given (default: tests/data/vocab/*.gguf plus the gpt-2 vocabulary relabelled
# with the pre-tokenizers default, starcoder, smollm, falcon, deepseek-llm and deepseek-coder by
# scripts/gguf_set_pre.py, so that every hand-written pre-tokenizer is checked) and the modes
#   default (BOS/EOS as the vocab says), --no-bos, --special,
# and `shoal detokenize` against the peer's detokenize (with and without --special) on the ids.
# Not part of `make test`: the peer is not available everywhere. Prints one line per vocab and
# mode, the first disagreements, and a closing "N passed, M failed" (one check per vocab/mode).
# Env: PEER (path to llama_peer), SEED, RANDOM_N (random strings in the corpus).
set -u
cd "$(dirname "$0")/.."
PEER=${PEER:-$HOME/.cache/shoal-peer/bin/llama_peer}
[ -x "$PEER" ] || { echo "llama_peer not found at $PEER (set PEER=...)" >&2; exit 2; }
[ -x build/shoal ] || make -s build/shoal || exit 2
out=build/tokcompare
mkdir -p "$out"
# plus the repository's own sources and docs, whole files as single long inputs (code)
python3 scripts/tokcorpus.py --seed "${SEED:-1}" --random "${RANDOM_N:-3000}" \
    $(ls src/*/*.[ch] scripts/*.py scripts/*.sh docs/*.md README.md 2>/dev/null | grep -v unicode_data) \
    > "$out/corpus.txt"
n=$(wc -l < "$out/corpus.txt")
vocabs=("$@")
if [ ${#vocabs[@]} -eq 0 ]; then
  vocabs=(tests/data/vocab/*.gguf)
  mkdir -p "$out/pre"
  for p in default starcoder smollm falcon deepseek-llm deepseek-coder; do
    python3 scripts/gguf_set_pre.py tests/data/vocab/ggml-vocab-gpt-2.gguf "$out/pre/gpt2-$p.gguf" "$p"
    vocabs+=("$out/pre/gpt2-$p.gguf")
  done
fi
pass=0; fail=0
for v in "${vocabs[@]}"; do
  name=$(basename "$v" .gguf)
  for mode in "" "--no-bos" "--special"; do
    tag=${mode:-default}; tag=${tag#--}
    "$PEER" tokenize "$v" $mode < "$out/corpus.txt" > "$out/$name.$tag.ref" 2>"$out/$name.$tag.peer.log"
    build/shoal tokenize -m "$v" $mode < "$out/corpus.txt" > "$out/$name.$tag.out" 2>"$out/$name.$tag.log"
    agree=$(paste -d '\t' "$out/$name.$tag.ref" "$out/$name.$tag.out" | awk -F '\t' '$1 == $2 {c++} END {print c+0}')
    echo "$name $tag: $n strings, $agree agree"
    if [ "$agree" -eq "$n" ]; then pass=$((pass + 1)); else
      fail=$((fail + 1))
      paste -d '\t' "$out/corpus.txt" "$out/$name.$tag.ref" "$out/$name.$tag.out" |
        awk -F '\t' '$2 != $3 {print "  input: " $1 "\n    ref: " $2 "\n    got: " $3; if (++k == 3) exit}'
    fi
  done
  # a corpus around this vocabulary's own special tokens
  python3 scripts/tokspecial.py "$v" > "$out/$name.specials.txt"
  ns=$(wc -l < "$out/$name.specials.txt")
  for mode in "" "--special"; do
    tag=specials${mode:+-parse}
    "$PEER" tokenize "$v" $mode < "$out/$name.specials.txt" > "$out/$name.$tag.ref" 2>/dev/null
    build/shoal tokenize -m "$v" $mode < "$out/$name.specials.txt" > "$out/$name.$tag.out"
    agree=$(paste -d '\t' "$out/$name.$tag.ref" "$out/$name.$tag.out" | awk -F '\t' '$1 == $2 {c++} END {print c+0}')
    echo "$name $tag: $ns strings, $agree agree"
    if [ "$agree" -eq "$ns" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  done
  # the --json interface on the same inputs (default mode)
  res=$(python3 scripts/tokjson.py "$out/corpus.txt" "$out/$name.default.ref" build/shoal "$v")
  echo "$name json: $res"
  if [ "$(echo "$res" | awk '{print ($2 == $4+0 && $2 > 0)}')" = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  # detokenize: the ids of the default mode back to text, with and without --special
  for mode in "" "--special"; do
    tag=detok${mode:+-special}
    "$PEER" detokenize "$v" $mode < "$out/$name.default.out" > "$out/$name.$tag.ref" 2>/dev/null
    build/shoal detokenize -m "$v" $mode < "$out/$name.default.out" > "$out/$name.$tag.out"
    agree=$(paste -d '\t' "$out/$name.$tag.ref" "$out/$name.$tag.out" | awk -F '\t' '$1 == $2 {c++} END {print c+0}')
    echo "$name $tag: $n id lines, $agree agree"
    if [ "$agree" -eq "$n" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
