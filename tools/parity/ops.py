#!/usr/bin/python3
"""Op parity against PyTorch: redoes, in float64 with torch.nn.functional and autograd,
every case that vkaccum-parity-dump wrote (one safetensors file per case: inputs,
parameters, dy and vkaccum's outputs and gradients, PyTorch layouts; see
tools/parity/dump_ops.c), and prints for each output and gradient the largest absolute
difference and that difference relative to the largest |reference| value.

    vkaccum-parity-dump OUTDIR && /usr/bin/python3 tools/parity/ops.py OUTDIR

Losses follow src/ops/loss.h: y = [sum, count] with reduction='sum' (cross-entropy's
count is the sum of the class weights of the valid pixels, PyTorch's weighted-mean
denominator; the others count elements) and bwd with scale 1, i.e. the gradient of the
sum. hinge is F.relu(1 - s*x) summed with s = 2t - 1 (hinge_linear: -s*x), so its
subgradient at the kink is torch.relu's 0; a bce_logits or hinge case without x1 ran
with the constant target in its metadata. sigmoid_mean is a metric: y = [sum
sigmoid(x), count] and no gradient, so its dx0 must be zero. Dice is rebuilt from its
sums: inter[c] = sum_valid p_c [t == c], card[c] = sum_valid p_c + [t == c],
L = 1 - mean_c (2 inter + 1) / (card + 1); its dy (dL/dinter, dL/dcard, from
vka_dice_loss) and the loss are compared as well.

Tolerance: relative difference <= 1e-4 for every float tensor, exact equality for
max_pool2d's argmax and for the integer counts (not cross-entropy's weighted count). The reference runs in float64 on the very f32
values vkaccum read, so the difference is vkaccum's f32 rounding alone: a sum of L
terms in f32 lies within about L * 2^-24 of the exact one relative to the sum of the
terms' magnitudes; the longest reductions here (batch-norm statistics and gradients
over N*H*W = 126 pixels, conv weight gradients over N*P*Q <= 54 pixels) give at most
~1e-5 of max|ref|, and GLSL's exp/log/tanh add a few ulp (~1e-6). 1e-4 leaves a margin
of about 10 over that, while any real semantic mismatch (padding, eps, the variance
rule, an index, a missed ignore) moves results by 1e-3 or more.

Exit status: 0 when every case passes, 1 when one fails or an op of src/ops/ops.def has
no file, 2 on a usage error.
"""
import argparse
import glob
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OPS_DEF = os.path.join(HERE, "..", "..", "src", "ops", "ops.def")
REL_TOL = 1e-4

sys.path.insert(0, HERE)
try:
    import st as _st

    def read_st(path):
        entries, meta = _st.read(path)
        return {n: a for n, _, a in entries}, meta
except ImportError:
    _DT = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}

    def read_st(path):
        with open(path, "rb") as f:
            blob = f.read()
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        meta = header.pop("__metadata__", {})
        data = blob[8 + n:]
        out = {}
        for name, e in header.items():
            b, end = e["data_offsets"]
            out[name] = np.frombuffer(data[b:end], dtype=_DT[e["dtype"]]).reshape(e["shape"])
        return out, meta


# ---- references: each returns ({file name: reference tensor}, objective) -------------
# The objective's gradient w.r.t. the inputs is what vkaccum's bwd computed: sum(y * dy)
# for ops with a dy, the loss sum (scale 1) for losses, L for dice.

def _fwd_dy(y, c):
    return {"y": y}, (y * c.t("dy")).sum()


def ref_conv2d(c):
    m = c.meta
    y = F.conv2d(c.t("x0"), c.t("x1"), c.opt("x2"), stride=(m.i("stride_h"), m.i("stride_w")),
                 padding=(m.i("pad_h"), m.i("pad_w")))
    return _fwd_dy(y, c)


def ref_conv_transpose2d(c):
    m = c.meta
    y = F.conv_transpose2d(c.t("x0"), c.t("x1"), c.opt("x2"),
                           stride=(m.i("stride_h"), m.i("stride_w")),
                           padding=(m.i("pad_h"), m.i("pad_w")),
                           output_padding=(m.i("out_pad_h"), m.i("out_pad_w")))
    return _fwd_dy(y, c)


