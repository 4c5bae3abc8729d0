#!/usr/bin/python3
"""PyTorch's side of `vkaccum bench train`: the workloads of tools/bench/workloads.json
(the file vkaccum embeds at build time) run in PyTorch on the CPU, float32, with the
modules of tools/parity/ (unet.UNet, dcgan.Generator and dcgan.Discriminator), and the
same figures: the median wall time of an optimizer step after warm-up steps, img/s,
achieved GFLOP/s and the peak resident memory of the process (ru_maxrss).

A step is what vkaccum's engines do (src/seg.h, src/gan.h):
  seg  the effective batch as micro-batches of b: cross-entropy (ignore_index 255)
       summed over each micro-batch and back-propagated, the gradients added up and
       divided once by the window's count of valid pixels, then the optimizer steps.
  gan  one iteration: d_steps D windows (the B real images as micro-batches, then B
       fakes made by G under no_grad; BCE with logits summed, gradients / B, Adam steps
       D), then a G window (D frozen: requires_grad off, as vkaccum leaves D's
       gradients uncomputed; gradients / B, Adam steps G), then the EMA of G
       (0.5^(B / (1000 ema_kimg)), buffers copied).
Inputs are random (images N(0, 1) or U(-1, 1), masks uniform over the classes), drawn
per micro-batch inside the timed step.

FLOPs are counted as vkaccum counts them (vka_graph_flops): 2 per multiply-add of every
Conv2d, ConvTranspose2d and Linear GEMM the step runs, counted by forward hooks during
the first step: the forward; the input gradient when the input requires grad under
grad mode; the weight gradient when the weight requires grad under grad mode.

    /usr/bin/python3 tools/bench/torch_ref.py --workload seg256 [--micro-batch B]
        [--steps N] [--warmup N] [--batch N] [--size N] [--threads 2] [--json]

Debian's python3-torch (1.13) with libopenblas0-openmp: without an optimised BLAS,
PyTorch falls back to reference BLAS and is 10-50x slower. --steps 0 builds the
workload, counts one step's FLOPs on one micro-batch of 1 sample, and runs nothing more.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

# OpenMP threads that busy-wait at every barrier lose their core to the other jobs of a
# shared machine: with the default (active) policy PyTorch's small GEMMs ran 4-5x slower
# here at a load of 6 on 2 cores. Passive waiting is the fair baseline there; set
# OMP_WAIT_POLICY to measure otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
import dcgan  # noqa: E402
import unet  # noqa: E402

WORKLOADS = os.path.join(HERE, "workloads.json")


class FlopCounter:
    """Forward hooks on every conv and linear module that add up FLOPs while on."""

    def __init__(self, modules):
        self.on, self.flops = False, 0.0
        for m in modules:
            for mod in m.modules():
                if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    mod.register_forward_hook(self.hook)

    def hook(self, mod, inputs, out):
        if not self.on:
            return
        x = inputs[0]
        px = x if isinstance(mod, nn.ConvTranspose2d) else out
        pixels = px.shape[2] * px.shape[3] if px.dim() == 4 else 1
        f = 2.0 * x.shape[0] * pixels * mod.weight.numel()
        grad = torch.is_grad_enabled()
        self.flops += f * (1 + (grad and x.requires_grad) + (grad and mod.weight.requires_grad))


def micro_sizes(batch, micro):
    return [min(micro, batch - i) for i in range(0, batch, micro)]


def divide_grads(params, count):
    for p in params:
        if p.grad is not None:
            p.grad.div_(count)


class Seg:
    def __init__(self, d, size, batch, micro):
        self.d, self.size, self.batch, self.micro = d, size, batch, micro
        self.model = unet.UNet(classes=d["classes"], depth=d["depth"], width=d["width"],
                               norm=d["norm"], groups=d["groups"], up=d["up"],
                               in_channels=d["in_channels"])
        kinds = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
        if d["optimizer"] not in kinds:
            raise ValueError(f"optimizer {d['optimizer']!r}: adamw or adam")
        self.opt = kinds[d["optimizer"]](self.model.parameters(), lr=d["lr"],
                                         betas=(d["beta1"], d["beta2"]), eps=d["eps"],
                                         weight_decay=d["weight_decay"])
        self.modules = [self.model]

    def params(self):
        return sum(p.numel() for p in self.model.parameters())

    def step(self):
        self.opt.zero_grad(set_to_none=False)
        count = 0
        for n in micro_sizes(self.batch, self.micro):
            x = torch.randn(n, self.d["in_channels"], self.size, self.size)
            y = torch.randint(0, self.d["classes"], (n, self.size, self.size))
            loss = F.cross_entropy(self.model(x), y, ignore_index=255, reduction="sum")
            loss.backward()
            count += int((y != 255).sum())
        divide_grads(self.model.parameters(), count)
        self.opt.step()


class Gan:
    def __init__(self, d, size, batch, micro):
        self.d, self.size, self.batch, self.micro = d, size, batch, micro
        bn = d["norm"] == "batch"
        self.G = dcgan.Generator(res=size, channels=d["channels"], width=d["width"],
                                 z_dim=d["z_dim"], batch_norm=bn)
        self.D = dcgan.Discriminator(res=size, channels=d["channels"], width=d["width"],
                                     batch_norm=bn)
        self.G_ema = dcgan.Generator(res=size, channels=d["channels"], width=d["width"],
                                     z_dim=d["z_dim"], batch_norm=bn)
        self.G_ema.load_state_dict(self.G.state_dict())
        if d["optimizer"] != "adam" or d["loss"] != "bce":
            raise ValueError("the GAN workloads run Adam and BCE")
        betas = (d["beta1"], d["beta2"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=d["lr"], betas=betas, eps=d["eps"])
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=d["lr"], betas=betas, eps=d["eps"])
        self.beta = 0.5 ** (batch / (1000.0 * d["ema_kimg"])) if d["ema_kimg"] > 0 else None
        self.modules = [self.G, self.D]

    def params(self):
        return sum(p.numel() for m in (self.G, self.D) for p in m.parameters())

    def z(self, n):
        return torch.randn(n, self.d["z_dim"], 1, 1)

    def d_window(self):
        self.opt_d.zero_grad(set_to_none=False)
        bce = F.binary_cross_entropy_with_logits
        for n in micro_sizes(self.batch, self.micro):
            x = torch.rand(n, self.d["channels"], self.size, self.size) * 2 - 1
            out = self.D(x)
            bce(out, torch.ones_like(out), reduction="sum").backward()
        for n in micro_sizes(self.batch, self.micro):
            with torch.no_grad():
                fake = self.G(self.z(n))
            out = self.D(fake)
            bce(out, torch.zeros_like(out), reduction="sum").backward()
        divide_grads(self.D.parameters(), self.batch)
        self.opt_d.step()

    def g_window(self):
        self.opt_g.zero_grad(set_to_none=False)
        self.D.requires_grad_(False)
        for n in micro_sizes(self.batch, self.micro):
            out = self.D(self.G(self.z(n)))
            F.binary_cross_entropy_with_logits(out, torch.ones_like(out),
                                               reduction="sum").backward()
        self.D.requires_grad_(True)
        divide_grads(self.G.parameters(), self.batch)
        self.opt_g.step()

    def ema(self):
        if self.beta is None:
            return
        with torch.no_grad():
            for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
                e.lerp_(p, 1.0 - self.beta)
            for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
                e.copy_(b)

    def step(self):
        for _ in range(self.d["d_steps"]):
            self.d_window()
        self.g_window()
        self.ema()


def load_workload(name):
    with open(WORKLOADS) as f:
        all_ = json.load(f)
    if name not in all_:
        raise ValueError(f"--workload {name}: not in {WORKLOADS} ({', '.join(all_)})")
    return all_[name]


def count_flops(w, counter):
    """FLOPs of one step, counted while it runs."""
    counter.on = True
    w.step()
    counter.on = False
    return counter.flops


def run(args):
    d = load_workload(args.workload)
    size = args.size or d["size"]
    batch = args.batch or d["batch"]
    micro = args.micro_batch or batch
    steps = d["steps"] if args.steps is None else args.steps
    warmup = d["warmup"] if args.warmup is None else args.warmup
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    w = (Gan if d["task"] == "gan" else Seg)(d, size, batch, micro)
    counter = FlopCounter(w.modules)
    if steps == 0:  # one sample's FLOPs, times the batch
        w.batch = w.micro = 1
        flops = count_flops(w, counter) * batch
    else:
        flops = count_flops(w, counter)
        for _ in range(max(warmup - 1, 0)):
            w.step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        w.step()
        ms.append((time.perf_counter() - t0) * 1e3)
    r = {
        "workload": args.workload, "device": f"cpu (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)", "definition": d,
        "overridden": bool(args.size or args.batch), "size": size, "batch": batch,
        "micro_batch": micro, "params": w.params(), "flops_per_step": flops,
        "steps": steps, "warmup": warmup,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if steps:
        med = statistics.median(ms)
        r.update(ms=ms, ms_per_step=med, img_per_s=batch * 1e3 / med,
                 gflops=flops / (med * 1e6))
    return r


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", required=True, help="a name of tools/bench/workloads.json")
    ap.add_argument("--micro-batch", type=int, default=0, help="micro-batch (the batch)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (the workload's)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps first, the FLOP count's included (the workload's)")
    ap.add_argument("--batch", type=int, default=0, help="override the effective batch")
    ap.add_argument("--size", type=int, default=0, help="override the image size")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    args = ap.parse_args(argv[1:])
    try:
        r = run(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"torch_ref.py: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"torch_ref {r['workload']} on {r['device']}: batch {r['batch']} as micro-batches "
          f"of {r['micro_batch']}; {r['flops_per_step'] / 1e9:.1f} GFLOP and "
          f"{r['params']} parameters per step")
    if r["steps"]:
        print(f"  {r['steps']} steps after {r['warmup']} warm-up: median "
              f"{r['ms_per_step']:.1f} ms per step; {r['img_per_s']:.2f} img/s, "
              f"{r['gflops']:.2f} GFLOP/s, peak RSS {r['peak_rss_mib']:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
