"""CPU training-step speed of the UNet and DiT under the speed options, as a table.

Each row times forward + backward + Adam step on random data: images/s of the fastest of
several interleaved steps after warm-up. Options: channels_last memory format, the SDPA
backend (default dispatch vs the plain "math" kernel, i.e. what a hand-written softmax
attention costs) and, with --compile, torch.compile (slow to start; opt-in).

    python benchmarks/nets_speed.py --threads 2 [--rounds 5] [--compile]
"""

import argparse
import time
from contextlib import nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffusionforge.nets import DIT_PRESETS, UNET_PRESETS, DiT, UNet


def make_step(net: torch.nn.Module, x: torch.Tensor, math_attn: bool):
    """One training step (forward + backward + Adam) as a closure, so variants can interleave."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    c, y = torch.randn(len(x)), torch.randint(0, 10, (len(x),))

    def step() -> None:
        with sdpa_kernel(SDPBackend.MATH) if math_attn else nullcontext():
            loss = net(x, c, y).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def build_variant(build, shape, batch, channels_last, math_attn, compiled):
    torch.manual_seed(0)
    net = build().train()
    x = torch.randn(batch, *shape)
    if channels_last:
        net, x = (
            net.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    if compiled:
        # Static shapes: each case is one fixed shape, and letting dynamo re-trace the same
        # forward with dynamic sizes for the second resolution hits an inductor stride bug.
        torch._dynamo.reset()
        net = torch.compile(net, dynamic=False)
    step = make_step(net, x, math_attn)
    for _ in range(3):  # warm-up: allocator, oneDNN primitive caches, compilation
        step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [
        (
            "unet-small 1x8x8",
            lambda: UNet(8, 1, num_classes=10, **UNET_PRESETS["small"]),
            (1, 8, 8),
        ),
        (
            "unet-small 1x32x32",
            lambda: UNet(32, 1, num_classes=10, **UNET_PRESETS["small"]),
            (1, 32, 32),
        ),
        (
            "dit-tiny 1x32x32",
            lambda: DiT(32, 1, num_classes=10, **DIT_PRESETS["tiny"]),
            (1, 32, 32),
        ),
    ]
    variants = [("default", False, False, False), ("channels_last", True, False, False)]
    variants.append(("math attention", False, True, False))
    if args.compile:
        variants.append(("torch.compile", False, False, True))
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
        f"best of {args.rounds} interleaved rounds"
    )
    print(f"{'network':<20} {'params':>8} {'variant':<16} {'img/s':>8} {'vs default':>10}")
    for name, build, shape in cases:
        params = sum(p.numel() for p in build().parameters())
        chosen = [v for v in variants if not (v[1] and name.startswith("dit"))]  # tokens: n/a
        steps = [build_variant(build, shape, args.batch, *v[1:]) for v in chosen]
        # Interleave the variants round by round and keep each one's fastest step: on a shared
        # machine the slow outliers are other people's load, not the variant.
        best = [float("inf")] * len(chosen)
        for _ in range(args.rounds):
            for i, step in enumerate(steps):
                t = time.perf_counter()
                step()
                best[i] = min(best[i], time.perf_counter() - t)
        for (variant, *_), t in zip(chosen, best, strict=True):
            print(
                f"{name:<20} {params / 1e6:>7.2f}M {variant:<16} {args.batch / t:>8.1f} "
                f"{best[0] / t:>9.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
