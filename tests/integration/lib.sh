# Shared helpers for the integration tests (sourced). Each test script calls `check` / `ok` /
# `bad` and ends with `finish`, which prints "N passed, M failed" and sets the exit status.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHOAL=${SHOAL:-$ROOT/build/shoal}
VOCAB=$ROOT/tests/data/vocab
T_PASS=0
T_FAIL=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/shoal-it-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# servers started by the tests keep their state (the Responses store) in the test's directory
export XDG_STATE_HOME=$TMP/state

ok() { T_PASS=$((T_PASS + 1)); echo "ok   $*"; }
bad() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $*"; }
# check DESCRIPTION COMMAND...: passes when the command exits 0.
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
finish() { echo "$T_PASS passed, $T_FAIL failed"; [ "$T_FAIL" -eq 0 ]; }
