#!/bin/sh
# vkaccum against PyTorch on the workloads of tools/bench/workloads.json, in one go:
# `vkaccum bench train` and tools/bench/torch_ref.py run alternately (vkaccum, PyTorch,
# vkaccum, PyTorch, ... so that a change in the machine's load hits both), each case at
# the same micro-batch, and `vkaccum bench gemm` before and after as the device's best
# SGEMM. Prints one Markdown table: img/s and their ratio, vkaccum's GFLOP/s and its
# kernel efficiency against bench gemm, vkaccum's device peak against PyTorch's peak RSS;
# then the accumulation overhead of each workload measured at several micro-batches.
#
#   tools/bench/compare.sh [-v VKACCUM] [-r ROUNDS] [-s STEPS] [-w WARMUP] [CASE...]
#   tools/bench/compare.sh -t DIR      # the table of the runs kept in DIR, again
#
# CASE is WORKLOAD@MICRO, MICRO a micro-batch or auto (vkaccum's choice from its memory
# prediction, which PyTorch then runs too). Default cases: seg256@1 seg256@4
# gan32@16 gan32@64 seg1024@auto; -r 2 rounds; steps and warm-up the workload's. Every
# figure is the median over the rounds (ratios: of the ratios within each round). The
# JSON of every run is kept in a folder named at the end. Run it under nice on a shared
# machine; PyTorch is Debian's /usr/bin/python3 (VKACCUM_PYTHON overrides).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
vkaccum=$here/../../build/vkaccum
python=${VKACCUM_PYTHON:-/usr/bin/python3}
rounds=2
steps=
warmup=
out=
while getopts v:r:s:w:t: o; do
    case $o in
    v) vkaccum=$OPTARG ;;
    r) rounds=$OPTARG ;;
    s) steps=$OPTARG ;;
    w) warmup=$OPTARG ;;
    t) out=$OPTARG ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
cases=${*:-seg256@1 seg256@4 gan32@16 gan32@64 seg1024@auto}

# The runs, into a new folder $out.
measure() {
    [ -x "$vkaccum" ] || { echo "compare.sh: no vkaccum at $vkaccum (give -v)" >&2; exit 2; }
    out=$(mktemp -d /tmp/vkaccum-compare.XXXXXX)
    extra=
    [ -n "$steps" ] && extra="$extra --steps $steps"
    [ -n "$warmup" ] && extra="$extra --warmup $warmup"
    load() { cut -d' ' -f1-3 /proc/loadavg; }
    echo "load $(load)" > "$out/load.start"

    "$vkaccum" bench gemm --json > "$out/gemm.0.json"
    for c in $cases; do
        w=${c%@*} m=${c#*@}
        if [ "$m" = auto ]; then
            m=$("$vkaccum" bench train --workload "$w" --steps 0 --json |
                "$python" -c 'import json, sys; print(json.load(sys.stdin)["micro_batch"])')
        fi
        r=1
        while [ "$r" -le "$rounds" ]; do
            echo "compare.sh: $w at micro-batch $m, round $r: vkaccum, then PyTorch" >&2
            # shellcheck disable=SC2086
            "$vkaccum" bench train --workload "$w" --micro-batch "$m" $extra --json \
                > "$out/$w@$m.vk.$r.json"
            # shellcheck disable=SC2086
            "$python" "$here/torch_ref.py" --workload "$w" --micro-batch "$m" $extra --json \
                > "$out/$w@$m.pt.$r.json"
            r=$((r + 1))
        done
    done
    "$vkaccum" bench gemm --json > "$out/gemm.1.json"
    echo "load $(load)" > "$out/load.end"
}

[ -n "$out" ] || measure

"$python" - "$out" <<'EOF'
import glob, json, os, statistics, sys, time

out = sys.argv[1]
def read(p):
    with open(p) as f:
        return json.load(f)

def best_gemm(p):
    r = read(p)["results"][0]
    return max(v for k, v in r.items() if k.startswith("gflops_"))

gemm = statistics.median([best_gemm(p) for p in sorted(glob.glob(f"{out}/gemm.*.json"))])
cases = {}
for p in sorted(glob.glob(f"{out}/*.vk.*.json"), key=os.path.getmtime):  # in run order
    case, _, r, _ = os.path.basename(p).rsplit(".", 3)
    cases.setdefault(case, []).append((read(p), read(p.replace(".vk.", ".pt."))))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
runs0 = next(iter(cases.values()))
load = [open(f"{out}/load.{k}").read().strip() for k in ("start", "end")]
print(f"{time.strftime('%Y-%m-%d', time.localtime(os.path.getmtime(out + '/load.start')))}, {cpu}, {os.cpu_count()} cores, {load[0]} at the start, "
      f"{load[1]} at the end; vkaccum on {runs0[0][0]['device']}, "
      f"PyTorch on {runs0[0][1]['device']}; bench gemm {gemm:.1f} GFLOP/s; medians of "
      f"{len(runs0)} alternating rounds\n")
print("| workload | batch | micro-batch x k | vkaccum img/s | PyTorch img/s | vkaccum / PyTorch "
      "| vkaccum GFLOP/s | / bench gemm | vkaccum device peak MiB | PyTorch peak RSS MiB "
      "| peak / RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
med = statistics.median
rows = {}
for case, runs in cases.items():
    vk = [a for a, _ in runs]
    pt = [b for _, b in runs]
    w, b, m = vk[0]["workload"], vk[0]["batch"], vk[0]["micro_batch"]
    k = -(-b // m)
    ips = med([a["img_per_s"] for a in vk])
    rows.setdefault(w, []).append((m, k, ips))
    rec = "" if vk[0]["recompute"] == "none" else f" (recompute {vk[0]['recompute']})"
    print(f"| {w} | {b} | {m} x {k}{rec} | {ips:.3g} | {med([c['img_per_s'] for c in pt]):.3g} "
          f"| {med([a['img_per_s'] / c['img_per_s'] for a, c in runs]):.2f} "
          f"| {med([a['gflops'] for a in vk]):.2f} | {med([a['gflops'] for a in vk]) / gemm:.2f} "
          f"| {med([a['peak_mib'] for a in vk]):.0f} | {med([c['peak_rss_mib'] for c in pt]):.0f} "
          f"| {med([a['peak_mib'] / c['peak_rss_mib'] for a, c in runs]):.2f} |")
for w, r in rows.items():
    if len(r) < 2:
        continue
    top = max(r, key=lambda x: x[0])
    parts = [f"{m} x {k}: {ips / top[2]:.2f}" for m, k, ips in sorted(r) if (m, k) != top[:2]]
    print(f"\nAccumulation, {w}: img/s against {top[0]} x {top[1]}: " + ", ".join(parts))
print(f"\n(runs kept in {out})")
EOF
