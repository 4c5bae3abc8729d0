#!/usr/bin/python3
"""Exports a vkaccum checkpoint to ONNX and checks the result (Debian's python3-torch
1.13 and python3-onnx; run with /usr/bin/python3).

    /usr/bin/python3 tools/export_onnx.py RUN/best.safetensors out.onnx [--vkaccum BIN]

The checkpoint's "config" metadata (the run's options) builds the PyTorch module of
tools/parity/: the U-Net of unet.py for `seg train` runs, the generator of dcgan.py for
`gan train` runs (G_ema, or G with --weights g, as `gan sample`). The weights load with
a strict load_state_dict (a missing, extra or misshapen tensor is an error naming the
file and the tensor). The module is exported in eval mode (BatchNorm's running
statistics) with opset 17: the U-Net as image (N, 3, H, W) -> logits (N, classes, H, W)
with N, H and W dynamic (H and W multiples of 2^depth; the image normalised with the
run's mean and std, which the model's metadata holds); the generator as z (N, z_dim, 1,
1) -> images (N, channels, res, res) in [-1, 1] with N dynamic.

Checks, each printed; any failure exits 1:
  - onnx.checker.check_model with shape inference, opset >= 17, and the dynamic axes
    named in the graph's input and output;
  - onnxruntime, when it imports: the ONNX model against the PyTorch module on inputs of
    two batch sizes (and two image sizes for the U-Net), max |diff| <= 1e-4 x max(1,
    max |ref|);
  - vkaccum, the binary given by --vkaccum (else $VKACCUM_BIN, else `vkaccum` on the
    PATH; none found: said, and skipped): the same inputs through `vkaccum seg predict
    --logits` (the logits as float32, NAME_logits.npy) or `vkaccum gan sample --raw`
    (the images as float32), max |diff| <= 1e-4 x max(1, max |ref|) against the module,
    and the mask's classes the argmax of vkaccum's logits. The latents are `gan
    sample`'s: src/gan.c's vka_gan_noise (splitmix64 and Box-Muller) on the grid's
    stream, redone here in Python.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "parity"))
import dcgan  # noqa: E402
import st  # noqa: E402
import unet  # noqa: E402

OPSET = 17
TOL = 1e-4
NOISE_GRID = 2  # the sample grid's noise stream (src/cli/gan.c NOISE_GRID)


class Failed(Exception):
    """A check that did not pass; the message says which and by how much."""


# ---- the module from the checkpoint ------------------------------------------------------

class Seg:
    """A `seg train` checkpoint as a U-Net."""

    kind = "seg"

    def __init__(self, path):
        self.model, self.cfg = unet.load_vkaccum(path)
        self.model.eval()
        self.size = int(self.cfg.get("tile") or self.cfg.get("crop", 64))
        self.mean = [float(v) for v in self.cfg.get("mean", "0.485,0.456,0.406").split(",")]
        self.std = [float(v) for v in self.cfg.get("std", "0.229,0.224,0.225").split(",")]

    def describe(self):
        c = self.cfg
        return (f"U-Net depth {c['depth']}, width {c['width']}, norm {c['norm']}, up "
                f"{c['up']}, {c['classes']} classes")

    def example(self, n, size=None):
        g = torch.Generator().manual_seed(n)
        s = size or self.size
        return torch.randn(n, 3, s, s, generator=g)

    def names(self):
        return (["image"], ["logits"],
                {"image": {0: "batch", 2: "height", 3: "width"},
                 "logits": {0: "batch", 2: "height", 3: "width"}})

    def metadata(self):
        return {"mean": ",".join(map(str, self.mean)), "std": ",".join(map(str, self.std))}


class Gan:
    """A `gan train` checkpoint as its generator."""

    kind = "gan"

    def __init__(self, path, weights):
        self.weights = weights
        self.model, self.cfg, self.prefix = dcgan.load_generator(path, weights)
        self.z_dim = int(self.cfg["z-dim"])

    def describe(self):
        c = self.cfg
        return (f"DCGAN generator {self.prefix}, res {c['res']}, channels {c['channels']}, "
                f"width {c['width']}, z-dim {c['z-dim']}, norm {c['norm']}")

    def example(self, n, size=None):
        g = torch.Generator().manual_seed(n)
        return torch.randn(n, self.z_dim, 1, 1, generator=g)

    def names(self):
        return (["z"], ["images"], {"z": {0: "batch"}, "images": {0: "batch"}})

    def metadata(self):
        return {}


def open_checkpoint(path, weights):
    _, meta = st.read(path)
    if meta.get("kind") == "vkaccum-gan":
        return Gan(path, weights)
    if "config" not in meta:
        raise ValueError(f"{path}: no \"config\" metadata: not a checkpoint of vkaccum seg "
                         "train or gan train")
    return Seg(path)


# ---- export and the ONNX checks ----------------------------------------------------------

def export(net, path, config_json):
    import onnx
    inputs, outputs, axes = net.names()
    with torch.no_grad(), warnings.catch_warnings():
        # the U-Net's check that H and W are multiples of 2^depth is Python, which a trace
        # does not keep (the ONNX model needs such inputs too); torch 1.13 also warns that
        # it has no shape inference for constants, which check_onnx's checker then runs
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")
        torch.onnx.export(net.model, (net.example(1),), path, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          do_constant_folding=True)
    model = onnx.load(path)
    meta = {"vkaccum_config": config_json, **net.metadata()}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)


def check_onnx(net, path):
    import onnx
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise Failed(f"{path}: onnx.checker: {e}") from None
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < OPSET:
        raise Failed(f"{path}: opset {opset}, below {OPSET}")
    _, _, axes = net.names()
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        for k, name in axes[v.name].items():
            if dims[k].dim_param != name:
                raise Failed(f"{path}: axis {k} of {v.name} is {dims[k]}, not the dynamic "
                             f"{name!r}")
    print(f"onnx: {path} passes onnx.checker (full check), opset {opset}, dynamic axes "
          + "; ".join(f"{n} {sorted(a.values())}" for n, a in axes.items()))


def close(what, got, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(got - ref).max()) if got.size else 0.0
    if got.shape != ref.shape or diff > TOL * scale:
        raise Failed(f"{what}: max |diff| {diff:.3g} over {TOL:g} x {scale:.3g} "
                     f"(shapes {got.shape} and {ref.shape})")
    return diff / scale


def check_onnxruntime(net, path):
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime: not installed; the ONNX model was not run (onnx.checker only)")
        return
    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    cases = [(1, None), (3, None)] + ([(2, 2 * net.size)] if net.kind == "seg" else [])
    worst = 0.0
    for n, size in cases:
        x = net.example(n, size)
        with torch.no_grad():
            ref = net.model(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        worst = max(worst, close(f"onnxruntime, input {tuple(x.shape)}", got, ref))
    print(f"onnxruntime: {len(cases)} inputs, max |diff| / max(1, max |ref|) {worst:.2e}")


# ---- against vkaccum ---------------------------------------------------------------------

def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise Failed(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}")


def mix64(z):
    """src/rng.h vka_mix64 (splitmix64's finaliser after the golden gamma)."""
    m = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def gan_noise(seed, stream, first, n, z_dim):
    """src/gan.c vka_gan_noise: z of sample k from (seed, stream, k) alone."""
    m = (1 << 64) - 1
    z = np.empty((n, z_dim), np.float32)
    for i in range(n):
        s = mix64(mix64(seed ^ 0x6761) ^ mix64(((stream << 56) & m) ^ (first + i)))
        for j in range(0, z_dim, 2):
            a, b = mix64((s + 2 * j) & m), mix64((s + 2 * j + 1) & m)
            u1 = ((a >> 11) + 1) * (1.0 / 9007199254740992.0)
            u2 = (b >> 11) * (1.0 / 9007199254740992.0)
            r = math.sqrt(-2.0 * math.log(u1))
            z[i, j] = r * math.cos(2 * math.pi * u2)
            if j + 1 < z_dim:
                z[i, j + 1] = r * math.sin(2 * math.pi * u2)
    return z


def seg_images(net, sizes, folder):
    """Random RGB PNGs (one per size) and the module's normalised inputs for them, as
    vkaccum normalises: clamp(v * (1/255)) - mean, times 1/std, in float32."""
    from PIL import Image
    rng = np.random.default_rng(1)
    paths, xs = [], []
    f32 = np.float32
    mean = np.array(net.mean, f32).reshape(3, 1, 1)
    inv = (f32(1) / np.array(net.std, f32)).reshape(3, 1, 1)
    for k, s in enumerate(sizes):
        rgb = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        paths.append(os.path.join(folder, f"img{k}_{s}.png"))
        Image.fromarray(rgb, "RGB").save(paths[-1])
        x = np.clip(rgb.transpose(2, 0, 1).astype(f32) * f32(1.0 / 255.0), 0, 1)
        xs.append(torch.from_numpy((x - mean) * inv))
    return paths, xs


def compare_seg(net, vk, ckpt, folder):
    from PIL import Image
    sizes = [net.size, 2 * net.size]
    paths, xs = seg_images(net, sizes, folder)
    worst = 0.0
    for path, x, s in zip(paths, xs, sizes):
        out = os.path.join(folder, f"pred{s}")
        run([vk, "seg", "predict", "--ckpt", ckpt, "--input", path, "--out", out,
             "--tile", str(s), "--logits"])
        stem = os.path.splitext(os.path.basename(path))[0]
        got = np.load(os.path.join(out, f"{stem}_logits.npy")).astype(np.float64)
        mask = np.array(Image.open(os.path.join(out, f"{stem}_mask.png")))
        with torch.no_grad():
            ref = net.model(x[None]).double()[0].numpy()
        worst = max(worst, close(f"vkaccum seg predict, {s}x{s} image", got, ref))
        if (mask != got.argmax(0)).any():
            raise Failed(f"vkaccum seg predict, {s}x{s} image: the mask is not the argmax of "
                         f"its own logits")
    shown = ", ".join(f"{s}x{s}" for s in sizes)
    print(f"vkaccum seg predict --logits: {len(sizes)} images ({shown}), max |diff| / max(1, "
          f"max |logit|) {worst:.3g} <= {TOL:g}; masks the logits' argmax")


def compare_gan(net, vk, ckpt, folder, n=8, seed=3):
    raw = os.path.join(folder, "samples.npy")
    run([vk, "gan", "sample", "--ckpt", ckpt, "--out", os.path.join(folder, "samples"),
         "--n", str(n), "--seed", str(seed), "--weights", net.weights, "--raw", raw])
    z = gan_noise(seed, NOISE_GRID, 0, n, net.z_dim)
    with torch.no_grad():
        ref = net.model(torch.from_numpy(z).reshape(n, net.z_dim, 1, 1)).double().numpy()
    got = np.load(raw).astype(np.float64)
    worst = close(f"vkaccum gan sample --raw, {n} images (seed {seed})", got, ref)
    print(f"vkaccum gan sample --raw: {n} images (seed {seed}), max |diff| / max(1, max |ref|) "
          f"{worst:.3g} <= {TOL:g}")


def find_vkaccum(given):
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise ValueError(f"--vkaccum {given}: not an executable file")
        return given
    env = os.environ.get("VKACCUM_BIN")
    return env if env and os.access(env, os.X_OK) else shutil.which("vkaccum")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="a checkpoint of vkaccum seg train or gan train")
    ap.add_argument("out", help="the ONNX file to write")
    ap.add_argument("--weights", choices=["ema", "g"], default="ema",
                    help="gan: export G_ema (default, G when the run kept none) or G")
    ap.add_argument("--vkaccum", help="the vkaccum binary to compare with")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison with vkaccum")
    args = ap.parse_args(argv[1:])
    try:
        net = open_checkpoint(args.ckpt, args.weights)
        vk = None if args.no_compare else find_vkaccum(args.vkaccum)
        print(f"{args.ckpt}: {net.describe()}, loaded strictly")
        export(net, args.out, json.dumps(net.cfg))
        check_onnx(net, args.out)
        check_onnxruntime(net, args.out)
        if vk is None:
            print("vkaccum: " + ("not compared (--no-compare)" if args.no_compare else
                                 "no binary found (give --vkaccum BIN); not compared"))
        else:
            with tempfile.TemporaryDirectory(prefix="vkaccum-export-") as folder:
                (compare_seg if net.kind == "seg" else compare_gan)(net, vk, args.ckpt, folder)
    except (OSError, ValueError, KeyError) as e:
        print(f"export_onnx.py: {e}", file=sys.stderr)
        return 2
    except Failed as e:
        print(f"export_onnx.py: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
