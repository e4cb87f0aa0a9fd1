"""Schedules on a trained network: RMS distance of a sampler's output to a fine-step solution
of the same network's probability-flow ODE from the same noise (the Gaussian-mixture benchmark
checked on a real denoiser, where no exact map exists).

    python benchmarks/schedule_on_model.py --checkpoint digits --nfe 16
    python benchmarks/schedule_on_model.py --checkpoint digits --nfe 16 --positions "[1, ...]"

The reference is UniPC with 200 Karras steps; its own error is shown as its distance to 100
steps. --positions adds a schedule given as positions p in [0, 1] (optimized_steps.py's form).
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras
from diffusionforge.pipelines.pipeline import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="digits")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--schedules", nargs="+", default=["karras", "log_uniform", "optimized"])
    ap.add_argument("--positions", action="append", default=[], help="JSON list of positions")
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = load_pipeline(args.checkpoint)
    form = pipe.formulation
    lo, hi = form.sigma_min, form.sigma_max
    denoise = form.precondition(pipe.net.eval())  # cond None: unconditional / null label
    x = torch.randn(args.samples, *pipe.shape, generator=torch.Generator().manual_seed(0)) * hi
    steps = SAMPLER_INFO[args.sampler].steps_for(args.nfe)
    cands = {name: SCHEDULES[name](steps, lo, hi) for name in args.schedules}
    for i, text in enumerate(args.positions):
        p = torch.tensor(json.loads(text), dtype=torch.float64)
        s = torch.exp(math.log(lo) + p * (math.log(hi) - math.log(lo)))
        cands[f"positions {i}"] = torch.cat([s, s.new_zeros(1)])
    with torch.no_grad():
        ref = SAMPLERS["unipc"](denoise, x, karras(200, lo, hi))
        coarse = SAMPLERS["unipc"](denoise, x, karras(100, lo, hi))
        print(f"{args.checkpoint}, {args.samples} samples of {tuple(pipe.shape)}, sigma {lo}-{hi}")
        print(f"reference (UniPC, 200 Karras steps) vs 100 steps: RMS {_rms(ref, coarse):.4f}")
        for name, sigmas in cands.items():
            out = SAMPLERS[args.sampler](denoise, x, sigmas)
            print(f"{args.sampler} + {name}, NFE {args.nfe}: RMS {_rms(out, ref):.4f}", flush=True)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


if __name__ == "__main__":
    main()
