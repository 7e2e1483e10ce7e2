# Helpers for tests that run `shoal serve` (sourced after lib.sh).

# start_server LOG ARGS...: starts shoal serve on a free port in the background; sets SPID and
# PORT once /health answers (or fails the test run after 30 s).
start_server() {
  local log=$1; shift
  "$SHOAL" serve --port 0 "$@" >"$log" 2>&1 &
  SPID=$!
  PORT=""
  for _ in $(seq 1 300); do
    PORT=$(grep -oE 'on http://[^ ]*:[0-9]+' "$log" 2>/dev/null | grep -oE '[0-9]+$' | head -1)
    [ -n "$PORT" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && return 0
    kill -0 $SPID 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start:"; cat "$log"; return 1
}

# start_named NAME ARGS...: `shoal serve ARGS` in the background (log $TMP/NAME.log, pid added
# to PIDS); sets PID_NAME and PORT_NAME once /health answers 200 (or prints the log and fails
# after 30 s).
start_named() {
  local name=$1; shift
  local log=$TMP/$name.log
  "$SHOAL" serve "$@" >"$log" 2>&1 &
  local pid=$! port=""
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    port=$(grep -oE 'on http://[^ ]*:[0-9]+' "$log" 2>/dev/null | grep -oE '[0-9]+$' | head -1)
    if [ -n "$port" ] && curl -sf -o /dev/null "http://127.0.0.1:$port/health"; then
      eval "PID_$name=$pid PORT_$name=$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:"; cat "$log"; return 1
}

stop_server() {
  [ -n "${SPID:-}" ] || return 0
  kill -TERM "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}

# ensure_node_clients: installs the npm packages the client tests use (tests/integration/node:
# openai, @langchain/openai, ai, @ai-sdk/openai, ...) with `npm ci` from the lock file, once per
# lock file: a copy of the lock file in node_modules marks an install of exactly those versions.
ensure_node_clients() {
  local dir=$ROOT/tests/integration/node
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.shoal-lock.json" 2>/dev/null && return 0
  { (cd "$dir" && npm ci --silent >/dev/null 2>&1) || (cd "$dir" && npm ci); } &&
    cp "$dir/package-lock.json" "$dir/node_modules/.shoal-lock.json"
}

# slots_busy BASE [HEADER]: how many slots of all models are busy (GET /slots).
slots_busy() {
  local h=()
  [ -n "${2:-}" ] && h=(-H "$2")
  curl -s "${h[@]}" "$1/slots" | python3 -c 'import json,sys; print(sum(m["busy"] for m in json.load(sys.stdin)))' 2>/dev/null
}

# wait_busy BASE N [HEADER]: waits (up to 30 s) until exactly N slots are busy; 1 on timeout.
# Tests use it to order events by the server's state instead of by sleeping.
wait_busy() {
  for _ in $(seq 1 3000); do
    [ "$(slots_busy "$1" "${3:-}")" = "$2" ] && return 0
    sleep 0.01
  done
  echo "wait_busy: $2 busy slots never seen at $1" >&2
  return 1
}
