"""Fit the `optimized` schedule: step positions that minimise sampler error on Gaussian-mixture
proxies, the idea of Align Your Steps (Sabour et al. 2024) with the exact mixture denoiser in
place of a trained network, so the error to the exact PF-ODE map is computed, not estimated.

Objective, per step count n: the mean over proxy mixtures of log RMS(sampler(noise) - exact map),
over positions p_1 > ... > p_{n-1} in [0, 1] (p = log(sigma/sigma_min) / log(sigma_max/sigma_min),
sigma_max = 80, sigma_min = 0.002, p_0 = 1), parametrised by softmax gaps and searched with
Nelder-Mead from several starts (see starts()). The proxies are random mixtures in [-1, 1]^dim
(dims 32-128, 6-16 modes, widths 0.03-0.25) drawn from seeds the benchmark never uses: the
schedule is fitted for data of that kind, and benchmarks/samplers.py reports how it carries over
to other dimensions.

    python benchmarks/fit_schedule.py --sampler unipc --steps 3 4 5 6 7 8 10 12 16
        # prints OPTIMIZED_STEPS entries; paste them into diffusionforge/core/optimized_steps.py
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.optimize import minimize

from diffusionforge.core.gmm import GaussianMixture, exact_flow_map
from diffusionforge.core.optimized_steps import OPTIMIZED_STEPS
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import karras, optimized

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
PROXIES = [  # mixtures like the benchmark's family, on seeds it never uses
    dict(dim=32, modes=8, std_range=(0.05, 0.2), seed=21),
    dict(dim=48, modes=12, std_range=(0.03, 0.15), seed=22),
    dict(dim=64, modes=6, std_range=(0.05, 0.25), seed=23),
    dict(dim=64, modes=16, std_range=(0.05, 0.2), seed=24),
    dict(dim=96, modes=10, std_range=(0.04, 0.2), seed=25),
    dict(dim=128, modes=14, std_range=(0.05, 0.2), seed=26),
]


def make_problems(samples: int):
    out = []
    for i, spec in enumerate(PROXIES):
        gmm = GaussianMixture.random(**spec)
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(samples, gmm.dim, generator=g, dtype=torch.float64) * SIGMA_MAX
        out.append((gmm, x, exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=800)))
    return out


def positions(theta: np.ndarray) -> np.ndarray:
    """n gaps summing to 1 -> decreasing positions p_0 = 1, ..., p_{n-1} = last gap >= 0."""
    gaps = np.exp(theta - theta.max())
    gaps /= gaps.sum()
    return 1 - np.concatenate([[0.0], np.cumsum(gaps[:-1])])


def to_sigmas(p: np.ndarray) -> torch.Tensor:
    lo, hi = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
    s = torch.exp(lo + torch.tensor(p, dtype=torch.float64) * (hi - lo))
    return torch.cat([s, s.new_zeros(1)])


def objective(p: np.ndarray, sampler, problems) -> float:
    sig = to_sigmas(p)
    errs = [
        (sampler(g.denoise, x, sig) - ref).pow(2).mean().sqrt().item() for g, x, ref in problems
    ]
    return float(np.mean(np.log(errs)))


def _theta(sigmas: np.ndarray) -> np.ndarray:
    p = np.log(sigmas / SIGMA_MIN) / math.log(SIGMA_MAX / SIGMA_MIN)
    return np.log(np.maximum(np.concatenate([p[:-1] - p[1:], [max(p[-1], 1e-3)]]), 1e-3))


def starts(n: int) -> list[np.ndarray]:
    """Initial schedules: Karras, and geometric ramps from a first jump to sigma_1 down to a
    last level sigma_{n-1} (the objective has several basins; Karras alone finds a poor one)."""
    out = [_theta(karras(n, SIGMA_MIN, SIGMA_MAX).numpy()[:-1])]
    if n in OPTIMIZED_STEPS:  # refining the current fit (e.g. with more proxy samples)
        out.append(_theta(optimized(n, SIGMA_MIN, SIGMA_MAX).numpy()[:-1]))
    ramps = [(10.0, 0.5), (4.0, 0.1), (20.0, 0.05)] if n < 10 else [(6.0, 0.05), (10.0, 0.02)]
    for hi, lo in ramps:
        if n >= 2:
            rest = np.geomspace(hi, lo, n - 1)
            out.append(_theta(np.concatenate([[SIGMA_MAX], rest])))
    return out


def fit(n: int, sampler_name: str, problems, maxfev: int) -> tuple[np.ndarray, float, float]:
    """Nelder-Mead from each start; returns the best positions, the Karras and best objective."""
    sampler = SAMPLERS[sampler_name]
    f = lambda t: objective(positions(t), sampler, problems)  # noqa: E731
    inits = starts(n)
    base = f(inits[0])
    best = None
    for theta0 in inits:
        res = minimize(
            f,
            theta0,
            method="Nelder-Mead",
            options={"maxfev": maxfev, "adaptive": True, "xatol": 1e-4, "fatol": 1e-5},
        )
        if best is None or res.fun < best.fun:
            best = res
    return positions(best.x), base, best.fun


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8, 9, 10, 12, 16])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--maxfev", type=int, default=1200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    problems = make_problems(args.samples)
    for n in args.steps:
        t0 = time.time()
        p, base, best = fit(n, args.sampler, problems, args.maxfev)
        print(
            f"# n={n} {args.sampler}: mean log RMS {base:.3f} (karras) -> {best:.3f} "
            f"({time.time() - t0:.0f}s)"
        )
        print(f"    {n}: [{', '.join(f'{v:.4f}' for v in p)}],", flush=True)


if __name__ == "__main__":
    main()
