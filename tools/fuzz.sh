#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (docs/fuzz.md) under AddressSanitizer and UBSan.
#
#   tools/fuzz.sh TARGET SECONDS   TARGET: image mask palette idx safetensors config, or all
#   tools/fuzz.sh ci               every target for CI_SECONDS (10) seconds
#
# Configures and builds build-fuzz/ when needed (CC=clang, -Dfuzz=true, ASan + UBSan),
# runs each target on a copy of tests/fuzz/corpus/TARGET in a temporary folder (the
# repository's corpus is never written; the files a target writes go there too, through
# TMPDIR), prints executions, exec/s and libFuzzer's coverage per target, and ends with
# one line per target "fuzz TARGET: N runs, C crashes". A crash, a leak, a UBSan report or
# an input running over TIMEOUT seconds is a crash: its input is kept in
# build-fuzz/crashes/TARGET/ and named in the output (with the report's first line and, up to
# 8 KiB, the input itself in base64, so that a CI log is enough to replay it), and the exit
# status is 1.
# Environment: FUZZ_JOBS (ninja jobs, default 2), FUZZ_ARGS (more libFuzzer flags).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

TARGETS=(image mask palette idx safetensors config)
CI_SECONDS=10
TIMEOUT=10
dir=build-fuzz

usage() {
  echo "usage: tools/fuzz.sh TARGET SECONDS | tools/fuzz.sh ci   (TARGET: ${TARGETS[*]} or all)" >&2
  exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
  ci) [ $# -eq 1 ] || usage; run=("${TARGETS[@]}"); secs=$CI_SECONDS ;;
  all) [ $# -eq 2 ] || usage; run=("${TARGETS[@]}"); secs=$2 ;;
  *)
    [ $# -eq 2 ] || usage
    [[ " ${TARGETS[*]} " == *" $1 "* ]] || { echo "tools/fuzz.sh: unknown target '$1'" >&2; usage; }
    run=("$1"); secs=$2 ;;
esac
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "tools/fuzz.sh: SECONDS must be a positive whole number" >&2; usage; }

start=$(date +%s)
if ! command -v clang >/dev/null; then
  tools/setup.sh || exit 1
fi

# shellcheck disable=SC2054  # the comma is meson's list syntax
opts=(-Dfuzz=true -Dtests=false -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false)
if [ ! -f "$dir/build.ninja" ]; then
  wipe=()
  [ -d "$dir/meson-private" ] && wipe=(--wipe)  # a setup that failed half-way
  mkdir -p "$dir"
  CC=clang meson setup "${wipe[@]}" "$dir" "${opts[@]}" >"$dir/fuzz-setup.log" 2>&1 ||
    { tail -n 40 "$dir/fuzz-setup.log" >&2; exit 1; }
fi
ninja_targets=()
for t in "${run[@]}"; do ninja_targets+=("tests/fuzz/fuzz_$t"); done
if ! ninja -C "$dir" -j "${FUZZ_JOBS:-2}" "${ninja_targets[@]}" >"$dir/fuzz-build.log" 2>&1; then
  tail -n 40 "$dir/fuzz-build.log" >&2
  echo "tools/fuzz.sh: building $dir failed (log: $dir/fuzz-build.log)" >&2
  exit 1
fi
echo "fuzz: built $dir in $(( $(date +%s) - start )) s"

tmp_base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmp_base=/dev/shm  # the targets write a file per input
work=$(mktemp -d "$tmp_base/vka-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tmp"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

status=0
summary=()
for t in "${run[@]}"; do
  corpus="$work/corpus/$t"
  crashes="$dir/crashes/$t"
  mkdir -p "$corpus" "$crashes" "$work/art-$t"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  log="$work/$t.log"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  TMPDIR="$work/tmp" "$dir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout="$TIMEOUT" \
    -print_final_stats=1 -artifact_prefix="$work/art-$t/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
  rc=$?
  el=$(( $(date +%s) - t0 ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ -z "$runs" ]; then  # a crash ends the run before the final stats
    runs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    eps=$(( ${runs:-0} / (el > 0 ? el : 1) ))
  fi
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
  ncrash=0
  for a in "$work/art-$t"/*; do
    [ -e "$a" ] || continue
    ncrash=$((ncrash + 1))
    cp "$a" "$crashes/"
    echo "fuzz $t: crashing input: $crashes/$(basename "$a")  (reproduce: $dir/tests/fuzz/fuzz_$t $crashes/$(basename "$a"))"
    # the input itself, so that a crash found on a machine whose files are gone (CI)
    # can be replayed from its log: base64 -d > in; fuzz_TARGET in
    size=$(stat -c %s "$a")
    if [ "$size" -le 8192 ]; then
      echo "fuzz $t: the input ($size bytes), base64: $(base64 -w 0 "$a")"
    fi
  done
  if [ "$rc" -ne 0 ] && [ "$ncrash" -eq 0 ]; then ncrash=1; fi
  printf 'fuzz %s: %s executions in %s s, %s exec/s, %s, %s corpus files\n' "$t" "${runs:-0}" \
    "$el" "${eps:-0}" "${cov:-cov: ?}" "$(find "$corpus" -type f | wc -l)"
  if [ "$ncrash" -ne 0 ]; then
    status=1
    pat='^==[0-9]+== ?ERROR|runtime error:|invariant broken|deadly signal|ALARM: working on the last Unit'
    grep -m 1 -B 2 -A 30 -E "$pat" "$log" | head -n 45
    # the report's first line and the first frame in vkaccum's or stb's code, prefixed
    # so that tools/test.sh's summary keeps them
    grep -m 1 -E "$pat" "$log" | sed "s/^/fuzz $t: report: /"
    grep -m 1 -E '^ +#[0-9]+ .* in .*(datasets|src|stb)/' "$log" | sed "s/^ */fuzz $t: at: /"
    cp "$log" "$crashes/last.log"
    echo "fuzz $t: libFuzzer's log: $crashes/last.log"
  fi
  summary+=("fuzz $t: ${runs:-0} runs, $ncrash crashes")
done
echo "fuzz: $(( $(date +%s) - start )) s in all"
printf '%s\n' "${summary[@]}"
exit "$status"