def ref_linear(c):
    """x0 (N, in, 1, 1) and the weight (out, in, 1, 1) as vkaccum keeps them"""
    x, w = c.t("x0"), c.t("x1")
    y = F.linear(x.flatten(1), w.flatten(1), c.opt("x2"))
    return _fwd_dy(y.reshape(x.shape[0], -1, 1, 1), c)


def _stats(v, eps):
    """mean and 1/sqrt(biased var + eps) over the last dimension, detached"""
    v = v.detach()
    return v.mean(-1), (v.var(-1, unbiased=False) + eps).rsqrt()


def _norm_act(y, m):
    """the activation a norm applies to its output (enum vka_norm_act: 0 none, 1 relu,
    2 leaky_relu)"""
    act = m.i("act")
    return F.relu(y) if act == 1 else F.leaky_relu(y, m.f("act_slope")) if act == 2 else y


def ref_batch_norm(c):
    m = c.meta
    x, eps, training = c.t("x0"), m.f("eps"), bool(m.i("training"))
    rm, rv = c.t("state0_in").detach().clone(), c.t("state1_in").detach().clone()
    y = _norm_act(F.batch_norm(x, rm, rv, c.opt("x1"), c.opt("x2"), training=training,
                               momentum=m.f("momentum"), eps=eps), m)
    outs, obj = _fwd_dy(y, c)
    outs.update(state0=rm, state1=rv)
    if training:
        mean, istd = _stats(x.transpose(0, 1).reshape(x.shape[1], -1), eps)
        outs.update(saved0=mean, saved1=istd)
    return outs, obj


def ref_group_norm(c):
    m = c.meta
    x, G, eps = c.t("x0"), m.i("groups"), m.f("eps")
    y = _norm_act(F.group_norm(x, G, c.opt("x1"), c.opt("x2"), eps=eps), m)
    outs, obj = _fwd_dy(y, c)
    mean, istd = _stats(x.reshape(x.shape[0] * G, -1), eps)
    outs.update(saved0=mean, saved1=istd)
    return outs, obj


def ref_relu(c):
    return _fwd_dy(F.relu(c.t("x0")), c)


def ref_leaky_relu(c):
    return _fwd_dy(F.leaky_relu(c.t("x0"), c.meta.f("slope")), c)


def ref_tanh(c):
    return _fwd_dy(torch.tanh(c.t("x0")), c)


def ref_sigmoid(c):
    return _fwd_dy(torch.sigmoid(c.t("x0")), c)


def ref_add(c):
    return _fwd_dy(c.t("x0") + c.t("x1"), c)


def ref_mul(c):
    return _fwd_dy(c.t("x0") * c.t("x1"), c)


def ref_scale(c):
    return _fwd_dy(c.meta.f("alpha") * c.t("x0"), c)


def ref_concat(c):
    return _fwd_dy(torch.cat([c.t("x0"), c.t("x1")], dim=1), c)


def ref_max_pool2d(c):
    m = c.meta
    y, idx = F.max_pool2d(c.t("x0"), m.i("k"), m.i("stride"), m.i("pad"), return_indices=True)
    outs, obj = _fwd_dy(y, c)
    outs["saved0"] = idx.to(torch.float64)
    return outs, obj


def ref_avg_pool2d(c):
    m = c.meta
    y = F.avg_pool2d(c.t("x0"), m.i("k"), m.i("stride"), m.i("pad"), ceil_mode=False,
                     count_include_pad=True)
    return _fwd_dy(y, c)


def ref_upsample_nearest(c):
    m = c.meta
    return _fwd_dy(F.interpolate(c.t("x0"), size=(m.i("oh"), m.i("ow")), mode="nearest"), c)


def ref_upsample_bilinear(c):
    m = c.meta
    y = F.interpolate(c.t("x0"), size=(m.i("oh"), m.i("ow")), mode="bilinear",
                      align_corners=False)
    return _fwd_dy(y, c)


def _loss(s, count):
    """y = [sum, count], compared as its two elements; the dump ran bwd with scale 1, so
    dx0 is the sum's gradient"""
    return {"y[0] sum": s.reshape(1), "y[1] count": count.to(torch.float64).reshape(1)}, s


