#!/usr/bin/env bash
# README command 2: installs what is missing (tools/setup.sh --tests), builds with warnings as
# errors, runs the whole Criterion suite with the Khronos validation layer on, and ends
# with one line "N passed, N failed" counting the suite's test cases.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh --tests || exit 1

dir=build-test
opts=(-Dbuildtype=debugoptimized -Dwerror=true -Dtests=true -Dmpi=enabled) # the dist tests need MPI
if [ -f "$dir/build.ninja" ]; then
  meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || exit 1
else
  meson setup "$dir" "${opts[@]}" || exit 1
fi
ninja -C "$dir" || exit 1

start=$(date +%s)
meson test -C "$dir" --print-errorlogs --num-processes 1
status=$?
echo "suite time: $(( $(date +%s) - start )) s"

# The tests of what reads files (datasets, checkpoints) once more, built with
# AddressSanitizer and UBSan (only those tests are built and run). UBSan stops at its first report, so undefined behaviour crashes
# the test; LeakSanitizer's reports leave Criterion's counts alone, so each sanitizer
# report in its log counts as one more failure.
adir=build-asan
aopts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dtests=true)
astart=$(date +%s)
alog="$adir/meson-logs/testlog.txt"
rm -f "$alog"
if [ -f "$adir/build.ninja" ]; then
  meson setup --reconfigure "$adir" "${aopts[@]}" >/dev/null
else
  meson setup "$adir" "${aopts[@]}" >/dev/null
fi && { ninja -C "$adir" tests/test_datasets tests/test_checkpoint >"$adir/ninja-datasets.log" 2>&1 ||
        { tail -n 40 "$adir/ninja-datasets.log"; false; }; }
abuild=$?
astatus=1
if [ "$abuild" -eq 0 ]; then
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C "$adir" --no-rebuild --print-errorlogs datasets checkpoint
  astatus=$?
else
  echo "$adir: the sanitizer build of the dataset and checkpoint tests failed"
fi
if [ "$astatus" -ne 0 ]; then status=1; fi
echo "sanitizer suite time: $(( $(date +%s) - astart )) s"

# The file readers under libFuzzer (ASan/UBSan) for a short fixed time each
# (docs: README "Fuzzing"); each crashing target counts as one more failure.
fstart=$(date +%s)
flog=$(mktemp)
tools/fuzz.sh ci 2>&1 | tee "$flog" | grep -E '^fuzz|crash|ERROR' | tail -n 20
fstatus=${PIPESTATUS[0]}
echo "fuzz time: $(( $(date +%s) - fstart )) s"
fcrash=$(sed -n 's/^fuzz [a-z]*: [0-9]* runs, \([0-9]*\) crash.*/\1/p' "$flog" | awk '{s += $1} END {print s + 0}')
if [ "$fstatus" -ne 0 ]; then
  status=1
  [ "${fcrash:-0}" -gt 0 ] || fcrash=1
fi

# Each Criterion executable prints "Synthesis: Tested: T | Passing: P | Failing: F |
# Crashing: C"; an executable that died before printing it counts as one failure.
passed=0; failed=0
for log in "$dir/meson-logs/testlog.txt" "$alog"; do
  [ -f "$log" ] || continue
  ran=$(grep -c '^==================================== [0-9]*/[0-9]* ' "$log")
  synth=$(grep -c 'Synthesis: Tested:' "$log")
  while read -r p f c; do
    passed=$((passed + p)); failed=$((failed + f + c))
  done < <(sed -n 's/.*Synthesis: Tested: [0-9]* | Passing: \([0-9]*\) | Failing: \([0-9]*\) | Crashing: \([0-9]*\).*/\1 \2 \3/p' "$log")
  if [ "${ran:-0}" -gt "${synth:-0}" ]; then failed=$((failed + ran - synth)); fi
done
san=$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$alog" 2>/dev/null)
failed=$((failed + ${san:-0}))
if [ "$abuild" -ne 0 ]; then failed=$((failed + 1)); fi
failed=$((failed + ${fcrash:-0}))
if [ "${san:-0}" -gt 0 ]; then status=1; fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
