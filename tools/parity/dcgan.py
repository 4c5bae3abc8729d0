#!/usr/bin/python3
"""The PyTorch DCGAN equivalent to models/dcgan.c, and the GAN engine (src/gan.c) replayed
in PyTorch against a run of vkaccum-parity-gan (Debian's python3-torch 1.13; run with
/usr/bin/python3).

Modules. Generator and Discriminator hold one nn.Sequential `main`, numbered as
models/dcgan.h numbers it (conv, [BatchNorm2d(eps 1e-5, momentum 0.1)], activation), so
their state_dicts carry vkaccum's names (main.K.weight, ...) and layouts (Conv2d OIHW,
ConvTranspose2d IOHW). With L = log2(res) - 2 and m(i) = min(2^i, 8):
    G: ConvT(z_dim, m(L-1) w, 4, 1, 0) [BN] ReLU, for i = L-1 .. 1 ConvT(m(i) w,
       m(i-1) w, 4, 2, 1) [BN] ReLU, ConvT(w, channels, 4, 2, 1) Tanh
    D: Conv(channels, w, 4, 2, 1) LeakyReLU(0.2), for i = 1 .. L-1 Conv(m(i-1) w,
       m(i) w, 4, 2, 1) [BN] LeakyReLU(0.2), Conv(m(L-1) w, 1, 4, 1, 0)
Convs have a bias only without BatchNorm (norm none).

The replay (what src/gan.h specifies, in PyTorch): per iteration, d_steps D windows then
one G window, each the effective batch B as micro-batches of b, each micro-batch's
forward run separately (BatchNorm normalises over the micro-batch, and its running
statistics move once per forward, as vkaccum's):
    D window, two passes: D(real) for each micro-batch of the B real images, then for
      each micro-batch of z_d: fake = G(z_d) (no grad; G's statistics move) and D(fake)
      (with b = B: PyTorch's DCGAN example, errD_real then errD_fake); loss =
      BCEWithLogits(D(real), 1) + BCEWithLogits(D(fake), 0), reduction sum (hinge:
      relu(1 - D(real)) + relu(1 + D(fake))); the gradients of the micro-batches add up,
      are divided once by B, and torch.optim.Adam steps D;
    G window: loss = BCEWithLogits(D(G(z_g)), 1) sum (hinge: -D(G(z_g))), / B, Adam
      steps G (D's statistics move, its parameters do not);
    EMA: G_ema = beta G_ema + (1 - beta) G, G_ema's buffers copied from G.
The window's loss is its sum / B (errD_real + errD_fake of PyTorch's DCGAN example),
the metrics mean sigmoid(D(.)) over the window.

Two checks, both from OUT (vkaccum-parity-gan's files):
  replay   from init.safetensors, all iterations in PyTorch (float32 by default: what a
           PyTorch user runs; --dtype float64), then every model tensor of
           final.safetensors (G, D, G_ema, running statistics) and the final Adam moments
           against PyTorch's: max|a - b| / max|b| per tensor, the largest per group, and
           for parameters max|a - b| in units of lr; the losses and metrics of every
           iteration against stats.json.
  step     (d_steps 1 only) each iteration K alone, in float64 from vkaccum's own state
           K-1 (state.K-1 or init, and moments.safetensors): the losses and metrics, each
           gradient (recovered from the Adam moments: g = (m_K - beta1 m_K-1) / (1 -
           beta1)), the step torch.optim.Adam takes from vkaccum's gradient and moments
           against vkaccum's weights and exp_avg_sq after K, the EMA, G_ema's buffers,
           and the running statistics. Each difference is vkaccum's own f32 rounding in
           that iteration, not drift.

Tolerances (max|diff| / max|ref| per tensor unless said; measured figures in
tools/parity/README.md):
  step: losses and metrics 1e-5 of their scale (sum |terms| / B: hinge's G loss, a
    mean of signed logits, can cancel to near 0; measured <= 8.2e-7). Gradients 1e-5,
    as tools/parity/accum.py's for the U-Net (ops measure <= 6e-7 each, chained through
    G and D; the recovery from f32 moments adds ~ 2^-24 max|m| / (1 - beta1)), raised
    to 1e-5 * cancel / 5 for a tensor whose gradient cancels: cancel = max sum_c |g_c| /
    max |sum_c g_c| over the backward passes vkaccum accumulates one after the other
    (micro-batches; D(real) and D(fake)). Without BatchNorm the last conv of D gets
    opposite gradients from the real and the fake half (cancel 40 to 74) and f32
    accumulation loses that much (measured up to 1.3e-5). Optimizer |diff| <= 1e-3 lr +
    4 ulp_f32(|ref|) per element, as accum.py's (a BatchNorm weight near 1 is stored
    with ulp 1.2e-7 = 6e-4 lr at lr 2e-4); exp_avg_sq 1e-5. EMA 1e-6 (two f32 roundings
    per element, and vkaccum's 1 - beta rounded in f32: 2.4e-7 of G's share at beta 0.9;
    measured <= 2.7e-7); G_ema's buffers bitwise G's (a copy). Running statistics 1e-5
    (f32 means and variances over b*H*W values of f32 activations; measured <= 1.1e-6).
    A ReLU or LeakyReLU input within f32 rounding of 0 (a few 1e-7 of its rms) can land
    on either side in vkaccum, as in any f32 run, and moves the gradients upstream by
    up to 1e-2. When a gradient fails, the nearest such inputs of the reference (< 4e-6
    rms, at most 8) are taken on their other side one at a time and kept when that cuts
    the summed mismatch by a third; each kept one is printed.
  replay: parameters max|diff| <= 2 lr per optimizer step taken (K for G and G_ema,
    K * d_steps for D). Both runs are f32 and part ways where a gradient element is
    within rounding of 0 (|g| ~ 1e-7 max|g|): Adam's first step there is lr g / (|g| +
    eps) ~ +-lr whatever |g| is, so the two runs can step that element in opposite
    directions (measured 2.0 lr after 2 iterations), and the GAN's dynamics then spread
    the difference (2.2 lr, relative 0.4 on a BatchNorm bias, after 5).
    max|diff| / max|b| is printed, not checked: a BatchNorm bias starts at 0 and after
    K steps max|b| is only ~K lr. Running statistics 1e-2 relative, losses and metrics
    1e-2 of their scale (measured <= 3.3e-3 and 6.0e-4 after 5 iterations of runs that
    parted ways; 4.3e-4 and 7.7e-5 after 2). Adam moments reported only (where the
    runs parted, exp_avg differs wholly). The replay catches what moves losses or
    statistics (the loss's form or scale, BatchNorm over the window, the order of D's
    applications, a missed buffer copy); what Adam's normalisation hides from the
    weights (a constant gradient scale, beta1 in the first steps, the EMA's mix) is
    the step check's.
num_batches_tracked is checked exactly: each BatchNorm counts its forward passes in
training mode (D's twice per real and fake micro-batch pair of passes, G's in both
phases), and G_ema's are copied from G's.

    /usr/bin/python3 tools/parity/dcgan.py OUT [--dtype float32|float64] [-v]

Exit status 0 when every check is within tolerance, 1 otherwise, 2 on unreadable input.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st  # noqa: E402

PREFIXES = ("G", "D", "G_ema")

STEP_LOSS_TOL = 1e-5
STEP_GRAD_TOL = 1e-5
CANCEL_OK = 5.0
KINK_TOL = 4e-6
MAX_FLIPS = 8
STEP_TOL_LR = 1e-3
STEP_ULPS = 4
STEP_MOMENT_TOL = 1e-5
STEP_EMA_TOL = 1e-6
STEP_STATS_TOL = 1e-5
REPLAY_LR_PER_STEP = 2.0
REPLAY_STATS_TOL = 1e-2
REPLAY_LOSS_TOL = 1e-2


def levels(res):
    L = 0
    while (4 << L) < res:
        L += 1
    return L


def mult(i):
    return 8 if i >= 3 else 1 << i


def check_config(res, channels, width, z_dim):
    if res not in (32, 64, 128, 256) or channels not in (1, 3) or not 1 <= width <= 1024 \
            or not 1 <= z_dim <= 4096:
        raise ValueError(f"res {res} (32, 64, 128 or 256), channels {channels} (1 or 3), "
                         f"width {width} (1..1024) and z_dim {z_dim} (1..4096) do not make "
                         "a DCGAN")


class _Seq:
    """Appends blocks to a layer list as models/dcgan.c's block() does."""

    def __init__(self, batch_norm):
        self.layers, self.bn = [], batch_norm

    def block(self, conv, cin, cout, stride, pad, norm, act):
        self.layers.append(conv(cin, cout, 4, stride, pad, bias=not self.bn))
        if norm and self.bn:
            self.layers.append(nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))
        if act is not None:
            self.layers.append(act)