def ref_cross_entropy(c):
    x, t, ii = c.t("x0"), c.long("x1"), c.meta.i("ignore_index")
    w = c.opt("x2")
    s = F.cross_entropy(x, t, weight=w, ignore_index=ii, reduction="sum")
    valid = t != ii
    count = w.detach()[t[valid]].sum() if w is not None else valid.sum()
    return _loss(s, count)


def _targets(c, x):
    """x1, or the constant p.loss.target of a case run with x1 = NULL"""
    if "x1" in c.arrays:
        return c.t("x1")
    return torch.full_like(x.detach(), c.meta.f("target"))


def ref_bce_logits(c):
    x = c.t("x0")
    s = F.binary_cross_entropy_with_logits(x, _targets(c, x), reduction="sum")
    return _loss(s, torch.tensor(x.numel()))


def ref_mse(c):
    x = c.t("x0")
    return _loss(F.mse_loss(x, c.t("x1"), reduction="sum"), torch.tensor(x.numel()))


def ref_l1(c):
    x = c.t("x0")
    return _loss(F.l1_loss(x, c.t("x1"), reduction="sum"), torch.tensor(x.numel()))


def ref_hinge(c):
    x = c.t("x0")
    s = 2 * _targets(c, x) - 1
    if c.meta.i("hinge_linear"):
        total = (-s * x).sum()
    else:
        total = F.relu(1 - s * x).sum()
    return _loss(total, torch.tensor(x.numel()))


def ref_sigmoid_mean(c):
    """a metric: no objective, so every gradient in the file is compared with zero"""
    x = c.t("x0")
    outs, _ = _loss(torch.sigmoid(x).sum(), torch.tensor(x.numel()))
    return outs, None


def ref_dice(c):
    """smooth 1: the dump's dy comes from vka_dice_loss with smooth 1 (tests/opcases.c)"""
    x, t, ii = c.t("x0"), c.long("x1"), c.meta.i("ignore_index")
    s = c.meta.f("smooth") if "smooth" in c.meta else 1.0
    C = x.shape[1]
    valid = (t != ii) & (t >= 0) & (t < C)
    onehot = F.one_hot(torch.where(valid, t, torch.zeros_like(t)), C).permute(0, 3, 1, 2)
    mask = valid.unsqueeze(1).to(torch.float64)
    onehot = onehot.to(torch.float64) * mask
    p = torch.softmax(x, dim=1) * mask
    inter = (p * onehot).sum((0, 2, 3))
    card = (p + onehot).sum((0, 2, 3))
    L = 1 - ((2 * inter + s) / (card + s)).mean()
    dinter, dcard = torch.autograd.grad(L, [inter, card], retain_graph=True)
    outs = {"y": torch.cat([inter, card]), "dy": torch.cat([dinter, dcard]),
            "loss": L.reshape(1)}
    return outs, L


REFS = {name[4:]: fn for name, fn in globals().items() if name.startswith("ref_")}
EXACT = {("max_pool2d", "saved0")}  # argmax indices must agree exactly


class Meta(dict):
    def i(self, k):
        return int(self[k])

    def f(self, k):
        return float(self[k])


class Case:
    """The file's tensors as float64 leaves; those with a gradient in the file (x0 ->
    dx0) require grad."""

    def __init__(self, arrays, meta):
        self.arrays, self.meta, self.leaves = arrays, Meta(meta), {}

    def t(self, name):
        if name not in self.leaves:
            v = torch.from_numpy(np.asarray(self.arrays[name], dtype=np.float64).copy())
            v.requires_grad_("d" + name in self.arrays)
            self.leaves[name] = v
        return self.leaves[name]

    def opt(self, name):
        return self.t(name) if name in self.arrays else None

    def long(self, name):
        return torch.from_numpy(self.arrays[name].astype(np.int64))


def shape_str(a):
    return "x".join(str(d) for d in a.shape) if a.ndim else "scalar"


def compare(name, got, ref, exact):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    ref = ref.detach().numpy().astype(np.float64).reshape(-1)
    if got.shape != ref.shape:
        return dict(tensor=name, ok=False, note=f"{got.size} values, PyTorch {ref.size}",
                    ref_max=0.0, abs=float("inf"), rel=float("inf"), tol=0.0)
    diff = np.abs(got - ref)
    mabs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    rel = mabs / scale if scale > 0 else (0.0 if mabs == 0 else float("inf"))
    tol = 0.0 if exact else REL_TOL
    ok = bool(np.all(np.isfinite(got))) and (mabs == 0 if exact else rel <= tol)
    note = ""
    if not ok and diff.size:
        k = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))
        note = f"worst at flat index {k}: vkaccum {got[k]:.9g}, PyTorch {ref[k]:.9g}"
    return dict(tensor=name, ok=ok, note=note, ref_max=scale, abs=mabs, rel=rel, tol=tol)


