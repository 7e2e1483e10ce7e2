#!/usr/bin/env bash
# Speed of shoal against llama.cpp (the llama_peer harness) on the same GGUF files.
# A benchmark, not a test: numbers depend on the machine and on whatever else runs on it.
#
#   scripts/bench-llama.sh [-t THREADS] [-k ROUNDS] MODEL.gguf...
#
# Each round runs `llama_peer bench MODEL -p 128 -n 64 -r 5` and `shoal bench -m MODEL -p 128
# -n 64 -r 5` back to back (both report the median of 5 runs after a warm-up, pp = one batch of
# 128 tokens, tg = 64 single-token decodes, from an empty cache). With ROUNDS > 1 (default 3)
# the best median of each side is kept, which filters out rounds disturbed by other processes
# on a shared machine. Prints one line per model: pp and tg of both and the ratios.
set -u
cd "$(dirname "$0")/.."
PEER=${PEER:-$HOME/.cache/shoal-peer/bin/llama_peer}
SHOAL=$(pwd)/build/shoal
T=2
K=3
while [ $# -gt 0 ]; do
  case "$1" in
    -t) T=$2; shift 2 ;;
    -k) K=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-t N] [-k ROUNDS] MODEL.gguf..." >&2; exit 2; }
for m in "$@"; do
  lp=0; lt=0; sp=0; st=0
  for ((k = 0; k < K; k++)); do
    l=$("$PEER" bench "$m" -p 128 -n 64 -r 5 -t "$T" 2>/dev/null)
    s=$("$SHOAL" bench -m "$m" -p 128 -n 64 -r 5 -t "$T" 2>/dev/null)
    read -r a b < <(echo "$l" | sed -n 's/.*pp=\([0-9.]*\) tg=\([0-9.]*\).*/\1 \2/p')
    read -r c d < <(echo "$s" | sed -n 's/.*pp=\([0-9.]*\) tg=\([0-9.]*\).*/\1 \2/p')
    lp=$(python3 -c "print(max($lp, ${a:-0}))"); lt=$(python3 -c "print(max($lt, ${b:-0}))")
    sp=$(python3 -c "print(max($sp, ${c:-0}))"); st=$(python3 -c "print(max($st, ${d:-0}))")
  done
  type=$(echo "$s" | sed -n 's/.*type=\([^ ]*\).*/\1/p')
  python3 -c "
lp, lt, sp, st = $lp, $lt, $sp, $st
print('%-28s %-5s t=%s  llama.cpp pp=%8.1f tg=%7.1f | shoal pp=%8.1f tg=%7.1f | pp x%.2f tg x%.2f' % (
    '$(basename "$m")', '$type', $T, lp, lt, sp, st, sp / lp if lp else 0, st / lt if lt else 0))"
done