class Generator(nn.Module):
    def __init__(self, res=64, channels=3, width=64, z_dim=100, batch_norm=True):
        super().__init__()
        check_config(res, channels, width, z_dim)
        L, s = levels(res), _Seq(batch_norm)
        s.block(nn.ConvTranspose2d, z_dim, mult(L - 1) * width, 1, 0, True, nn.ReLU())
        for i in range(L - 1, 0, -1):
            s.block(nn.ConvTranspose2d, mult(i) * width, mult(i - 1) * width, 2, 1, True,
                    nn.ReLU())
        s.block(nn.ConvTranspose2d, width, channels, 2, 1, False, nn.Tanh())
        self.main = nn.Sequential(*s.layers)

    def forward(self, z):
        """z (N, z_dim, 1, 1) -> (N, channels, res, res)"""
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, res=64, channels=3, width=64, batch_norm=True):
        super().__init__()
        check_config(res, channels, width, 1)
        L, s = levels(res), _Seq(batch_norm)
        s.block(nn.Conv2d, channels, width, 2, 1, False, nn.LeakyReLU(0.2))
        for i in range(1, L):
            s.block(nn.Conv2d, mult(i - 1) * width, mult(i) * width, 2, 1, True,
                    nn.LeakyReLU(0.2))
        s.block(nn.Conv2d, mult(L - 1) * width, 1, 1, 0, False, None)
        self.main = nn.Sequential(*s.layers)

    def forward(self, x):
        """x (N, channels, res, res) -> logits (N)"""
        return self.main(x).reshape(-1)


