"""How well and how fast the 2-D toy presets train on this machine.

For each preset: train it exactly as `diffusionforge train --preset NAME` would (in-process,
one run folder per preset), draw 5000 samples with the preset's sampler settings from the EMA
weights, and measure the sliced Wasserstein distance (SW_2, 512 directions) to 5000 fresh data
points the model never saw. For scale it also prints the distance between two independent
draws of the data (the floor any model hits at this sample size) and that of a Gaussian with
the data's spread (a model that learned nothing).

    python benchmarks/toy_presets.py                       # all four toy presets
    python benchmarks/toy_presets.py --presets moons --set train.steps=500

Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffusionforge.data.toy import make_toy
from diffusionforge.eval.swd import sliced_wasserstein
from diffusionforge.modalities import make_trainer
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.train.config import apply_overrides, load_preset

TOYS = ["moons", "swissroll", "ring", "checkerboard"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=TOYS)
    ap.add_argument("--set", action="append", default=[], help="override for every preset")
    ap.add_argument("--n", type=int, default=5000, help="samples and data points compared")
    ap.add_argument("--out", default=None, help="keep run folders and plots here")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="toy-presets-"))
    rows = []
    for name in args.presets:
        cfg = apply_overrides(load_preset(name), ["train.tensorboard=false", *args.set])
        cfg.train.progress = False
        t0 = time.monotonic()
        result = make_trainer(cfg, out / name, log=lambda m: None).fit()
        train_s = time.monotonic() - t0
        pipe = load_pipeline(result.checkpoint)
        t1 = time.monotonic()
        samples = pipe.generate(args.n, seed=1)
        sample_s = time.monotonic() - t1
        fresh = make_toy(name, args.n, seed=12345)
        swd = sliced_wasserstein(samples, fresh)
        floor = sliced_wasserstein(make_toy(name, args.n, seed=54321), fresh)
        noise = sliced_wasserstein(torch.randn(args.n, 2) * fresh.std(0) + fresh.mean(0), fresh)
        if args.out:
            from diffusionforge.plot import save_png, scatter_panels

            save_png(scatter_panels([("data", fresh), ("samples", samples)]), out / f"{name}.png")
        rows.append(
            (
                name,
                result.step,
                cfg.train.batch_size,
                train_s,
                cfg.sample.nfe,
                sample_s,
                swd,
                floor,
                noise,
            )
        )
        print(
            f"{name}: {result.step} steps in {train_s:.1f}s, SW2 {swd:.4f} "
            f"(floor {floor:.4f}, noise {noise:.4f})",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n"
    )
    print(
        f"| preset | steps | batch | train time | NFE | sample time (n={args.n}) | SW2 to data | "
        "data-vs-data floor | Gaussian baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, steps, batch, train_s, nfe, sample_s, swd, floor, noise in rows:
        print(
            f"| {name} | {steps} | {batch} | {train_s:.0f} s | {nfe} | {sample_s:.1f} s | "
            f"{swd:.3f} | {floor:.3f} | {noise:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
