#!/usr/bin/python3
"""Gradient accumulation against PyTorch: runs `vkaccum seg train --dump-grads` for an
effective batch B split into micro-batches of b (1, 2 and 4 by default: same seed, same
data, --no-augment), then redoes the window in PyTorch in float64 (tools/parity/unet.py,
from the very f32 initial weights and inputs each file holds) and prints, per b:

  loss   |vkaccum - PyTorch| / |PyTorch| of the window's loss (cross-entropy, reduction
         sum over the valid pixels / their count, ignore_index from the config); the
         valid-pixel count must be equal;
  grad   the largest max|diff| / max|ref| over the tensors of the normalised window
         gradient, and the tensor where it occurs;
  step   max |vkaccum step - torch.optim step| / lr, with torch.optim (1.13, foreach off,
         float64) applied to vkaccum's own gradient: this checks the optimizer;
  step*  the same against the step of the PyTorch gradient (reported, not checked: see
         below);

and whether the gradients, losses and steps of the micro-batch sizes are bitwise equal.
Data sets: "shapes" (the built-in generator, which has no ignored pixels) and "ignored", a
folder data set of B images written into the work folder whose masks hold ignore-index
pixels spread unevenly over the samples (none, a stripe, half, scattered). With
--norm batch the statistics are per micro-batch by design: the reference is then the
same chunks of b run through PyTorch (checked), and the difference from the full batch
of B is reported.

    ninja -C build && /usr/bin/python3 tools/parity/accum.py [--vkaccum build/vkaccum]
        [--norm group|batch] [--up convT|bilinear] [--data shapes,ignored] [-- VKARGS]

Tolerances, from what f32 can give here (the reference runs in float64 on the same f32
values, so a difference is vkaccum's rounding alone):
  grad 1e-5 (max|diff| / max|ref| per tensor). The op parity (tools/parity/ops.py)
    measured <= 6e-7 per op; chained through the ~20 layers here it measures <= 1.5e-6
    with GroupNorm. 1e-5 leaves a margin of ~7, while a semantic mismatch moves the
    gradient far more (measured on the "ignored" set: a mean of per-micro-batch means
    0.11 to 0.23, ignored pixels counted as class 0 0.50, dividing by all pixels 0.19).
    Two f32 effects are not errors and are handled explicitly:
    - ReLU kinks. A ReLU input within f32 rounding of 0 (a few 1e-7 of the layer's rms)
      may land on either side in vkaccum (as in PyTorch's own float32), which moves the
      gradients upstream of it by up to 1e-2. Where the gradient fails, each of the
      nearest such inputs of the reference (|x| < 4e-6 rms, at most 8) is taken on its
      other side, one at a time, and kept when that cuts the mismatch by a third; every one
      kept is printed. 4 windows out of 48 needed it with GroupNorm (seeds 1 to 12).
    - Cancelling biases. With BatchNorm the gradient of dec.*.up.bias cancels by
      construction (it feeds conv1 and then BatchNorm, which removes any per-channel
      constant: only the zero-padded border survives), so sum |dy| is 20 to 70 times
      max |db| (2 to 4 with GroupNorm), and vkaccum's f32 sums over 1024 pixels lose
      that much relative accuracy (measured up to 1.3e-5). The tolerance of a bias is
      1e-5 * max(1, (max_k sum|dy_k| / max_k |db_k|) / 5).
  loss 1e-5 relative (a sum of 4096 f32 log-softmax terms: <= 1.2e-7 measured).
  step |diff| <= 1e-3 * lr + 4 ulp_f32(|reference|) per element, against the step of
    vkaccum's own gradient. A stored f32 weight near 1 (norm weights) is rounded by up to
    6e-8 = 6e-5 lr at lr 1e-3, and the update takes a few such roundings (measured
    <= 1.0e-4 lr); the ulp term keeps the bound meaningful at smaller lr. AdamW's
    decoupled decay is lr * wd * |p| = 1e-2 lr on a norm weight with the
    --weight-decay 1e-2 used here, so a missed decay (measured 1e-2 lr), Adam's coupled
    decay instead (2 lr), a missed bias correction or a wrong eps fails.
  step* is not checked: Adam's first step is lr * g / (|g| + eps) per element, whose
    slope eps / (|g| + eps)^2 reaches 1 / eps = 1e8 where |g| ~ eps, so a gradient
    difference of 1e-12 (far below the grad tolerance) can move such an element by
    1e-4 lr; step* shows how far that goes (the "at |g|" column: the reference gradient
    there, ~1e-8 = eps), and step separates it from the optimizer.

Exit status 0 when everything is within tolerance and, with GroupNorm, the micro-batch
sizes are bitwise equal; 1 otherwise; 2 on a usage error or when vkaccum fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import st  # noqa: E402
import unet  # noqa: E402

GRAD_TOL = 1e-5
LOSS_TOL = 1e-5
STEP_TOL_LR = 1e-3
STEP_ULPS = 4
KINK_TOL = 4e-6
MAX_FLIPS = 8
CANCEL_OK = 5.0


class Dump:
    """One --dump-grads file: weights, inputs, gradient, step, loss, config, lr."""

    def __init__(self, path):
        entries, meta = st.read(path)
        a = {n: x for n, _, x in entries}
        self.path = path
        self.cfg = json.loads(meta["config"])
        self.lr = float(meta["lr"])
        self.image, self.mask = a["input.image"], a["input.mask"]
        self.loss, self.count = float(a["loss_and_count"][0]), float(a["loss_and_count"][1])
        self.loss_raw = a["loss_and_count"]
        self.weights = {n: x for n, x in a.items() if not n.startswith(unet.SKIP_PREFIXES)}
        self.grad = {n[5:]: x for n, x in a.items() if n.startswith("grad.")}
        self.step = {n[5:]: x for n, x in a.items() if n.startswith("step.")}


def same_bits(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and
                                        a[k].tobytes() == b[k].tobytes() for k in a)


def write_png(path, arr):
    from PIL import Image
    Image.fromarray(arr).save(path)


def make_ignored(root, n, size, ignore):
    """n images (size x size) with 3-class masks: sample 0 has no ignored pixel, 1 a
    stripe, 2 its left half, 3 and later ~10 % scattered pixels."""
    rng = np.random.default_rng(12345)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in (("train", n), ("val", 1)):
        os.makedirs(os.path.join(root, split, "images"), exist_ok=True)
        os.makedirs(os.path.join(root, split, "masks"), exist_ok=True)
        for i in range(count):
            cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [size // 4]
            mask = np.zeros((size, size), np.uint8)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
            mask[(yy > size - size // 3) & (xx < size // 2)] = 2
            img = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
            img[mask == 1] += np.array([150, 40, 20], np.uint8)
            img[mask == 2] += np.array([20, 60, 150], np.uint8)
            if i % 4 == 1:
                mask[size // 3:size // 3 + size // 6, :] = ignore
            elif i % 4 == 2:
                mask[:, :size // 2] = ignore
            elif i % 4 == 3:
                mask[rng.random((size, size)) < 0.1] = ignore
            write_png(os.path.join(root, split, "images", f"{i:03d}.png"), img)
            write_png(os.path.join(root, split, "masks", f"{i:03d}.png"), mask)


def run_vkaccum(args, data, b, out, show):
    cmd = [args.vkaccum, "seg", "train", "--dump-grads", out, "--data", data,
           "--batch", str(args.batch), "--micro-batch", str(b), "--no-augment",
           "--seed", str(args.seed), "--depth", str(args.depth), "--width", str(args.width),
           "--crop", str(args.crop), "--norm", args.norm, "--up", args.up,
           "--optimizer", args.optimizer, "--lr", repr(args.lr),
           "--weight-decay", repr(args.weight_decay)]
    if data in ("shapes", "fashion"):
        cmd += ["--train-count", str(args.batch)]
    cmd += args.vkargs
    if show:
        print("  $ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"vkaccum exited with {r.returncode}:\n{r.stdout}{r.stderr}")
    return Dump(out)


class Reference:
    """The float64 loss and gradient of the window of d, its batch run as chunks of
    `chunk` samples (B for the full batch), with the sign of a few ReLU inputs flipped
    (flips: {(norm module, (n, c, h, w))}, n over the whole batch). Also collects:
      kinks   the ReLU inputs (norm outputs) within KINK_TOL * rms of 0, nearest first,
              as (|x| / rms, module, index);
      cancel  per bias tensor, max_k sum |dy_k| / max_k |db_k|: how much its gradient
              cancels (1: not at all)."""

    def __init__(self, d, chunk, flips=frozenset()):
        model, _ = unet.load_vkaccum(d.path, dtype=torch.float64, buffers_from_model=True)
        model.train()
        ignore = int(d.cfg["ignore-index"])
        image = torch.from_numpy(d.image.astype(np.float64))
        mask = torch.from_numpy(d.mask.astype(np.int64))
        at = {"n0": 0}
        kinks, absdy = [], {}

        def norm_hook(name):
            def hook(mod, inp, out):
                rms = float(out.detach().pow(2).mean().sqrt())
                near = (out.detach().abs() < KINK_TOL * rms).nonzero().tolist()
                for idx in near:
                    g = (idx[0] + at["n0"],) + tuple(idx[1:])
                    kinks.append((abs(float(out[tuple(idx)])) / rms, name, g))
                mine = [i for (n, i) in flips if n == name and
                        at["n0"] <= i[0] < at["n0"] + out.shape[0]]
                if not mine:
                    return None
                shift = torch.zeros_like(out)
                for i in mine:
                    local = (i[0] - at["n0"],) + tuple(i[1:])
                    shift[local] = -2 * out[local].detach()
                return out + shift  # the value changes sign, its derivative stays 1
            return hook

        def dy_hook(name):
            def hook(mod, gin, gout):
                a = gout[0].detach().abs().sum((0, 2, 3))
                absdy[name] = absdy[name] + a if name in absdy else a
            return hook

        for name, mod in model.named_modules():
            if isinstance(mod, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
                mod.register_forward_hook(norm_hook(name))
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and \
                    mod.bias is not None:
                mod.register_full_backward_hook(dy_hook(name))
        total = None
        for s in range(0, image.shape[0], chunk):
            at["n0"] = s
            part = F.cross_entropy(model(image[s:s + chunk]), mask[s:s + chunk],
                                   ignore_index=ignore, reduction="sum")
            total = part if total is None else total + part
        self.count = int((mask != ignore).sum())
        loss = total / self.count
        loss.backward()
        self.loss = float(loss)
        self.grad = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
        self.kinks = sorted(kinks)
        self.cancel = {}
        for name, a in absdy.items():
            db = float(np.abs(self.grad[name + ".bias"]).max())
            self.cancel[name + ".bias"] = float(a.max()) / db if db > 0 else 1.0
        self.flips = flips


def grad_tol(ref, name):
    """GRAD_TOL, raised for a bias whose gradient cancels more than CANCEL_OK"""
    return GRAD_TOL * max(1.0, ref.cancel.get(name, 1.0) / CANCEL_OK)


def grad_check(got, ref):
    """(worst rel, its tensor, tensors beyond their tolerance)"""
    rel = grad_rel(got, ref.grad)
    bad = [n for n, r in rel.items() if not r <= grad_tol(ref, n)]
    worst = max(rel, key=rel.get)
    return rel[worst], worst, bad


def mismatch(got, ref):
    """sum over tensors of rel / tolerance: every tensor a kink reaches counts"""
    rel = grad_rel(got, ref.grad)
    return sum(r / grad_tol(ref, n) for n, r in rel.items())


def matched_reference(d, chunk):
    """Reference(d, chunk), with ReLU inputs that lie within f32 rounding of 0 taken on
    their other side where that brings vkaccum's gradient closer: at such an input the
    derivative is 0 or 1 depending on the last bit, in vkaccum as in any f32
    computation. The nearest MAX_FLIPS candidates are tried one at a time, in passes
    until none helps; a flip is kept when it cuts the summed mismatch by a third."""
    ref = Reference(d, chunk)
    score = mismatch(d.grad, ref)
    changed = True
    while changed and grad_check(d.grad, ref)[2]:
        changed = False
        for _, name, idx in ref.kinks[:MAX_FLIPS]:
            if (name, idx) in ref.flips or not grad_check(d.grad, ref)[2]:
                continue
            trial = Reference(d, chunk, ref.flips | {(name, idx)})
            s = mismatch(d.grad, trial)
            if s < score * 2 / 3:
                ref, score, changed = trial, s, True
    return ref


def optimizer_step(d, grads):
    """torch.optim's first step (float64) from d's initial weights with the given grads"""
    cfg = d.cfg
    names = list(grads)
    params = [torch.from_numpy(d.weights[n].astype(np.float64)).requires_grad_() for n in names]
    for p, n in zip(params, names):
        p.grad = torch.from_numpy(np.asarray(grads[n], dtype=np.float64).copy())
    kind, wd = cfg["optimizer"], float(cfg["weight-decay"])
    if kind == "adamw":
        opt = torch.optim.AdamW(params, lr=d.lr, weight_decay=wd, foreach=False)
    elif kind == "adam":
        opt = torch.optim.Adam(params, lr=d.lr, weight_decay=wd, foreach=False)
    else:
        opt = torch.optim.SGD(params, lr=d.lr, momentum=float(cfg["momentum"]),
                              weight_decay=wd, foreach=False)
    if float(cfg.get("clip-norm", 0)) > 0:
        torch.nn.utils.clip_grad_norm_(params, float(cfg["clip-norm"]))
    opt.step()
    return {n: p.detach().numpy().copy() for n, p in zip(names, params)}


def grad_rel(got, ref):
    """{tensor: max|diff| / max|ref|} (inf where vkaccum is not finite)"""
    out = {}
    for n, r in ref.items():
        diff = float(np.abs(got[n].astype(np.float64) - r).max())
        scale = float(np.abs(r).max())
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        out[n] = rel if np.all(np.isfinite(got[n])) else float("inf")
    return out


def grad_diff(got, ref):
    """(largest max|diff| / max|ref| over tensors, its tensor)"""
    rel = grad_rel(got, ref)
    worst = max(rel, key=rel.get)
    return rel[worst], worst


def step_diff(got, ref, lr, grad=None):
    """(largest max|diff| / lr, its tensor, elements beyond the step tolerance, |grad|
    at the worst element)"""
    worst, bad = (0.0, "", 0.0), 0
    for n, r in ref.items():
        g = got[n].astype(np.float64)
        diff = np.abs(g - r)
        allowed = STEP_TOL_LR * lr + STEP_ULPS * np.spacing(np.abs(r).astype(np.float32))
        bad += int(np.count_nonzero(~(diff <= allowed)))
        k = int(np.argmax(diff))
        at = abs(float(grad[n].flat[k])) if grad is not None else 0.0
        worst = max(worst, (float(diff.flat[k]) / lr, n, at))
    return worst[0], worst[1], bad, worst[2]


def suite(args, data, work):
    dumps = {}
    for i, b in enumerate(args.micro):
        out = os.path.join(work, f"{os.path.basename(data.rstrip('/'))}_{args.norm}_{args.up}_b{b}"
                           ".safetensors")
        dumps[b] = run_vkaccum(args, data, b, out, i == 0)
    first = dumps[args.micro[0]]
    cfg = first.cfg
    if cfg.get("class-weights", "none") != "none":
        raise RuntimeError("--class-weights is not in the dump file: run with none")
    for b, d in dumps.items():
        if not (same_bits(d.weights, first.weights) and
                d.image.tobytes() == first.image.tobytes() and
                d.mask.tobytes() == first.mask.tobytes()):
            raise RuntimeError(f"micro-batch {b}: the initial weights or the inputs differ "
                               f"from those of micro-batch {args.micro[0]}")
    batch_norm = cfg["norm"] == "batch"
    ignore = int(cfg["ignore-index"])
    B = first.image.shape[0]
    valid = int((first.mask != ignore).sum())
    print(f"  {B} images {first.image.shape[2]}x{first.image.shape[3]}, {cfg['classes']} "
          f"classes, {valid} valid pixels of {first.mask.size} (ignore index {ignore}; per "
          f"image: {' '.join(str(int((m != ignore).sum())) for m in first.mask)}); U-Net "
          f"depth {cfg['depth']} width {cfg['width']} norm {cfg['norm']} up {cfg['up']}; "
          f"{cfg['optimizer']} lr {first.lr:g} weight decay {cfg['weight-decay']:g}")
    refs = {}
    for b, d in dumps.items():
        prev = next((r for b2, r in refs.items() if not batch_norm and
                     same_bits(dumps[b2].grad, d.grad)), None)
        refs[b] = prev or matched_reference(d, b if batch_norm else B)
    full = None
    if batch_norm:
        full = refs[B] if B in refs else Reference(first, B)
    hdr = ["b", "loss rel", "grad rel", "worst tensor", "step/lr", "worst tensor",
           "step*/lr", "at |g|"]
    if batch_norm:
        hdr += ["vs B: loss rel", "grad rel"]
    fmt = "  {:>2}  {:>9}  {:>9}  {:<20}  {:>8}  {:<20}  {:>8}  {:>8}" + \
        ("  {:>14}  {:>8}" if batch_norm else "")
    print(fmt.format(*hdr))
    ok, notes = True, []
    worst = {"loss": 0.0, "grad": 0.0, "step": 0.0, "frac": 0.0}
    for b, d in dumps.items():
        ref = refs[b]
        lrel = abs(d.loss - ref.loss) / abs(ref.loss)
        grel, gname, gbad = grad_check(d.grad, ref)
        own = optimizer_step(d, d.grad)
        srel, sname, sbad, _ = step_diff(d.step, own, d.lr)
        sref, _, _, sat = step_diff(d.step, optimizer_step(d, ref.grad), d.lr, ref.grad)
        row = [b, f"{lrel:.2e}", f"{grel:.2e}", gname, f"{srel:.1e}", sname, f"{sref:.1e}",
               f"{sat:.1e}"]
        if batch_norm:
            row += [f"{abs(d.loss - full.loss) / abs(full.loss):.2e}",
                    f"{grad_diff(d.grad, full.grad)[0]:.2e}"]
        bad = []
        if d.count != ref.count:
            bad.append(f"count {d.count:.0f}, PyTorch {ref.count}")
        if not lrel <= LOSS_TOL:
            bad.append(f"loss {d.loss:.9g}, PyTorch {ref.loss:.9g}")
        if gbad:
            bad.append("grad " + ", ".join(gbad))
        if sbad:
            bad.append(f"{sbad} stepped values beyond {STEP_TOL_LR:g} lr + {STEP_ULPS} ulp")
        print(fmt.format(*row) + ("  FAIL: " + "; ".join(bad) if bad else ""))
        for name, idx in sorted(ref.flips):
            x = next(k[0] for k in ref.kinks if k[1] == name and k[2] == idx)
            notes.append(f"b={b}: the ReLU input {name}{list(idx)}, {x:.1e} x rms from 0, "
                         "counted on the side vkaccum took (a kink within f32 rounding)")
        rel = grad_rel(d.grad, ref.grad)
        for name in ref.grad:
            if rel[name] > GRAD_TOL and grad_tol(ref, name) > GRAD_TOL:
                notes.append(f"b={b}: {name} cancels (max sum|dy| / max|db| = "
                             f"{ref.cancel[name]:.0f}): rel {rel[name]:.2e}"
                             f", tolerance {grad_tol(ref, name):.1e}")
        ok &= not bad
        frac = max(r / grad_tol(ref, n) for n, r in grad_rel(d.grad, ref.grad).items())
        worst = {"loss": max(worst["loss"], lrel), "grad": max(worst["grad"], grel),
                 "step": max(worst["step"], srel), "frac": max(worst["frac"], frac)}
    for n in notes:
        print("  note: " + n)
    base = dumps[args.micro[0]]
    same = {
        "grad": all(same_bits(d.grad, base.grad) for d in dumps.values()),
        "loss": all(d.loss_raw.tobytes() == base.loss_raw.tobytes() for d in dumps.values()),
        "step": all(same_bits(d.step, base.step) for d in dumps.values()),
    }
    sizes = ",".join(str(b) for b in args.micro)
    verdict = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in same.items())
    if batch_norm:
        print(f"  bitwise equal across b = {sizes}: {verdict} (BatchNorm: statistics per "
              "micro-batch, not expected)")
    else:
        print(f"  bitwise equal across b = {sizes}: {verdict}")
        if not all(same.values()):
            print("  FAIL: GroupNorm does not depend on the micro-batch; the accumulated "
                  "gradient must not either")
            ok = False
    return ok, worst


def main(argv):
    if "--" in argv:
        k = argv.index("--")
        argv, vkargs = argv[:k], argv[k + 1:]
    else:
        vkargs = []
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="arguments after -- go to vkaccum seg train")
    ap.add_argument("--vkaccum", default=os.path.join(ROOT, "build", "vkaccum"),
                    help="the vkaccum binary (build/vkaccum)")
    ap.add_argument("--data", default="shapes,ignored",
                    help="comma list of shapes, ignored (generated here) or a --data spec")
    ap.add_argument("--norm", default="group", choices=["group", "batch"])
    ap.add_argument("--up", default="convT", choices=["convT", "bilinear"])
    ap.add_argument("--micro", default="1,2,4", help="micro-batch sizes (1,2,4)")
    ap.add_argument("--batch", type=int, default=4, help="effective batch B (4)")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "adam", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2,
                    help="1e-2 (AdamW's default) so that the decoupled decay is visible")
    ap.add_argument("--work", help="keep the dump files and the data set in this folder")
    args = ap.parse_args(argv[1:])
    args.vkargs = vkargs
    try:
        args.micro = [int(b) for b in args.micro.split(",")]
    except ValueError:
        ap.error(f"--micro {args.micro}: give a comma list of whole numbers")
    if not os.access(args.vkaccum, os.X_OK):
        print(f"accum.py: {args.vkaccum} is not an executable: build it, or give --vkaccum",
              file=sys.stderr)
        return 2
    torch.set_grad_enabled(True)
    work = args.work or tempfile.mkdtemp(prefix="vkaccum-accum-")
    os.makedirs(work, exist_ok=True)
    ok, worst, failed = True, {"loss": 0.0, "grad": 0.0, "step": 0.0, "frac": 0.0}, False
    try:
        for data in args.data.split(","):
            spec = data
            if data == "ignored":
                spec = os.path.join(work, "ignored")
                make_ignored(spec, args.batch, args.crop, 255)
            print(f"== {data}")
            try:
                s_ok, s_worst = suite(args, spec, work)
            except RuntimeError as e:
                print(f"accum.py: {data}: {e}", file=sys.stderr)
                failed = True
                continue
            ok &= s_ok
            worst = {k: max(worst[k], s_worst[k]) for k in worst}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nlargest differences: loss {worst['loss']:.2e} (tolerance {LOSS_TOL:.0e}), "
          f"gradient {worst['grad']:.2e} (tolerance {GRAD_TOL:.0e}, raised for cancelling "
          f"biases; the closest tensor is at {worst['frac']:.2f} of its own), step "
          f"{worst['step']:.1e} lr (tolerance {STEP_TOL_LR:.0e} lr + {STEP_ULPS} ulp); "
          + ("PASS" if ok and not failed else "FAIL"))
    return 2 if failed else (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