def load_generator(path, weights="ema", dtype=torch.float32):
    """The generator of a `vkaccum gan train` checkpoint, built from the file's "config"
    metadata (its options: res, channels, width, z-dim, norm) with a strict
    load_state_dict of G_ema.* (weights "ema", as `gan sample`: G.* when the run kept no
    EMA) or G.*. Returns (generator in eval mode, config dict, the prefix loaded)."""
    entries, meta = st.read(path)
    if meta.get("kind") != "vkaccum-gan" or "config" not in meta:
        raise ValueError(f"{path} is not a checkpoint of vkaccum gan train (metadata kind "
                         f"{meta.get('kind')!r})")
    cfg = json.loads(meta["config"])
    arrays = {n: (st.bf16_to_f32(a) if dt == "BF16" else a) for n, dt, a in entries}
    prefix = "G_ema" if weights == "ema" and "G_ema.main.0.weight" in arrays else "G"
    G = Generator(res=int(cfg["res"]), channels=int(cfg["channels"]), width=int(cfg["width"]),
                  z_dim=int(cfg["z-dim"]), batch_norm=cfg["norm"] == "batch").to(dtype)
    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in model_tensors(arrays, prefix).items()}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: {prefix}.* does not match the generator: {e}") from None
    return G.eval(), cfg, prefix


def model_tensors(arrays, prefix):
    """{name without 'PREFIX.': array} of one module"""
    p = prefix + "."
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def load_module(module, arrays, prefix, path, params=True, buffers=True):
    """Copies PREFIX.* of arrays into module (strict on names and shapes)."""
    own = module.state_dict()
    src = model_tensors(arrays, prefix)
    if set(src) != set(own):
        missing, extra = sorted(set(own) - set(src)), sorted(set(src) - set(own))
        raise ValueError(f"{path}: {prefix}.* does not match the module: missing "
                         f"{missing[:4]}, unexpected {extra[:4]}")
    names = {n for n, _ in module.named_parameters()}
    with torch.no_grad():
        for n, t in own.items():
            if (n in names and not params) or (n not in names and not buffers):
                continue
            a = src[n]
            if tuple(a.shape) != tuple(t.shape):
                raise ValueError(f"{path}: {prefix}.{n} has shape {list(a.shape)}, the "
                                 f"module's is {list(t.shape)}")
            t.copy_(torch.from_numpy(np.array(a)).reshape(t.shape).to(t.dtype))


class Config:
    def __init__(self, meta, path):
        if "config" not in meta:
            raise ValueError(f"{path}: no \"config\" metadata: not written by "
                             "vkaccum-parity-gan")
        c = json.loads(meta["config"])
        self.res, self.channels = int(c["res"]), int(c["channels"])
        self.width, self.z_dim = int(c["width"]), int(c["z_dim"])
        self.batch_norm = c["norm"] == "batch"
        self.loss = c["loss"]
        self.B, self.b = int(c["batch"]), int(c["micro"])
        self.d_steps, self.iterations = int(c["d_steps"]), int(c["iterations"])
        self.lr_g, self.lr_d = float(c["lr_g"]), float(c["lr_d"])
        self.betas = (float(c["beta1"]), float(c["beta2"]))
        self.eps = float(c["eps"])
        self.ema_kimg, self.ema_rampup = float(c["ema_kimg"]), float(c["ema_rampup"])
        self.ema = self.ema_kimg > 0  # G_ema exists

    def describe(self):
        return (f"res {self.res}, channels {self.channels}, width {self.width}, z_dim "
                f"{self.z_dim}, norm {'batch' if self.batch_norm else 'none'}, loss "
                f"{self.loss}, B {self.B} as micro-batches of {self.b}, d_steps "
                f"{self.d_steps}, {self.iterations} iterations, Adam lr {self.lr_g:g}/"
                f"{self.lr_d:g} betas {self.betas}, ema {self.ema_kimg:g} kimg, "
                f"ramp-up {self.ema_rampup:g}")


def ema_beta(cfg, steps):
    """StyleGAN2-ADA's EMA beta for the G step after `steps` G steps (src/gan.c)"""
    h = cfg.ema_kimg * 1000.0
    if cfg.ema_rampup > 0:
        h = min(h, steps * cfg.B * cfg.ema_rampup)
    return 0.5 ** (cfg.B / h) if h > 0 else 0.0


def real_terms(kind, x):
    """D's per-sample loss on the logits of real images"""
    if kind == "hinge":
        return F.relu(1 - x)
    return F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")


def fake_terms(kind, x):
    """D's per-sample loss on the logits of fakes"""
    if kind == "hinge":
        return F.relu(1 + x)
    return F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")


def g_terms(kind, fake):
    """G's per-sample loss terms (non-saturating BCE, or hinge's -D(G(z)))"""
    if kind == "hinge":
        return -fake
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake), reduction="none")


