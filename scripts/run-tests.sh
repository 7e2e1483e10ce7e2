#!/usr/bin/env bash
# The test runner behind `make test` / `make unit` / `make asan`.
#
#   run-tests.sh unit BIN...   run cmocka binaries, sum their results
#   run-tests.sh all           unit tests, integration tests, unit tests under ASan+UBSan,
#                              the server and router integration tests with an ASan+UBSan
#                              shoal, and a short libFuzzer run of every fuzz target
#
# Every part's passes and failures are added up; the last line is "N passed, M failed" and the
# exit status is non-zero when anything failed. A binary or script that dies without printing
# its summary counts as one failure.
set -u
cd "$(dirname "$0")/.."
PASS=0
FAIL=0
FAILED_NAMES=()
LOG_DIR=${TEST_LOG_DIR:-build/test-logs}
mkdir -p "$LOG_DIR"

# run_cmocka NAME BIN: cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] M test(s)".
run_cmocka() {
  local name=$1 bin=$2 log="$LOG_DIR/$1.log" p f rc
  "$bin" >"$log" 2>&1
  rc=$?
  p=$(grep -aoE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
  f=$(grep -aoE '^\[  FAILED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  PASS=$((PASS + p)); FAIL=$((FAIL + f))
  if [ "$f" -ne 0 ]; then
    FAILED_NAMES+=("$name"); echo "FAIL $name ($p passed, $f failed) — $log"; tail -n 30 "$log"
  else
    echo "ok   $name ($p passed)"
  fi
}

# run_script NAME CMD...: a script that ends with "N passed, M failed".
run_script() {
  local name=$1 log="$LOG_DIR/$1.log" line p f rc
  shift
  "$@" >"$log" 2>&1
  rc=$?
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  p=$(echo "$line" | awk '{print $1+0}')
  f=$(echo "$line" | awk '{print $3+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  PASS=$((PASS + p)); FAIL=$((FAIL + f))
  if [ "$f" -ne 0 ]; then
    FAILED_NAMES+=("$name"); echo "FAIL $name ($p passed, $f failed) — $log"
    # the failing checks first (a CI page may show only the start), then the end of the log
    grep -a '^FAIL' "$log" | head -n 20 | sed 's/^/  /'
    tail -n 40 "$log"
  else
    echo "ok   $name ($p passed)"
  fi
}

run_units() {
  local prefix=$1; shift
  for bin in "$@"; do
    case "$bin" in *.d|*.o) continue ;; esac   # make's dependency files sit beside the binaries
    [ -x "$bin" ] && run_cmocka "$prefix$(basename "$bin")" "$bin"
  done
}

mode=${1:-all}; shift || true
case "$mode" in
  unit)
    run_units "" "$@"
    ;;
  all)
    echo "== unit tests"
    run_units "" build/tests/test_*
    echo "== integration tests"
    for s in tests/integration/test_*.sh; do
      [ -e "$s" ] && run_script "$(basename "$s" .sh)" bash "$s"
    done
    echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    if make --no-print-directory -s BUILD=build/asan SAN=1 \
         $(ls tests/unit/test_*.c | sed 's|tests/unit/|build/asan/tests/|; s|\.c$||') >"$LOG_DIR/asan-build.log" 2>&1; then
      run_units "asan:" build/asan/tests/test_*
    else
      FAIL=$((FAIL + 1)); FAILED_NAMES+=("asan-build"); tail -n 30 "$LOG_DIR/asan-build.log"
    fi
    echo "== the server and the router under AddressSanitizer + UndefinedBehaviorSanitizer"
    # the integration tests again with an instrumented shoal; every sanitizer report a process
    # writes (errors, and leaks found when a server exits) is one more failure
    SANLOG=$(pwd)/$LOG_DIR/sanitizer
    rm -rf "$SANLOG"; mkdir -p "$SANLOG"
    if make --no-print-directory -s BUILD=build/asan SAN=1 build/asan/shoal >"$LOG_DIR/asan-shoal-build.log" 2>&1; then
      for s in tests/integration/test_serve.sh tests/integration/test_cluster.sh tests/integration/test_encoder.sh \
               tests/integration/test_api.sh; do
        ASAN_OPTIONS=log_path=$SANLOG/asan UBSAN_OPTIONS=log_path=$SANLOG/ubsan:print_stacktrace=1 \
          SHOAL=$(pwd)/build/asan/shoal run_script "asan:$(basename "$s" .sh)" bash "$s"
      done
      for r in "$SANLOG"/*; do
        [ -e "$r" ] || continue
        FAIL=$((FAIL + 1)); FAILED_NAMES+=("sanitizer-report:$(basename "$r")")
        echo "FAIL sanitizer report $r"; head -n 30 "$r"
      done
    else
      FAIL=$((FAIL + 1)); FAILED_NAMES+=("asan-shoal-build"); tail -n 30 "$LOG_DIR/asan-shoal-build.log"
    fi
    echo "== fuzz smoke (${FUZZ_SMOKE_SECONDS:-20} s per target)"
    if make --no-print-directory -s fuzz-build >"$LOG_DIR/fuzz-build.log" 2>&1; then
      run_script "fuzz-smoke" bash scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-20}" build/fuzz/fuzz_*
    else
      FAIL=$((FAIL + 1)); FAILED_NAMES+=("fuzz-build"); tail -n 30 "$LOG_DIR/fuzz-build.log"
    fi
    ;;
  *) echo "usage: $0 unit BIN... | all" >&2; exit 2 ;;
esac

[ ${#FAILED_NAMES[@]} -eq 0 ] || echo "failed: ${FAILED_NAMES[*]}"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
