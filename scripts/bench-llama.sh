#!/usr/bin/env bash
# Speed of shoal against llama.cpp (the llama_peer harness) on the same GGUF files.
# A benchmark, not a test: numbers depend on the machine and on whatever else runs on it.
#
#   scripts/bench-llama.sh [-t THREADS] [-k ROUNDS] MODEL.gguf...
#
# Each round runs `llama_peer bench MODEL -p 128 -n 64 -r 5` and `shoal bench -m MODEL -p 128
# -n 64 -r 5` back to back (both report the median of 5 runs after a warm-up, pp = one batch of
# 128 tokens, tg = 64 single-token decodes, from an empty cache). Over ROUNDS rounds (default 3)
# it prints the median of each side and the median of the per-round ratios (a round's two runs
# share the machine's state at that moment, so the ratio is steadier than either figure).
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
  rows=""
  for ((k = 0; k < K; k++)); do
    l=$("$PEER" bench "$m" -p 128 -n 64 -r 5 -t "$T" 2>/dev/null)
    s=$("$SHOAL" bench -m "$m" -p 128 -n 64 -r 5 -t "$T" 2>/dev/null)
    read -r a b < <(echo "$l" | sed -n 's/.*pp=\([0-9.]*\) tg=\([0-9.]*\).*/\1 \2/p')
    read -r c d < <(echo "$s" | sed -n 's/.*pp=\([0-9.]*\) tg=\([0-9.]*\).*/\1 \2/p')
    rows="$rows ${a:-0},${b:-0},${c:-0},${d:-0}"
  done
  type=$(echo "$s" | sed -n 's/.*type=\([^ ]*\).*/\1/p')
  python3 -c "
import statistics as st
r = [tuple(map(float, x.split(','))) for x in '$rows'.split()]
med = lambda i: st.median(x[i] for x in r)
rat = lambda i, j: st.median(x[i] / x[j] for x in r if x[j])
print('%-22s %-5s t=%s k=%d  llama.cpp pp=%8.1f tg=%7.1f | shoal pp=%8.1f tg=%7.1f | pp x%.2f tg x%.2f' % (
    '$(basename "$m")', '$type', $T, len(r), med(0), med(1), med(2), med(3), rat(2, 0), rat(3, 1)))"
done