class Pair:
    """G, D, G_ema and their Adam optimizers, as one vka_gan holds them."""

    def __init__(self, cfg, dtype):
        self.cfg, self.dtype = cfg, dtype
        mk = dict(res=cfg.res, channels=cfg.channels, width=cfg.width,
                  batch_norm=cfg.batch_norm)
        self.G = Generator(z_dim=cfg.z_dim, **mk).to(dtype).train()
        self.D = Discriminator(**mk).to(dtype).train()
        self.G_ema = Generator(z_dim=cfg.z_dim, **mk).to(dtype).train() if cfg.ema else None
        self.g_steps = 0
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas,
                                      eps=cfg.eps, foreach=False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas,
                                      eps=cfg.eps, foreach=False)
        self.record, self.flips, self.kinks, self.tag, self.calls = False, frozenset(), [], "", {}
        for prefix, m in (("G", self.G), ("D", self.D)):
            for n, mod in m.named_modules():
                if isinstance(mod, (nn.ReLU, nn.LeakyReLU)):
                    mod.register_forward_pre_hook(self._kink_hook(f"{prefix}.{n}"))

    def _kink_hook(self, name):
        """Records the activation inputs near 0 of backward-carrying applications (key:
        window, module, application) and takes those in self.flips on their other
        side: the value changes sign, the derivative of the step before stays."""
        def hook(mod, inp):
            if not torch.is_grad_enabled():
                return None
            x = inp[0]
            key = (self.tag, name, self.calls.get(name, 0))
            self.calls[name] = key[2] + 1
            if self.record:
                xd = x.detach()
                rms = float(xd.pow(2).mean().sqrt())
                for idx in (xd.abs() < KINK_TOL * rms).nonzero().tolist():
                    self.kinks.append((abs(float(xd[tuple(idx)])) / rms, key, tuple(idx)))
            mine = [i for (kk, i) in self.flips if kk == key]
            if not mine:
                return None
            shift = torch.zeros_like(x)
            for i in mine:
                shift[i] = -2 * x[i].detach()
            return (x + shift,)
        return hook

    def modules(self):
        return [(n, m) for n, m in zip(PREFIXES, (self.G, self.D, self.G_ema)) if m]

    def load(self, arrays, path):
        for prefix, m in self.modules():
            load_module(m, arrays, prefix, path)

    def tensors(self):
        """{file name: ndarray} of every module tensor"""
        out = {}
        for prefix, m in self.modules():
            for n, t in m.state_dict().items():
                out[f"{prefix}.{n}"] = t.detach().numpy().copy()
        return out

    def named_params(self, who):
        m = self.G if who == "G" else self.D
        return [(f"{who}.{n}", p) for n, p in m.named_parameters()]

    def _accumulate(self, module, losses, split):
        """Adds the gradients of the losses (one backward each, as vkaccum runs D(real)
        and D(fake) and each micro-batch separately) into module's .grad; with split,
        their absolute values into self.absgrad, the scale against which the sum
        cancels."""
        if not split:
            sum(losses).backward()
            return
        named = list(module.named_parameters())
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(loss, [p for _, p in named],
                                        retain_graph=i + 1 < len(losses), allow_unused=True)
            with torch.no_grad():
                for (n, p), g in zip(named, grads):
                    if g is None:
                        continue
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad.add_(g)
                    a = self.absgrad.setdefault(id(p), torch.zeros_like(p))
                    a.add_(g.abs())

    def d_window(self, real, z, split=False):
        """Accumulates D's window gradient into D's .grad (zeroed first), in two passes
        as vkaccum's trainer runs them (the B real images, then the B fakes, each as
        micro-batches), and returns (loss, its scale sum|terms| / B, mean sigmoid
        D(real), mean sigmoid D(fake)); no step."""
        cfg, B = self.cfg, real.shape[0]
        self.opt_d.zero_grad(set_to_none=False)
        self.absgrad, self.calls = {}, {}
        total, scale, m_real, m_fake = 0.0, 0.0, 0.0, 0.0
        for s in range(0, B, cfg.b):
            lr_ = self.D(real[s:s + cfg.b])
            t = real_terms(cfg.loss, lr_)
            self._accumulate(self.D, [t.sum()], split)
            total += float(t.sum())
            scale += float(t.abs().sum())
            m_real += float(torch.sigmoid(lr_).sum())
        for s in range(0, B, cfg.b):
            with torch.no_grad():
                fake = self.G(z[s:s + cfg.b])
            lf = self.D(fake)
            t = fake_terms(cfg.loss, lf)
            self._accumulate(self.D, [t.sum()], split)
            total += float(t.sum())
            scale += float(t.abs().sum())
            m_fake += float(torch.sigmoid(lf).sum())
        with torch.no_grad():
            for p in self.D.parameters():
                p.grad.div_(B)
        return total / B, scale / B, m_real / B, m_fake / B

    def g_window(self, z, split=False):
        """G's window gradient into G's .grad; (loss, its scale, mean sigmoid D(G(z)))"""
        cfg, B = self.cfg, z.shape[0]
        self.opt_g.zero_grad(set_to_none=False)
        self.absgrad, self.calls = {}, {}
        total, scale, m_fake = 0.0, 0.0, 0.0
        for s in range(0, B, cfg.b):
            lf = self.D(self.G(z[s:s + cfg.b]))
            t = g_terms(cfg.loss, lf)
            self._accumulate(self.G, [t.sum()], split)
            total += float(t.sum())
            scale += float(t.abs().sum())
            m_fake += float(torch.sigmoid(lf).sum())
        with torch.no_grad():
            for p in self.G.parameters():
                p.grad.div_(B)
        return total / B, scale / B, m_fake / B

    def cancel(self, who):
        """{name: max sum|g_c| / max|sum g_c|} over the last window's backward passes"""
        out = {}
        for n, p in self.named_params(who):
            a = self.absgrad.get(id(p))
            top = float(p.grad.abs().max()) * self.cfg.B  # .grad was divided by B
            out[n] = float(a.max()) / top if a is not None and top > 0 else 1.0
        return out

    def ema_update(self):
        """after G step number self.g_steps (counted from 1)"""
        if not self.G_ema:
            return
        beta = ema_beta(self.cfg, self.g_steps - 1)
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.mul_(beta).add_(p, alpha=1 - beta)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)

    def set_moments(self, who, moments, k):
        """Adam's state of `who` after k steps from moments.safetensors (k = 0: none)"""
        opt = self.opt_g if who == "G" else self.opt_d
        opt.state.clear()
        if k == 0:
            return
        for name, p in self.named_params(who):
            opt.state[p] = {
                "step": torch.tensor(float(k)),
                "exp_avg": torch.from_numpy(moments[f"{k}.{name}.exp_avg"]).to(p.dtype),
                "exp_avg_sq": torch.from_numpy(moments[f"{k}.{name}.exp_avg_sq"]).to(p.dtype)}

    def moments(self, who):
        opt = self.opt_g if who == "G" else self.opt_d
        out = {}
        for name, p in self.named_params(who):
            s = opt.state.get(p, {})
            for m in ("exp_avg", "exp_avg_sq"):
                if m in s:
                    out[f"{name}.{m}"] = s[m].detach().numpy().copy()
        return out


