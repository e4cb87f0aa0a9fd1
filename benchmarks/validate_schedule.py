"""Check a fitted `optimized` schedule on validation mixtures the fit never saw.

    python benchmarks/validate_schedule.py --steps 16
        # UniPC RMS error to the exact PF-ODE map (and basin "flips") for Karras, the fitted
        # schedule, and optionally candidate positions, on four fresh mixtures (dims 40-112)

Candidates are chosen on these mixtures, never on the benchmark's (benchmarks/samplers.py).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from fit_schedule import SIGMA_MAX, SIGMA_MIN, to_sigmas  # same folder: positions -> sigmas

from diffusionforge.core.gmm import GaussianMixture, exact_flow_map
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import karras, optimized

VALIDATION = [
    dict(dim=40, modes=9, std_range=(0.05, 0.2), seed=31),
    dict(dim=64, modes=12, std_range=(0.04, 0.2), seed=32),
    dict(dim=80, modes=8, std_range=(0.05, 0.25), seed=33),
    dict(dim=112, modes=10, std_range=(0.05, 0.15), seed=34),
]


def validation_problem(spec: dict, samples: int, seed: int = 55):
    """(mixture, starting noise at SIGMA_MAX, exact PF-ODE map of it, the mode it ends nearest):
    what every validation score compares a sampler against."""
    gmm = GaussianMixture.random(**spec)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, gmm.dim, generator=g, dtype=torch.float64) * SIGMA_MAX
    ref = exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=500)
    return gmm, x, ref, torch.cdist(ref, gmm.means).argmin(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--candidate", action="append", default=[], help="JSON list of positions")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.steps
    cands = {
        "karras": karras(n, SIGMA_MIN, SIGMA_MAX),
        "optimized": optimized(n, SIGMA_MIN, SIGMA_MAX),
    }
    for i, text in enumerate(args.candidate):
        cands[f"candidate {i}"] = to_sigmas(np.array(json.loads(text)))
    print(f"{args.sampler}, {n} steps, {args.samples} samples: RMS (flips)")
    for spec in VALIDATION:
        gmm, x, ref, mode_ref = validation_problem(spec, args.samples)
        cells = []
        for name, sigmas in cands.items():
            out = SAMPLERS[args.sampler](gmm.denoise, x, sigmas)
            flips = int((torch.cdist(out, gmm.means).argmin(1) != mode_ref).sum())
            cells.append(f"{name} {(out - ref).pow(2).mean().sqrt():.4f} ({flips})")
        print(f"dim {spec['dim']} seed {spec['seed']}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
