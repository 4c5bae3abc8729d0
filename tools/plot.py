#!/usr/bin/env python3
"""Curves of vkaccum runs: `vkaccum plot RUN [RUN...] --out curves.png` calls this.

Reads each RUN/metrics.jsonl and draws, against optimizer steps, with one colour per run
and a legend:
  seg runs: training loss, learning rate, validation mIoU and pixel accuracy;
  gan runs: D and G losses, D(x) and D(G(z)), the Frechet distance (when logged).
Runs of both kinds cannot share one figure. Written with matplotlib (Debian's
python3-matplotlib); exit status 3 with what to install when it is missing, 2 on bad
arguments or files, naming them.
"""
import argparse
import json
import os
import sys


def read_run(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    rows = []
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    # a torn last line of a run that was killed: vkaccum drops it on
                    # resume; here it is skipped
                    print(f"plot: {path}:{n}: not a JSON line, skipped", file=sys.stderr)
    except OSError as e:
        print(f"plot: cannot read {path}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    train = [r for r in rows if r.get("kind") == "train"]
    if not train:
        print(f"plot: {path} has no training lines", file=sys.stderr)
        sys.exit(2)
    kind = "gan" if "d_loss" in train[0] else "seg"
    return path, kind, rows


def series(rows, kind, key):
    pts = [(r["step"], r[key]) for r in rows
           if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


PANELS = {
    "seg": [("training loss", [("train", "loss", "-")], "log"),
            ("learning rate", [("train", "lr", "-")], "linear"),
            ("validation", [("val", "miou", "-"), ("val", "pixel_acc", "--")], "linear")],
    "gan": [("losses", [("train", "d_loss", "-"), ("train", "g_loss", "--")], "linear"),
            ("discriminator outputs",
             [("train", "d_real", "-"), ("train", "d_fake", "--")], "linear"),
            ("Frechet distance", [("fid", "fd", "-")], "log")],
}
LABELS = {"loss": "loss", "lr": "lr", "miou": "mIoU", "pixel_acc": "pixel accuracy",
          "d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
          "fd": "FD"}


def main(argv):
    ap = argparse.ArgumentParser(prog="vkaccum plot", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or metrics.jsonl files)")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)
    runs = [read_run(r) for r in a.runs]
    kinds = {k for _, k, _ in runs}
    if len(kinds) > 1:
        print("plot: seg and gan runs cannot share one figure: plot them separately",
              file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is missing: install python3-matplotlib "
              "(Debian: apt-get install python3-matplotlib)", file=sys.stderr)
        return 3
    kind = kinds.pop()
    panels = PANELS[kind]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (title, keys, scale), ax in zip(panels, axes[0]):
        drawn = False
        for i, (path, _, rows) in enumerate(runs):
            name = os.path.basename(os.path.dirname(os.path.abspath(path)))
            for src, key, style in keys:
                x, y = series(rows, src, key)
                if not x:
                    continue
                label = name if len(keys) == 1 else f"{name} {LABELS[key]}"
                ax.plot(x, y, style, color=colours[i % len(colours)], label=label,
                        marker="o" if src != "train" else None, markersize=3)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        if drawn:
            if scale == "log" and all(v > 0 for _, _, rows in runs
                                      for k in keys for v in series(rows, k[0], k[1])[1]):
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    tmp = a.out + ".tmp-plot"
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, a.out)  # a reader never sees half a PNG
    except OSError as e:
        print(f"plot: cannot write {a.out}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
