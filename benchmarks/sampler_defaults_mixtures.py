"""Each sampler's default schedule checked on problems it was not chosen on.

`SAMPLER_INFO[name].schedule` was chosen on the moons network (sampler_default_schedules.py).
This script checks the choice for one sampler on validation Gaussian mixtures of
fit_schedule_bar.py: RMS error to the exact flow map from the same noise, per schedule and NFE.

    python benchmarks/sampler_defaults_mixtures.py --sampler heun --nfe 16 32
"""

from __future__ import annotations

import argparse

import torch
from fit_schedule_bar import PROBLEMS, Reference  # same folder
from samplers import rms

from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sampler", default="heun", choices=list(SAMPLERS))
    ap.add_argument("--nfe", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--schedules", nargs="+", default=["karras", "optimized", "vp_trailing"])
    ap.add_argument(
        "--problems", nargs="+", default=["ring2", "gmm8x6", "broad32x3", "sharp128x16"]
    )
    ap.add_argument("--samples", type=int, default=256)
    args = ap.parse_args()
    print(f"sampler {args.sampler}, default schedule {SAMPLER_INFO[args.sampler].schedule}")
    cols = [f"{s}@{n}" for n in args.nfe for s in args.schedules]
    print("| problem | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name in args.problems:
        gmm, g = PROBLEMS[name](), torch.Generator().manual_seed(5)
        x = torch.randn(args.samples, gmm.dim, generator=g, dtype=torch.float64) * 80.0
        ref = Reference(gmm)(x, 80.0)
        errs = []
        for nfe in args.nfe:
            steps = SAMPLER_INFO[args.sampler].steps_for(nfe)
            for s in args.schedules:
                out = SAMPLERS[args.sampler](gmm.denoise, x, SCHEDULES[s](steps, 0.002, 80.0))
                errs.append(f"{rms(out, ref):.4f}")
        print(f"| {name} | " + " | ".join(errs) + " |")


if __name__ == "__main__":
    main()