def run_case(path):
    arrays, meta = read_st(path)
    op = meta.get("op")
    if op not in REFS:
        raise ValueError(f"{path}: op {op!r} has no PyTorch reference in ops.py")
    c = Case(arrays, meta)
    outs, obj = REFS[op](c)
    wanted = [n for n in ("x0", "x1", "x2") if "d" + n in arrays]
    leaves = [c.t(n) for n in wanted]
    if leaves and obj is not None:
        grads = torch.autograd.grad(obj, leaves, allow_unused=True)
    else:
        grads = [None] * len(leaves)
    rows = []
    for name, ref in outs.items():
        exact = (op, name) in EXACT
        m = re.match(r"(\w+)\[(\d+)\] (\w+)$", name)  # one element of a tensor: _loss's
        if m and m.group(1) in arrays:
            k = int(m.group(2))
            # an integer count is exact; a sum of f32 class weights is not
            exact = m.group(3) == "count" and "x2" not in arrays
            rows.append(compare(name, arrays[m.group(1)].reshape(-1)[k:k + 1], ref, exact))
            continue
        if name not in arrays:
            rows.append(dict(tensor=name, ok=False, note="missing from the file", ref_max=0.0,
                             abs=float("inf"), rel=float("inf"), tol=0.0))
            continue
        rows.append(compare(name, arrays[name], ref, exact))
    for n, g in zip(wanted, grads):
        if g is None:
            g = torch.zeros_like(c.t(n))
        rows.append(compare("d" + n, arrays["d" + n], g, False))
    for r in rows:
        r.update(case=meta.get("case", os.path.basename(path)), op=op,
                 shape=shape_str(arrays["x0"]))
    return op, rows


def ops_in_def():
    try:
        with open(OPS_DEF) as f:
            return re.findall(r"^VKA_OP\((\w+),", f.read(), re.M)
    except OSError:
        return []


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", help="the folder vkaccum-parity-dump wrote")
    args = ap.parse_args(argv[1:])
    files = sorted(glob.glob(os.path.join(args.outdir, "*.safetensors")))
    if not files:
        print(f"ops.py: no .safetensors files in {args.outdir}", file=sys.stderr)
        return 2
    torch.set_grad_enabled(True)
    rows, seen, errors = [], set(), []
    for path in files:
        try:
            op, r = run_case(path)
        except Exception as e:  # a broken file is a failed case, reported with its name
            errors.append(f"{os.path.basename(path)}: {type(e).__name__}: {e}")
            continue
        seen.add(op)
        rows.extend(r)
    hdr = ("case", "op input", "tensor", "max|ref|", "max abs diff", "rel diff", "tol", "")
    fmt = "{:<26} {:<11} {:<12} {:>10} {:>12} {:>10} {:>7}  {}"
    print(fmt.format(*hdr))
    prev = None
    for r in rows:
        case = r["case"] if r["case"] != prev else ""
        shape = r["shape"] if r["case"] != prev else ""
        prev = r["case"]
        tol = "exact" if r["tol"] == 0 else f"{r['tol']:.0e}"
        print(fmt.format(case, shape, r["tensor"], f"{r['ref_max']:.4g}", f"{r['abs']:.3e}",
                         f"{r['rel']:.3e}", tol, "ok" if r["ok"] else "FAIL " + r["note"]))
    bad = [r for r in rows if not r["ok"]]
    missing = [op for op in ops_in_def() if op not in seen]
    worst = max((r["rel"] for r in rows if r["tol"] > 0), default=0.0)
    print(f"\n{len(files)} files, {len(rows)} tensors compared, largest relative difference "
          f"{worst:.3e} (tolerance {REL_TOL:.0e}); {len(bad)} failed")
    for e in errors:
        print("ERROR " + e)
    if missing:
        print("ops of src/ops/ops.def without a file: " + ", ".join(missing))
    return 1 if bad or errors or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
