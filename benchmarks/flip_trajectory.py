"""Where do a sampler's basin "flips" start? A trajectory diagnostic on a Gaussian mixture.

A flip is a sample whose output lies nearest another mode than the exact PF-ODE map of its
starting noise. For each flipped sample this script takes the sampler's state at every level of
its schedule (the `x` its callback reports: for UniPC the predictor's point, before the next
corrector), solves the exact ODE from there to sigma = 0, and reports the first level from which
the exact continuation already ends in the wrong mode: the step that committed the flip. It
also prints the state's RMS distance to the exact trajectory at each level.

    python benchmarks/flip_trajectory.py --steps 16                  # a validation mixture
    python benchmarks/flip_trajectory.py --steps 5 --sampler dpmpp_3m --mixture 2
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

import torch
from fit_schedule import SIGMA_MAX, SIGMA_MIN  # same folder
from validate_schedule import VALIDATION, validation_problem

from diffusionforge.core.gmm import exact_flow_map, flow_between
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import SCHEDULES


def exact_levels(denoise, x, sigmas: list[float], per_unit: int = 60) -> list[torch.Tensor]:
    """Exact ODE solution at each sigma level (RK4 in log sigma between levels)."""
    out, cur = [], x
    for a, b in zip(sigmas[:-1], sigmas[1:], strict=True):
        cur = exact_through(denoise, cur, a, b, per_unit)
        out.append(cur)
    return out


def exact_through(denoise, x, a: float, b: float, per_unit: int) -> torch.Tensor:
    """RK4 in u = log sigma from sigma a down to b, per_unit steps per unit of u."""
    return flow_between(denoise, x, a, b, max(8, int(per_unit * math.log(a / b))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--schedule", default="optimized")
    ap.add_argument("--mixture", type=int, default=1, help="index into VALIDATION")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=55)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = VALIDATION[args.mixture]
    gmm, x, ref, mode_ref = validation_problem(spec, args.samples, args.seed)
    sigmas = SCHEDULES[args.schedule](args.steps, SIGMA_MIN, SIGMA_MAX)
    states: list[torch.Tensor] = []
    out = SAMPLERS[args.sampler](
        gmm.denoise, x, sigmas, callback=lambda info: states.append(info["x"])
    )
    flipped = (torch.cdist(out, gmm.means).argmin(1) != mode_ref).nonzero().flatten()
    s = sigmas.tolist()
    print(f"{spec}, {args.sampler} + {args.schedule}, {args.steps} steps: {len(flipped)} flips")
    if len(flipped) == 0:
        return
    exact_all = exact_levels(gmm.denoise, x, s[:-1])  # exact states at s[1..n-1]
    exact = [e[flipped] for e in exact_all]
    committed = Counter()
    print(
        "| level | sigma | RMS to exact (all) | RMS to exact (flipped) | wrong basin (first here) |"
    )
    print("|---|---|---|---|---|")
    first = torch.full((len(flipped),), -1)
    rows = []
    for k in range(len(s) - 2):  # states[k] is the state at s[k + 1]
        st = states[k][flipped]
        cont = exact_flow_map(gmm.denoise, st, s[k + 1], steps=300)
        wrong = torch.cdist(cont, gmm.means).argmin(1) != mode_ref[flipped]
        first[(first < 0) & wrong] = k + 1
        e_all = (states[k] - exact_all[k]).pow(2).mean().sqrt()
        e_fl = (st - exact[k]).pow(2).mean().sqrt()
        rows.append((k + 1, s[k + 1], float(e_all), float(e_fl), int(wrong.sum())))
    for lvl in first.tolist():
        committed[lvl] += 1
    for lvl, sig, e_all, e_fl, n_wrong in rows:
        cells = f"{e_all:.2e} | {e_fl:.2e} | {n_wrong} (first {committed[lvl]})"
        print(f"| {lvl} | {sig:.3f} | {cells} |")
    print(f"flips whose state was in the right basin at every level: {committed[-1]}")


if __name__ == "__main__":
    main()
