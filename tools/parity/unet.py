#!/usr/bin/python3
"""The PyTorch module equivalent to models/unet.c, and a loader of vkaccum's safetensors
files into it (Debian's python3-torch 1.13; run with /usr/bin/python3).

The module's state_dict has exactly vkaccum's names, shapes and layouts (conv OIHW,
transposed conv IOHW):

    enc.{i}.conv1.weight  enc.{i}.norm1.{weight,bias[,running_mean,running_var,
    enc.{i}.conv2.weight  enc.{i}.norm2.  num_batches_tracked]}     i = 0 .. depth
    dec.{i}.up.{weight,bias}  dec.{i}.conv1.weight  dec.{i}.norm1.* ... i = 0 .. depth-1
    head.{weight,bias}

Level i of the encoder has width << i channels: two 3x3 convs (padding 1, no bias, a
norm follows), each with a norm (GroupNorm(groups), or BatchNorm2d, eps 1e-5, momentum
0.1) and ReLU; levels after the first start with max_pool2d(2, 2). Decoder block i works
at level depth-1-i with c = width << level channels: up (ConvTranspose2d(2c, c, 2, 2),
or bilinear x2 with align_corners=False then a 1x1 Conv2d(2c, c)), cat([up, skip], 1),
the double conv from 2c to c. head is a 1x1 Conv2d(width, classes). The input is the
normalised image (N, in_channels, S, S), S a multiple of 2^depth; the output the logits
(N, classes, S, S).

    model = UNet.from_config(cfg)                  # cfg: vkaccum's config.json (dict)
    model, cfg = load_vkaccum("run/last.safetensors")

A vkaccum checkpoint (seg train's last/best.safetensors) also holds the training state
("train.*"); a --dump-grads file holds "grad.*", "step.*", "input.*" and "loss_and_count",
and no BatchNorm running statistics. Those names are left out; what remains must match
the module exactly (strict load_state_dict), except that with buffers_from_model=True the
BatchNorm buffers a file lacks keep the module's initial values (running_mean 0,
running_var 1, num_batches_tracked 0: what vkaccum starts from).

As a script: builds the module from the file's "config" metadata, loads the weights (a
--dump-grads file with buffers_from_model) and prints the parameter count and a forward
on random input (seeded), in eval mode.

    /usr/bin/python3 tools/parity/unet.py RUN/last.safetensors [--batch N] [--seed S]
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

SKIP_PREFIXES = ("train.", "grad.", "step.", "input.", "loss_and_count")


def make_norm(norm, groups, c):
    if norm == "group":
        return nn.GroupNorm(groups, c, eps=1e-5)
    if norm == "batch":
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    raise ValueError(f"norm {norm!r}: give group or batch")


class DoubleConv(nn.Module):
    """conv3x3 -> norm -> relu, twice (conv1, norm1, conv2, norm2)"""

    def __init__(self, in_c, out_c, norm, groups):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, padding=1, bias=False)
        self.norm1 = make_norm(norm, groups, out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, groups, out_c)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class UpBlock(DoubleConv):
    """up from 2c to c channels, cat([up, skip], 1), double conv from 2c to c"""

    def __init__(self, c, norm, groups, up):
        super().__init__(2 * c, c, norm, groups)
        if up == "convT":
            self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        elif up == "bilinear":
            self.up = nn.Conv2d(2 * c, c, 1)
        else:
            raise ValueError(f"up {up!r}: give convT or bilinear")
        self.bilinear = up == "bilinear"

    def forward(self, x, skip):
        if self.bilinear:
            x = F.interpolate(x, size=(2 * x.shape[2], 2 * x.shape[3]), mode="bilinear",
                              align_corners=False)
        return super().forward(torch.cat([self.up(x), skip], 1))


class UNet(nn.Module):
    def __init__(self, classes, depth=4, width=32, norm="group", groups=8, up="convT",
                 in_channels=3):
        super().__init__()
        if not 1 <= depth <= 6 or width < 1 or classes < 1 or in_channels < 1:
            raise ValueError(f"depth {depth} (1..6), width {width}, classes {classes} and "
                             f"in_channels {in_channels} do not make a U-Net")
        if norm == "group" and (groups < 1 or width % groups):
            raise ValueError(f"GroupNorm with {groups} groups needs a width that is a "
                             f"multiple of it (width {width})")
        self.depth = depth
        self.enc = nn.ModuleList(
            DoubleConv(in_channels if i == 0 else width << (i - 1), width << i, norm, groups)
            for i in range(depth + 1))
        self.dec = nn.ModuleList(UpBlock(width << (depth - 1 - i), norm, groups, up)
                                 for i in range(depth))
        self.head = nn.Conv2d(width, classes, 1)

    @classmethod
    def from_config(cls, cfg):
        """cfg: vkaccum's config JSON as a dict (config.json, or a file's "config")"""
        return cls(classes=int(cfg["classes"]), depth=int(cfg.get("depth", 4)),
                   width=int(cfg.get("width", 32)), norm=cfg.get("norm", "group"),
                   groups=int(cfg.get("groups", 8)), up=cfg.get("up", "convT"))

    def forward(self, x):
        if x.shape[2] % (1 << self.depth) or x.shape[3] % (1 << self.depth):
            raise ValueError(f"input {tuple(x.shape)}: height and width must be multiples "
                             f"of 2^depth = {1 << self.depth}")
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2, 2)
            x = block(x)
            skips.append(x)
        for i, block in enumerate(self.dec):
            x = block(x, skips[self.depth - 1 - i])
        return self.head(x)


def read_vkaccum(path):
    """({name: ndarray} of the model's tensors, config dict or None, metadata)"""
    entries, meta = st.read(path)
    arrays = {n: (st.bf16_to_f32(a) if dt == "BF16" else a) for n, dt, a in entries}
    cfg = json.loads(meta["config"]) if "config" in meta else None
    model = {k: v for k, v in arrays.items() if not k.startswith(SKIP_PREFIXES)}
    return model, cfg, meta


def load_vkaccum(path, model=None, dtype=torch.float32, buffers_from_model=False):
    """Loads the weights of a vkaccum safetensors file into model (built from the file's
    "config" when None), converted to dtype, with a strict load_state_dict. Returns
    (model, config)."""
    arrays, cfg, _ = read_vkaccum(path)
    if model is None:
        if cfg is None:
            raise ValueError(f"{path}: no \"config\" metadata to build the U-Net from; "
                             "build it yourself and pass model=")
        model = UNet.from_config(cfg)
    model = model.to(dtype)
    own = model.state_dict()
    state = {}
    for name, a in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(a))
        ref = own.get(name)
        if ref is not None and ref.is_floating_point():
            t = t.to(dtype)
        state[name] = t
    if buffers_from_model:
        for name, t in own.items():
            if name not in state and name.endswith(("running_mean", "running_var",
                                                    "num_batches_tracked")):
                state[name] = t.clone()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: the tensors do not match the U-Net: {e}") \
            from None
    return model, cfg


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="a vkaccum checkpoint (or --dump-grads file) with a config")
    ap.add_argument("--batch", type=int, default=2, help="random inputs in the forward (2)")
    ap.add_argument("--size", type=int, default=0, help="input side (default: the crop)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random input (0)")
    args = ap.parse_args(argv[1:])
    try:
        names = {n for n, _, _ in st.read(args.file)[0]}
        dump = any(n.startswith("grad.") for n in names)  # --dump-grads: no BN buffers
        model, cfg = load_vkaccum(args.file, buffers_from_model=dump)
    except (OSError, ValueError, KeyError) as e:
        print(f"unet.py: {e}", file=sys.stderr)
        return 1
    model.eval()
    S = args.size or int(cfg.get("crop", 64))
    sd = model.state_dict()
    params = sum(p.numel() for p in model.parameters())
    bufs = len(sd) - len(list(model.parameters()))
    print(f"{args.file}: U-Net depth {cfg.get('depth')}, width {cfg.get('width')}, "
          f"norm {cfg.get('norm')}, up {cfg.get('up')}, {cfg.get('classes')} classes")
    print(f"loaded {len(sd)} tensors strictly ({len(list(model.parameters()))} parameters, "
          f"{bufs} buffers): {params} trainable values")
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, S, S, generator=g)
    with torch.no_grad():
        y = model(x)
    frac = torch.bincount(y.argmax(1).reshape(-1), minlength=y.shape[1]).double() / y[:, 0].numel()
    print(f"forward (eval mode) on randn{tuple(x.shape)}, seed {args.seed}: logits "
          f"{tuple(y.shape)}, mean {y.mean().item():.6f}, std {y.std().item():.6f}, "
          f"finite {bool(torch.isfinite(y).all())}; argmax share per class: " +
          " ".join(f"{k}:{v:.3f}" for k, v in enumerate(frac.tolist())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
