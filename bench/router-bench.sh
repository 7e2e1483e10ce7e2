#!/usr/bin/env bash
# The router's overhead: a node serving a tiny generated model and a router in front of it, both
# on loopback. First bench/http_latency.c (a C client: node and router requests interleaved, so
# both are measured under the same machine state; 3 runs), then bench/router_bench.py (the same
# from Python, which adds its own overhead on 2 cores; requests/s; router CPU per request).
#
#   bash bench/router-bench.sh [router_bench.py options...]
#
# A benchmark, not a test: the figures depend on the machine and whatever else runs on it.
set -eu
cd "$(dirname "$0")/.."
SHOAL=$(pwd)/build/shoal
[ -x "$SHOAL" ] || make -s
make -s bench-http-latency
TMP=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"' EXIT
"$SHOAL" gen-model --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf -o "$TMP/tiny.gguf" --dim 64 --layers 1 \
  --heads 2 --ffn 128 --ctx 256 --seed 1 2>/dev/null
port_of() { for _ in $(seq 1 200); do p=$(grep -oE 'on http://[^ ]*:[0-9]+' "$1" | grep -oE '[0-9]+$' | head -1); [ -n "$p" ] && { echo "$p"; return; }; sleep 0.05; done; cat "$1" >&2; exit 1; }
"$SHOAL" serve -m tiny="$TMP/tiny.gguf" --port 0 -t 1 --slots 8 --log-file /dev/null 2>"$TMP/node.log" &
PIDS+=($!)
NODE=$(port_of "$TMP/node.log")
cat >"$TMP/cluster.yaml" <<YAML
nodes: [{name: n1, url: "http://127.0.0.1:$NODE"}]
models: [{name: tiny, policy: least_loaded, backends: [n1]}]
YAML
"$SHOAL" serve --config "$TMP/cluster.yaml" --port 0 --log-file /dev/null 2>"$TMP/router.log" &
RPID=$!
PIDS+=($RPID)
ROUTER=$(port_of "$TMP/router.log")
for run in 1 2 3; do
  echo "== paired latency, run $run"
  build/bench/http_latency -n 3000 "http://127.0.0.1:$NODE" "http://127.0.0.1:$ROUTER"
done
echo
python3 bench/router_bench.py --direct "http://127.0.0.1:$NODE" --router "http://127.0.0.1:$ROUTER" \
  --router-pid "$RPID" "$@"
