#!/usr/bin/env bash
# fuzz.sh SECONDS BIN...: runs each libFuzzer target for SECONDS, seeded from its corpus
# (tests/fuzz/corpus/NAME/, the committed seeds; new inputs go to build/fuzz/corpus/NAME/).
# One check per target: it passes when the run ends without a crash, leak or sanitizer report.
# Prints each target's execution count and a closing "N passed, M failed".
set -u
secs=$1; shift
pass=0; fail=0
for bin in "$@"; do
  case "$bin" in *.d|*.o|*.a) continue ;; esac
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds="tests/fuzz/corpus/${name#fuzz_}"
  work="build/fuzz/corpus/${name#fuzz_}"
  mkdir -p "$work" build/fuzz/artifacts
  log="build/fuzz/$name.log"
  dict=""; [ -f "tests/fuzz/${name#fuzz_}.dict" ] && dict="-dict=tests/fuzz/${name#fuzz_}.dict"
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
      -artifact_prefix=build/fuzz/artifacts/ $dict "$work" $( [ -d "$seeds" ] && echo "$seeds" ) >"$log" 2>&1
  rc=$?
  execs=$(grep -aoE 'Done [0-9]+ runs' "$log" | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); echo "ok   $name: ${execs:-?} executions in ${secs}s"
  else
    fail=$((fail + 1)); echo "FAIL $name (exit $rc), see $log"; grep -aE 'ERROR|SUMMARY|==[0-9]+==' "$log" | head -20
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
