#!/usr/bin/env bash
# Starts examples/edge.yaml on loopback: two shoal nodes and the router in front of them.
# Ctrl-C (or SIGTERM) stops all three. SHOAL=path overrides the binary (default build/shoal).
set -eu
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-build/shoal}
[ -x "$SHOAL" ] || { echo "edge.sh: $SHOAL is missing (make)" >&2; exit 1; }
pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap stop EXIT INT TERM
"$SHOAL" serve --host 127.0.0.1 --port 18091 -t 1 -m assistant=models/assistant.gguf \
  -m assistant-b=models/assistant-b.gguf & pids+=($!)
"$SHOAL" serve --host 127.0.0.1 --port 18092 -t 1 -m replies=models/replies.gguf & pids+=($!)
for port in 18091 18092; do
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
done
"$SHOAL" serve --config examples/edge.yaml & pids+=($!)
wait -n "${pids[@]}"
