"""Scaling on paper: training FLOPs per image of each network preset, measured CPU throughput
and utilisation, and the images/s an H100 would give at a stated utilisation (issue 20).

    python benchmarks/scaling.py                 # FLOPs of every preset + CPU throughput of
                                                 # the small ones (a few CPU-minutes)
    python benchmarks/scaling.py --flops-only    # the FLOP counts alone

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode over one training step's
forward and backward (EDM loss, batch 2, divided by 2): matmuls and convolutions, 2 FLOPs per
multiply-add; elementwise work is not counted. Throughput is measured in CPU time (process
time), which stays fair when other jobs share the machine; utilisation = counted FLOP/s over
the measured single-thread float32 matmul peak of this CPU. `gpu_check.py` imports these
helpers and measures the same networks on a GPU.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from diffusionforge.train.builders import build_formulation, build_model
from diffusionforge.train.config import apply_overrides, load_preset

# H100 SXM dense peaks (NVIDIA's data sheet, without sparsity), TFLOP/s.
H100_BF16_TFLOPS = 989.0
# Utilisation assumed for the paper estimate: small convolutional/attention networks at 32x32
# reach far less than large transformer LLM training (~40-50%); 30% for the >= 30M networks,
# 10% for the small ones whose kernels are too short to fill the card. Replaced by measurement
# when gpu_check runs.
ASSUMED_UTILISATION = {"large": 0.30, "small": 0.10}


@dataclass(frozen=True)
class Net:
    name: str
    overrides: tuple[str, ...]
    shape: tuple[int, int, int]  # (C, H, W) of one example


def _unet(preset: str, shape=(3, 32, 32)) -> Net:
    return Net(f"UNet-{preset}", ("model.kind=unet", f"model.unet.preset={preset}"), shape)


def _dit(preset: str, shape=(3, 32, 32), suffix: str = "") -> Net:
    return Net(f"DiT-{preset}/2{suffix}", ("model.kind=dit", f"model.dit.preset={preset}"), shape)


NETS = [
    *(_unet(p) for p in ("tiny", "small", "medium", "base", "large")),
    *(_dit(p) for p in ("tiny", "S", "B", "L")),
    _dit("B", (4, 32, 32), " latent 32x32x4"),
]
# The two shipped training presets: tiny UNets at 8x8x1 (digits) and 32x32x1 (glyphs32).
PRESET_NETS = [
    Net("digits (UNet-tiny 8x8x1)", ("model.kind=unet", "model.unet.preset=tiny"), (1, 8, 8)),
    Net("glyphs32 (UNet-tiny 32x32x1)", ("model.kind=unet", "model.unet.preset=tiny"), (1, 32, 32)),
]


def config(net: Net, *extra: str):
    return apply_overrides(load_preset("digits"), [*net.overrides, "model.num_classes=10", *extra])


def build(net: Net, device: str = "cpu", *extra: str):
    """(network, formulation, config) for `net`, class-conditional over 10 classes."""
    cfg = config(net, *extra)
    model = build_model(cfg, net.shape).to(device)
    return model, build_formulation(cfg), cfg


def batch(net: Net, n: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *net.shape, generator=g).clamp(-1, 1)
    labels = torch.randint(0, 10, (n,), generator=g)
    return x.to(device), labels.to(device)


def train_flops_per_image(net: Net) -> tuple[float, float]:
    """(forward FLOPs, forward + backward FLOPs) of one training example."""
    from torch.utils.flop_counter import FlopCounterMode

    model, form, _ = build(net)
    x, y = batch(net, 2, "cpu")
    g = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as fwd:
        loss = form.loss(model, x, y, generator=g).mean()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return fwd.get_total_flops() / 2, (fwd.get_total_flops() + bwd.get_total_flops()) / 2


def params(net: Net) -> int:
    model, _, _ = build(net)
    return sum(p.numel() for p in model.parameters())


def cpu_matmul_peak(threads: int = 1, n: int = 1024, reps: int = 20) -> float:
    """Measured float32 matmul FLOP/s of this CPU on `threads` threads (CPU time)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.process_time()
    for _ in range(reps):
        a @ b
    dt = (time.process_time() - t0) / threads
    torch.set_num_threads(old)
    return 2 * n**3 * reps / dt


def train_throughput(
    net: Net,
    batch_size: int,
    steps: int,
    device: str = "cpu",
    bf16: bool = False,
    warmup: int = 2,
    clock=time.process_time,
) -> float:
    """Training images/s (forward, backward, AdamW step) at `batch_size`; on CUDA the clock is
    wall time around synchronised steps, on CPU process time by default."""
    cuda = device.startswith("cuda")
    model, form, cfg = build(net, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    x, y = batch(net, batch_size, device)
    if cuda and cfg.model.kind == "unet":  # as the trainer runs it on CUDA
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32

    def step():
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=bf16):
            loss = form.loss(model, x, y, generator=g).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = clock()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (clock() - t0)


def h100_estimate(train_flops: float, n_params: int) -> tuple[float, float]:
    """(assumed utilisation, images/s) on one H100 from the FLOPs per training image."""
    u = ASSUMED_UTILISATION["large" if n_params >= 30e6 else "small"]
    return u, u * H100_BF16_TFLOPS * 1e12 / train_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flops-only", action="store_true")
    ap.add_argument("--steps", type=int, default=5, help="timed CPU steps per network")
    args = ap.parse_args()
    torch.set_num_threads(1)
    peak = None if args.flops_only else cpu_matmul_peak()
    if peak:
        print(f"CPU float32 matmul peak, 1 thread: {peak / 1e9:.1f} GFLOP/s (process time)\n")
    print(
        "| network | params | fwd GFLOP/img | train GFLOP/img | CPU img/s (1 thread) | "
        "CPU utilisation | H100 img/s (est., utilisation) |"
    )
    print("|---|---|---|---|---|---|---|")
    for net in [*PRESET_NETS, *NETS]:
        fwd, train = train_flops_per_image(net)
        n = params(net)
        cpu = util = "-"
        if peak and train < 2e9:  # only the small ones: the rest take CPU-minutes per step
            ips = train_throughput(net, 32 if train < 2e8 else 8, args.steps)
            cpu, util = f"{ips:.1f}", f"{ips * train / peak:.0%}"
        u, est = h100_estimate(train, n)
        print(
            f"| {net.name} | {n / 1e6:.2f}M | {fwd / 1e9:.3f} | {train / 1e9:.3f} | {cpu} | "
            f"{util} | {est:,.0f} ({u:.0%}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
