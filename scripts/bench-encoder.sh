#!/usr/bin/env bash
# Encoder speed of shoal against llama.cpp (the llama_peer harness) on the same GGUF files.
# A benchmark, not a test: numbers depend on the machine and on whatever else runs on it.
#
#   scripts/bench-encoder.sh [-t THREADS] [-k ROUNDS] [-L "16 64"] [-b "1 32"] [-N 64] MODEL.gguf...
#
# For every input length L and batch b, each round runs `llama_peer bench-embed MODEL -L L -N N
# -b b -r 5` and `shoal bench -m MODEL -L L -N N -b b -r 5` back to back: N inputs of L tokens
# ([CLS] ... [SEP]), b per forward pass, pooled vectors read and normalized, median of 5 runs
# after a warm-up. Over ROUNDS rounds (default 3) it prints each side's median inputs/s and the
# median of the per-round ratios (a round's two runs share the machine's state at that moment).
set -u
cd "$(dirname "$0")/.."
PEER=${PEER:-$HOME/.cache/shoal-peer/bin/llama_peer}
SHOAL=$(pwd)/build/shoal
T=2 K=3 LS="16 64" BS="1 32" N=64
while [ $# -gt 0 ]; do
  case "$1" in
    -t) T=$2; shift 2 ;;
    -k) K=$2; shift 2 ;;
    -L) LS=$2; shift 2 ;;
    -b) BS=$2; shift 2 ;;
    -N) N=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-t N] [-k ROUNDS] [-L LENS] [-b BATCHES] [-N INPUTS] MODEL.gguf..." >&2; exit 2; }
for m in "$@"; do
  for L in $LS; do
    for b in $BS; do
      rows=""
      for ((k = 0; k < K; k++)); do
        l=$("$PEER" bench-embed "$m" -L "$L" -N "$N" -b "$b" -r 5 -t "$T" 2>/dev/null | sed -n 's/.*inputs_s=\([0-9.]*\).*/\1/p')
        s=$("$SHOAL" bench -m "$m" -L "$L" -N "$N" -b "$b" -r 5 -t "$T" 2>/dev/null | sed -n 's/.*inputs_s=\([0-9.]*\).*/\1/p')
        rows="$rows ${l:-0},${s:-0}"
      done
      python3 -c "
import statistics as st
r = [tuple(map(float, x.split(','))) for x in '$rows'.split()]
print('%-24s L=%-3s b=%-3s t=%s k=%d  llama.cpp %9.1f inputs/s | shoal %9.1f inputs/s | x%.2f' % (
    '$(basename "$m")', '$L', '$b', $T, len(r), st.median(x[0] for x in r), st.median(x[1] for x in r),
    st.median(x[1] / x[0] for x in r if x[0])))"
    done
  done
done