def grad_tol(cancel, name):
    """STEP_GRAD_TOL, raised for a gradient that cancels more than CANCEL_OK"""
    return STEP_GRAD_TOL * max(1.0, cancel.get(name, 1.0) / CANCEL_OK)


def rel_diff(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    diff = float(np.abs(got - ref).max()) if got.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def group_of(name):
    prefix = name.split(".", 1)[0]
    if name.endswith(("running_mean", "running_var")):
        return f"{prefix} running stats"
    if name.endswith("num_batches_tracked"):
        return f"{prefix} num_batches_tracked"
    if name.endswith(("exp_avg", "exp_avg_sq")):
        return f"{prefix} Adam moments"
    return f"{prefix} parameters"


class Report:
    """Rows of (group, worst rel, its tensor, tolerance); prints and remembers failures."""

    def __init__(self, verbose):
        self.ok, self.verbose, self.worst = True, verbose, {}

    def tensors(self, title, got, ref, tol_of):
        """got and ref: {name: array}; tol_of(name) the tolerance of each tensor"""
        groups = {}
        for name in ref:
            if name not in got:
                self.fail(f"{title}: {name} is missing from vkaccum's files")
                continue
            r, tol = rel_diff(got[name], ref[name]), tol_of(name)
            if self.verbose:
                print(f"    {title} {name}: {r:.2e} (tolerance {tol:.1e})")
            g = group_of(name)
            n, w, wn, wt, frac, bad = groups.get(g, (0, -1.0, "", 0.0, 0.0, []))
            if r > w:
                w, wn, wt = r, name, tol
            if not r <= tol:
                bad = bad + [name]
            groups[g] = (n + 1, w, wn, wt, max(frac, r / tol), bad)
        for g, (n, w, wn, wt, frac, bad) in groups.items():
            self.ok &= not bad
            key = f"{title}: {g}"
            self.worst[key] = max(self.worst.get(key, 0.0), w)
            print(f"  {title:<7} {g:<24} {n:>3} tensors  worst {w:.2e} ({wn}), tolerance "
                  f"{wt:.1e}; closest {frac:.2f} of its own" +
                  (f"  FAIL: {', '.join(bad)}" if bad else ""))

    def value(self, title, got, ref, tol, scale=None):
        """|got - ref| / scale (|ref| by default) against tol"""
        scale = abs(ref) if scale is None else scale
        r = abs(got - ref) / scale if scale != 0 else abs(got - ref)
        bad = not r <= tol
        self.ok &= not bad
        self.worst[title] = max(self.worst.get(title, 0.0), r)
        print(f"  {title:<7} vkaccum {got:.9g}  PyTorch {ref:.9g}  rel {r:.2e} (tolerance "
              f"{tol:.0e})" + ("  FAIL" if bad else ""))

    def fail(self, msg):
        print(f"  FAIL {msg}")
        self.ok = False


def window_inputs(inputs, k, cfg, dtype, j):
    dn = cfg.B
    real = torch.from_numpy(inputs[f"real.{k}"][j * dn:(j + 1) * dn]).to(dtype)
    zd = torch.from_numpy(inputs[f"z_d.{k}"][j * dn:(j + 1) * dn]).to(dtype)
    return real, zd


def replay(cfg, out, init, inputs, stats, final, moments, dtype, rep):
    """From init, all iterations in PyTorch; final tensors compared."""
    print(f"== replay from init.safetensors in {str(dtype).replace('torch.', '')}")
    pair = Pair(cfg, dtype)
    pair.load(init, os.path.join(out, "init.safetensors"))
    for k in range(1, cfg.iterations + 1):
        for j in range(cfg.d_steps):
            real, zd = window_inputs(inputs, k, cfg, dtype, j)
            dl, dscale, dr, df = pair.d_window(real, zd)
            pair.opt_d.step()
        zg = torch.from_numpy(inputs[f"z_g.{k}"]).to(dtype)
        gl, gscale, gf = pair.g_window(zg)
        pair.opt_g.step()
        pair.g_steps += 1
        pair.ema_update()
        s = stats[k - 1]
        print(f"  iteration {k}: d_loss {s['d_loss']:.7f} / {dl:.7f}, g_loss "
              f"{s['g_loss']:.7f} / {gl:.7f}, d_real {s['d_real']:.6f} / {dr:.6f}, d_fake "
              f"{s['d_fake']:.6f} / {df:.6f}, g_fake {s['g_fake']:.6f} / {gf:.6f} "
              "(vkaccum / PyTorch)")
        for key, ref, scale in (("d_loss", dl, dscale), ("g_loss", gl, gscale),
                                ("d_real", dr, dr), ("d_fake", df, df), ("g_fake", gf, gf)):
            r = abs(s[key] - ref) / scale
            rep.worst[f"replay {key}"] = max(rep.worst.get(f"replay {key}", 0.0), r)
            if not r <= REPLAY_LOSS_TOL:
                rep.fail(f"replay iteration {k}: {key} {s[key]:.9g}, PyTorch {ref:.9g}, "
                         f"difference {r:.2e} of its scale > {REPLAY_LOSS_TOL:.0e}")
    ref = pair.tensors()
    nbt = {n: v for n, v in ref.items() if n.endswith("num_batches_tracked")}
    ref = {n: v for n, v in ref.items() if n not in nbt}
    K = cfg.iterations
    got_m = {n[len(f"{K}."):]: v for n, v in moments.items() if n.startswith(f"{K}.")}
    ref.update(pair.moments("G"))
    ref.update(pair.moments("D"))
    steps = {"G": (cfg.lr_g, K), "G_ema": (cfg.lr_g, K), "D": (cfg.lr_d, K * cfg.d_steps)}
    groups = {}
    for name, r in ref.items():
        got = got_m.get(name, final.get(name))
        if got is None:
            rep.fail(f"replay: {name} is missing from vkaccum's files")
            continue
        g = group_of(name)
        rel = rel_diff(got, r)
        lr, n_steps = steps[name.split(".", 1)[0]]
        in_lr = float(np.abs(got.astype(np.float64) - r).max()) / lr
        row = groups.setdefault(g, {"n": 0, "rel": (-1.0, ""), "lr": (-1.0, ""), "bad": []})
        row["n"] += 1
        row["rel"] = max(row["rel"], (rel, name))
        row["lr"] = max(row["lr"], (in_lr, name))
        if g.endswith("parameters"):
            row["tol"], row["unit"] = REPLAY_LR_PER_STEP * n_steps, "lr"
            bad = not in_lr <= row["tol"]
        elif g.endswith("running stats"):
            row["tol"], row["unit"] = REPLAY_STATS_TOL, "rel"
            bad = not rel <= row["tol"]
        else:
            row["tol"], row["unit"], bad = None, "", not np.all(np.isfinite(got))
        if bad:
            row["bad"].append(name)
    for g, row in groups.items():
        rel, rname = row["rel"]
        rep.worst[f"replay: {g}"] = max(rep.worst.get(f"replay: {g}", 0.0), rel)
        line = f"  replay  {g:<24} {row['n']:>3} tensors  worst rel {rel:.2e} ({rname})"
        if row["unit"] == "lr":
            line += (f"; max|diff| {row['lr'][0]:.2g} lr ({row['lr'][1]}), tolerance "
                     f"{row['tol']:g} lr")
        elif row["unit"] == "rel":
            line += f", tolerance {row['tol']:.0e}"
        else:
            line += " (reported)"
        if row["bad"]:
            line += "  FAIL: " + ", ".join(row["bad"])
            rep.ok = False
        print(line)
    counts = sorted({(n.split(".")[0], int(final[n]), int(v)) for n, v in nbt.items()})
    if counts:
        print("  num_batches_tracked (vkaccum, PyTorch): " +
              ", ".join(f"{p} {a}, {b}" for p, a, b in counts))
        if any(a != b for _, a, b in counts):
            rep.fail("num_batches_tracked differs from PyTorch's")


class IterRef:
    """PyTorch's iteration K in float64 from vkaccum's state K-1: the D window on G and D
    of state K-1, the G window on G of state K-1 and D of state K (the D that vkaccum's G
    phase saw), with the activation inputs in flips taken on their other side."""

    def __init__(self, cfg, prev, cur, inputs, k, flips):
        dt = torch.float64
        pair = Pair(cfg, dt)
        pair.load(prev, f"state {k - 1}")
        pair.record, pair.flips = True, flips
        real, zd = window_inputs(inputs, k, cfg, dt, 0)
        pair.tag = "D"
        self.d = pair.d_window(real, zd, split=True)
        self.grad = {n: p.grad.detach().numpy().copy() for n, p in pair.named_params("D")}
        self.cancel = pair.cancel("D")
        load_module(pair.D, cur, "D", f"state {k}", buffers=False)
        pair.tag = "G"
        self.g = pair.g_window(torch.from_numpy(inputs[f"z_g.{k}"]).to(dt), split=True)
        self.grad.update({n: p.grad.detach().numpy().copy() for n, p in pair.named_params("G")})
        self.cancel.update(pair.cancel("G"))
        self.kinks, self.flips = sorted(pair.kinks), flips
        self.stats = {}
        for prefix, m in (("G", pair.G), ("D", pair.D)):
            for n, t in m.state_dict().items():
                if n.endswith(("running_mean", "running_var")):
                    self.stats[f"{prefix}.{n}"] = t.numpy().copy()

    def failing(self, vk_grad):
        return any(not rel_diff(vk_grad[n], r) <= grad_tol(self.cancel, n)
                   for n, r in self.grad.items())

    def mismatch(self, vk_grad):
        """sum over tensors of rel / tolerance: every tensor a kink reaches counts"""
        return sum(rel_diff(vk_grad[n], r) / grad_tol(self.cancel, n)
                   for n, r in self.grad.items())


def matched_reference(cfg, prev, cur, inputs, k, vk_grad):
    """IterRef with ReLU / LeakyReLU inputs that lie within f32 rounding of 0 taken on
    their other side where that brings vkaccum's gradient closer (the derivative there
    is 1 or 0 (0.2) depending on the last bit, in vkaccum as in any f32 computation): the
    nearest MAX_FLIPS candidates one at a time, in passes until none helps; a flip is
    kept when it cuts the summed mismatch by a third."""
    ref = IterRef(cfg, prev, cur, inputs, k, frozenset())
    score = ref.mismatch(vk_grad)
    changed = True
    while changed and ref.failing(vk_grad):
        changed = False
        for _, key, idx in ref.kinks[:MAX_FLIPS]:
            if (key, idx) in ref.flips or not ref.failing(vk_grad):
                continue
            trial = IterRef(cfg, prev, cur, inputs, k, ref.flips | {(key, idx)})
            t = trial.mismatch(vk_grad)
            if t < score * 2 / 3:
                ref, score, changed = trial, t, True
    return ref


def kink_name(cfg, key, idx):
    """'the input of D.main.4 in D(fake), D window, sample 5 [c, y, x]'"""
    window, module, call = key
    per_pass = (cfg.B + cfg.b - 1) // cfg.b
    if window == "D" and module.startswith("D."):
        micro, what = call % per_pass, "D(real)" if call < per_pass else "D(fake)"
    else:
        micro, what = call, module.split(".")[0] if window == "D" else "D(G(z))" \
            if module.startswith("D.") else "G(z)"
    return (f"the input of {module} in {what}, {window} window, sample "
            f"{micro * cfg.b + idx[0]} {list(idx[1:])}")


def adam_step(cfg, prev, moments, who, steps, grad):
    """torch.optim.Adam's step (float64) from prev's weights and the moments after
    `steps` steps, with the given gradient: {name: stepped weights}"""
    pair = Pair(cfg, torch.float64)
    pair.load(prev, "state")
    named = pair.named_params(who)
    pair.set_moments(who, moments, steps)
    for n, p in named:
        p.grad = torch.from_numpy(np.asarray(grad[n], np.float64).copy())
    (pair.opt_d if who == "D" else pair.opt_g).step()
    return {n: p.detach().numpy().copy() for n, p in named}, pair.moments(who)


def step_check(cfg, init, inputs, stats, states, moments, rep):
    """Each iteration from vkaccum's own state before it, in float64."""
    print("== each iteration from vkaccum's state before it, in float64")
    b1 = cfg.betas[0]
    for k in range(1, cfg.iterations + 1):
        prev = init if k == 1 else states[k - 1]
        cur = states[k]
        print(f" iteration {k}")
        s = stats[k - 1]
        vk_grad = {}
        for who in ("D", "G"):
            for n, _ in Pair(cfg, torch.float64).named_params(who):
                m1 = moments[f"{k}.{n}.exp_avg"].astype(np.float64)
                m0 = moments[f"{k - 1}.{n}.exp_avg"].astype(np.float64) if k > 1 else 0.0
                vk_grad[n] = (m1 - b1 * m0) / (1 - b1)
        ref = matched_reference(cfg, prev, cur, inputs, k, vk_grad)
        dl, dscale, dr, df = ref.d
        gl, gscale, gf = ref.g
        rep.value("d_loss", s["d_loss"], dl, STEP_LOSS_TOL, dscale)
        rep.value("d_real", s["d_real"], dr, STEP_LOSS_TOL)
        rep.value("d_fake", s["d_fake"], df, STEP_LOSS_TOL)
        rep.value("g_loss", s["g_loss"], gl, STEP_LOSS_TOL, gscale)
        rep.value("g_fake", s["g_fake"], gf, STEP_LOSS_TOL)
        for who in ("D", "G"):
            names = [n for n in ref.grad if n.startswith(who + ".")]
            rep.tensors("grad", {n: vk_grad[n] for n in names}, {n: ref.grad[n] for n in names},
                        lambda n: grad_tol(ref.cancel, n))
            for n in names:
                if grad_tol(ref.cancel, n) > STEP_GRAD_TOL and \
                        rel_diff(vk_grad[n], ref.grad[n]) > STEP_GRAD_TOL:
                    print(f"  note: {n}'s gradient cancels (max sum|g| / max|sum g| over "
                          f"the backward passes = {ref.cancel[n]:.0f}): tolerance "
                          f"{grad_tol(ref.cancel, n):.1e}")
            # torch.optim's step from vkaccum's state K-1 and its gradient
            lr = cfg.lr_d if who == "D" else cfg.lr_g
            steps = (k - 1) * cfg.d_steps if who == "D" else k - 1
            stepped, ref_m = adam_step(cfg, prev, moments, who, steps, vk_grad)
            worst, wname, bad = 0.0, "", 0
            for n, r in stepped.items():
                diff = np.abs(cur[n].astype(np.float64) - r)
                allowed = STEP_TOL_LR * lr + STEP_ULPS * np.spacing(np.abs(r).astype(np.float32))
                bad += int(np.count_nonzero(~(diff <= allowed)))
                if float(diff.max()) / lr > worst:
                    worst, wname = float(diff.max()) / lr, n
            rep.worst[f"step {who}"] = max(rep.worst.get(f"step {who}", 0.0), worst)
            print(f"  step    {who} parameters: worst {worst:.1e} lr ({wname}), tolerance "
                  f"{STEP_TOL_LR:.0e} lr + {STEP_ULPS} ulp" +
                  (f"  FAIL: {bad} values" if bad else ""))
            rep.ok &= bad == 0
            got_v = {f"{n}.exp_avg_sq": moments[f"{k}.{n}.exp_avg_sq"] for n in names}
            rep.tensors("step", got_v, {n: ref_m[n] for n in got_v},
                        lambda n: STEP_MOMENT_TOL)
            # the step from PyTorch's own gradient: reported (Adam amplifies near eps)
            stepped, _ = adam_step(cfg, prev, moments, who, steps, ref.grad)
            star = max(float(np.abs(cur[n].astype(np.float64) - r).max())
                       for n, r in stepped.items()) / lr
            print(f"  step*   {who} parameters from PyTorch's gradient: worst {star:.1e} lr "
                  "(reported)")
            rep.worst[f"step* {who}"] = max(rep.worst.get(f"step* {who}", 0.0), star)
        for key, idx in sorted(ref.flips):
            x = next(c[0] for c in ref.kinks if c[1] == key and c[2] == idx)
            print(f"  note: {kink_name(cfg, key, idx)}, {x:.1e} x rms from 0, is counted on "
                  "the side vkaccum took (a kink within f32 rounding)")
        # running statistics: state K-1's, moved by this iteration's three applications
        if ref.stats:
            rep.tensors("stats", cur, ref.stats, lambda n: STEP_STATS_TOL)
        if cfg.ema:
            beta = ema_beta(cfg, k - 1)
            ema_ref = {}
            for n in ref.grad:
                if n.startswith("G."):
                    ema_ref["G_ema" + n[1:]] = (beta * prev["G_ema" + n[1:]].astype(np.float64) +
                                                (1 - beta) * cur[n].astype(np.float64))
            rep.tensors("ema", cur, ema_ref, lambda n: STEP_EMA_TOL)
            copied = [n for n in cur if n.startswith("G_ema.") and
                      n.endswith(("running_mean", "running_var"))]
            diff = [n for n in copied if cur[n].tobytes() != cur["G" + n[5:]].tobytes()]
            if diff:
                rep.fail(f"G_ema's buffers are not G's after iteration {k}: {diff[:3]}")
            elif copied:
                print(f"  ema     G_ema buffers            {len(copied):>3} tensors  bitwise "
                      "equal to G's")


def load_dir(out):
    def path(n):
        return os.path.join(out, n)
    entries, meta = st.read(path("init.safetensors"))
    cfg = Config(meta, path("init.safetensors"))
    init = {n: a for n, _, a in entries}
    final = st.load(path("final.safetensors"))
    inputs = st.load(path("inputs.safetensors"))
    moments = st.load(path("moments.safetensors"))
    with open(path("stats.json")) as f:
        stats = json.load(f)
    states = {}
    for k in range(1, cfg.iterations + 1):
        p = path(f"state.{k}.safetensors")
        states[k] = st.load(p) if os.path.exists(p) else None
    if len(stats) != cfg.iterations:
        raise ValueError(f"{path('stats.json')}: {len(stats)} iterations, the config says "
                         f"{cfg.iterations}")
    return cfg, init, final, inputs, moments, stats, states


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the folder vkaccum-parity-gan wrote")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="precision of the free replay (float32)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every tensor")
    args = ap.parse_args(argv[1:])
    torch.set_grad_enabled(True)
    try:
        cfg, init, final, inputs, moments, stats, states = load_dir(args.out)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"dcgan.py: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {cfg.describe()}")
    rep = Report(args.verbose)
    c = final.get("train.gan.counters")
    want = [cfg.iterations, cfg.iterations * cfg.d_steps * cfg.B, cfg.iterations * cfg.B]
    if c is None or [int(x) for x in c] != want:
        rep.fail(f"train.gan.counters {None if c is None else c.tolist()}: expected "
                 f"{want} (iterations, D and G noise samples): the inputs do not follow "
                 "the run's noise streams")
    try:
        replay(cfg, args.out, init, inputs, stats, final, moments,
               getattr(torch, args.dtype), rep)
        if cfg.d_steps == 1 and all(states.values()):
            step_check(cfg, init, inputs, stats, states, moments, rep)
        else:
            print("== the per-iteration check needs d_steps 1 and every state.K file: "
                  "skipped")
    except (ValueError, KeyError) as e:
        print(f"dcgan.py: {e}", file=sys.stderr)
        return 2
    print("largest: " + ", ".join(f"{k} {v:.1e}" for k, v in rep.worst.items()))
    print("PASS" if rep.ok else "FAIL")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
