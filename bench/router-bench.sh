#!/usr/bin/env bash
# The router's overhead: a node serving a tiny generated model, a router in front of it and,
# for reference, nginx (proxy_pass with keep-alive upstream connections) in front of the same
# node, all on loopback. First bench/http_latency.c (a C client: node, router and nginx requests
# interleaved, so all are measured under the same machine state; RUNS runs), then
# bench/router_bench.py (the same from Python, which adds its own overhead on 2 cores;
# requests/s; router CPU per request).
#
#   bash bench/router-bench.sh [router_bench.py options...]
#
# Environment: RUNS (default 3) and ROUNDS (3000 per run) of the C client; BASE=/path/to/shoal
# adds a second router run by another build of shoal, interleaved with the others (to compare
# two builds); PYTHON=0 skips the Python client; NGINX=0 skips nginx. nginx is not a dependency
# of shoal: when it is missing the script says so and measures without it (on Debian:
# apt-get install nginx-light).
#
# A benchmark, not a test: the figures depend on the machine and whatever else runs on it.
set -eu
cd "$(dirname "$0")/.."
SHOAL=$(pwd)/build/shoal
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-3000}
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
URLS=("http://127.0.0.1:$NODE" "http://127.0.0.1:$ROUTER")
NAMES="node, router"
if [ -n "${BASE:-}" ]; then
  "$BASE" serve --config "$TMP/cluster.yaml" --port 0 --log-file /dev/null 2>"$TMP/base.log" &
  PIDS+=($!)
  URLS+=("http://127.0.0.1:$(port_of "$TMP/base.log")")
  NAMES="$NAMES, router ($BASE)"
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
if [ "${NGINX:-1}" != 0 ] && [ -x "$NGINX_BIN" ]; then
  NGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$TMP/nginx"
  # one worker process (no master), no access log, HTTP/1.1 keep-alive to the node, no limit
  # on the requests of a keep-alive connection (nginx closes it after 1000 by default)
  cat >"$TMP/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream node { server 127.0.0.1:$NODE; keepalive 16; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGPORT;
    location / {
      proxy_pass http://node;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
  "$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$NGPORT/health" && break; sleep 0.05; done
  URLS+=("http://127.0.0.1:$NGPORT")
  NAMES="$NAMES, nginx"
elif [ "${NGINX:-1}" != 0 ]; then
  echo "(nginx not found: measuring without it; on Debian: apt-get install nginx-light)"
fi
echo "servers, in order: $NAMES"
for run in $(seq 1 "$RUNS"); do
  echo "== paired latency, run $run"
  build/bench/http_latency -n "$ROUNDS" "${URLS[@]}"
done
[ "${PYTHON:-1}" = 0 ] && exit 0
echo
python3 bench/router_bench.py --direct "http://127.0.0.1:$NODE" --router "http://127.0.0.1:$ROUTER" \
  --router-pid "$RPID" "$@"
