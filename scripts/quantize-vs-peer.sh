#!/usr/bin/env bash
# Byte-identity check of `shoal quantize` against llama.cpp's quantizer (`llama_peer quantize`)
# on models from `shoal gen-model`. Not part of `make test`: it needs the peer kit.
#
#   scripts/quantize-vs-peer.sh [TYPES...]     (default: every type shoal quantize accepts)
#
# For each input (f32 and f16, untied and tied, plus a model whose FFN rows are not a multiple
# of 32) and type, both tools quantize the same file and the outputs are compared with cmp.
# K-quant types are reported as "same" or "differs" (byte identity is only promised for the
# legacy types; the per-tensor types must match in any case). Ends with "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
PEER=${PEER:-$(bash /work/shared/peer/setup.sh 2>/dev/null)}
VOCAB=${VOCAB:-/work/shared/vocab/ggml-vocab-llama-spm.gguf}
INSPECT=${INSPECT:-/work/shared/peer/mkgguf.py}
SHOAL=./build/shoal
TYPES=("$@")
[ ${#TYPES[@]} -eq 0 ] && TYPES=(q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_s q4_k_m q5_k_s q5_k_m f16 bf16 f32)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

gen() { # name args...
  local n=$1; shift
  "$SHOAL" gen-model --vocab "$VOCAB" -o "$TMP/$n.gguf" "$@" 2>/dev/null || { echo "gen-model $n failed"; exit 1; }
}
gen f32 --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 1
gen f16 --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 2 --dtype f16
gen f32-tied --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 3 --tied
gen f16-tied --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 4 --tied --dtype f16
gen f32-odd --seed 5      # dim 64, ffn 172: fallbacks (Q8_0 output, F16 ffn_down)

types_of() { python3 "$INSPECT" --inspect "$1" | awk '/^  tensor/ {print $2, $3}'; }

for m in f32 f16 f32-tied f16-tied f32-odd; do
  for t in "${TYPES[@]}"; do
    a="$TMP/$m-$t-shoal.gguf"; b="$TMP/$m-$t-peer.gguf"
    "$SHOAL" quantize -q "$TMP/$m.gguf" "$a" "$t" 2>"$TMP/err" || { echo "FAIL $m $t: shoal: $(cat "$TMP/err")"; FAIL=$((FAIL+1)); continue; }
    "$PEER" quantize "$TMP/$m.gguf" "$b" "$t" >/dev/null 2>&1 || { echo "FAIL $m $t: peer failed"; FAIL=$((FAIL+1)); continue; }
    if cmp -s "$a" "$b"; then
      echo "ok   $m $t: byte-identical ($(stat -c %s "$a") bytes)"; PASS=$((PASS+1))
    elif [ "$(types_of "$a")" != "$(types_of "$b")" ]; then
      echo "FAIL $m $t: tensor types differ"; diff <(types_of "$a") <(types_of "$b") | head -5; FAIL=$((FAIL+1))
    else
      case $t in
        q8_0|q4_0|q4_1|q5_0|q5_1) echo "FAIL $m $t: bytes differ: $(cmp "$a" "$b" | head -1)"; FAIL=$((FAIL+1)) ;;
        *) echo "ok   $m $t: same tensor types, bytes differ ($(cmp "$a" "$b" | head -1))"; PASS=$((PASS+1)) ;;
      esac
    fi
  done
done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
