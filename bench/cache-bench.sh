#!/usr/bin/env bash
# The response cache's figures (BENCHMARKS.md, "Response cache"): the latency of a hit through
# HTTP on loopback from each tier against an uncached 1-token completion of a tiny model, and
# the throughput at a 70% repeat rate with the shipped reply model. Starts its own nodes and a
# redis-server on free loopback ports; needs `make` (build/shoal) and `make bench-http-latency`.
#   bash bench/cache-bench.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3000}
T=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
make -s build/shoal build/bench/http_latency >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$T/redis.log" 2>&1 &
PIDS+=($!)
./build/shoal gen-model --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf -o "$T/tiny.gguf" --dim 64 \
  --layers 1 --heads 2 --ffn 128 --ctx 512 --seed 1 2>/dev/null
node() { # NAME ARGS...: a node on a free port; prints nothing, sets URL_NAME
  local n=$1 p
  shift
  p=$(port)
  ./build/shoal serve --port "$p" -t 1 --log-file /dev/null "$@" >"$T/$n.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.1; done
  eval "URL_$n=http://127.0.0.1:$p"
}
node plain -m tiny="$T/tiny.gguf"
node mem -m tiny="$T/tiny.gguf" --cache
node sql -m tiny="$T/tiny.gguf" --cache-mb 0 --cache-db "$T/c.db"
node red -m tiny="$T/tiny.gguf" --cache-mb 0 --cache-redis "redis://127.0.0.1:$RP"
BODY='{"prompt":"turn on the kitchen lights","max_tokens":1,"temperature":0}'
for u in "$URL_plain" "$URL_mem" "$URL_sql" "$URL_red"; do
  curl -s -o /dev/null "$u/v1/completions" -d "$BODY"
done
sleep 0.5 # the writer threads store the answers
echo "## hit latency: uncached (1-token completion, 64-wide 1-layer model), memory, sqlite, redis"
./build/bench/http_latency -n "$ROUNDS" -p /v1/completions -d "$BODY" "$URL_plain" "$URL_mem" "$URL_sql" "$URL_red"
for u in "$URL_mem" "$URL_sql" "$URL_red"; do
  curl -s -D - -o /dev/null "$u/v1/completions" -d "$BODY" | tr -d '\r' | grep -i '^x-shoal-cache-tier'
done
echo
echo
echo "## semantic hit (models/assistant.gguf embeds; every request a paraphrase of the stored one) vs exact memory hit"
node sem -m r=models/replies.gguf -m nlu=models/assistant.gguf --semantic-cache nlu --semantic-label
chat() { printf '{"model":"r","messages":[{"role":"user","content":"%s"}],"max_tokens":12,"temperature":0}' "$1"; }
curl -s -o /dev/null "$URL_sem/v1/chat/completions" -d "$(chat 'turn on the kitchen lights')"
curl -s -D - -o /dev/null "$URL_sem/v1/chat/completions" -d "$(chat 'please switch on the lights in the kitchen')" |
  tr -d '\r' | grep -iE '^x-shoal-(cache-tier|similarity)'
./build/bench/http_latency -n "$ROUNDS" -p /v1/chat/completions -d "$(chat 'turn on the kitchen lights')" "$URL_sem"
./build/bench/http_latency -n "$ROUNDS" -p /v1/chat/completions -d "$(chat 'please switch on the lights in the kitchen')" "$URL_sem"
echo
# generation must cost more than the Python client's own ~1.5 ms per request: a 256-wide,
# 4-layer random model writing 32 tokens (random weights never stop early)
./build/shoal gen-model --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf -o "$T/mid.gguf" --dim 256 \
  --layers 4 --heads 4 --ffn 768 --ctx 512 --seed 2 2>/dev/null
echo "## throughput at a 70% repeat rate (256-wide 4-layer model, 32 tokens, 8 clients)"
node rp -m mid="$T/mid.gguf" -t 2
node rc -m mid="$T/mid.gguf" -t 2 --cache
python3 bench/cache_load.py "$URL_rp" "$URL_rc" --max-tokens 32
