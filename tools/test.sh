#!/usr/bin/env bash
# README command 2: installs what is missing (tools/setup.sh), builds with warnings as
# errors, runs the whole Criterion suite with the Khronos validation layer on, and ends
# with one line "N passed, N failed" counting the suite's test cases.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh || exit 1

dir=build-test
opts=(-Dbuildtype=debugoptimized -Dwerror=true -Dtests=true)
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

# Each Criterion executable prints "Synthesis: Tested: T | Passing: P | Failing: F |
# Crashing: C"; an executable that died before printing it counts as one failure.
log="$dir/meson-logs/testlog.txt"
passed=0; failed=0
ran=$(grep -c '^==================================== [0-9]*/[0-9]* ' "$log" 2>/dev/null || echo 0)
synth=$(grep -c 'Synthesis: Tested:' "$log" || true)
while read -r p f c; do
  passed=$((passed + p)); failed=$((failed + f + c))
done < <(sed -n 's/.*Synthesis: Tested: [0-9]* | Passing: \([0-9]*\) | Failing: \([0-9]*\) | Crashing: \([0-9]*\).*/\1 \2 \3/p' "$log")
if [ "$ran" -gt "$synth" ]; then failed=$((failed + ran - synth)); fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
