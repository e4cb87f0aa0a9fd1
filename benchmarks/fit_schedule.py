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
    python benchmarks/fit_schedule.py --steps 16 --samples 512 --risk 32768 --start "[...]"
        # the objective over 32768 draws per proxy, of which only those near a basin boundary
        # and 512 others are integrated (make_problems); Nelder-Mead from the given positions
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.optimize import minimize

from diffusionforge.core.gmm import GaussianMixture, exact_flow_map
from diffusionforge.core.optimized_steps import OPTIMIZED_STEPS
from diffusionforge.core.samplers import SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras, optimized

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
PROXIES = [  # mixtures like the benchmark's family, on seeds it never uses
    dict(dim=32, modes=8, std_range=(0.05, 0.2), seed=21),
    dict(dim=48, modes=12, std_range=(0.03, 0.15), seed=22),
    dict(dim=64, modes=6, std_range=(0.05, 0.25), seed=23),
    dict(dim=64, modes=16, std_range=(0.05, 0.2), seed=24),
    dict(dim=96, modes=10, std_range=(0.04, 0.2), seed=25),
    dict(dim=128, modes=14, std_range=(0.05, 0.2), seed=26),
]


def make_problems(samples: int, risk: int = 0, steps: int = 16):
    """Per proxy: (mixture, starting points, exact maps, per-sample weights).

    With risk = N > 0 the objective estimates the RMS over N starting points at a fraction of
    their cost (importance splitting): N draws are screened with cheap samplers (SCREEN), every
    draw that any of them sends to another mode than a 100-step reference is kept with weight 1
    (the draws near a basin boundary, where a schedule can cause a "flip" costing ~0.65 RMS),
    and `samples` of the other draws stand for all the rest with weight (N - kept) / samples.
    At 2048 plain samples a 16-step schedule flips 0-3 times per proxy, so the fit chases which
    few samples flip; with N = 32768 it sees ~10x as many flips for ~the same cost.
    """
    out = []
    for i, spec in enumerate(PROXIES):
        gmm = GaussianMixture.random(**spec)
        g = torch.Generator().manual_seed(100 + i)
        n = max(risk, samples)
        x = torch.randn(n, gmm.dim, generator=g, dtype=torch.float64) * SIGMA_MAX
        w = torch.ones(n, dtype=torch.float64)
        if risk:
            near = screen(gmm, x, steps)
            rest = (~near).nonzero().flatten()[:samples]
            x = torch.cat([x[near], x[rest]])
            w = torch.cat([w[near], w[rest] * (n - int(near.sum())) / len(rest)])
            print(f"# proxy {i}: {int(near.sum())} of {n} draws near a boundary", flush=True)
        out.append((gmm, x, exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=800), w / n))
    return out


# Cheap samplers whose flips mark the draws near a basin boundary (steps, sampler, schedule).
SCREEN = [
    (4, "unipc", "optimized"),
    (5, "unipc", "optimized"),
    (5, "unipc", "log_uniform"),
    (6, "unipc", "optimized"),
    (6, "dpmpp_3m", "optimized"),
    (8, "unipc", "optimized"),
    (10, "unipc", "optimized"),
    (12, "unipc", "optimized"),
    (12, "dpmpp_3m", "karras"),
    (12, "ipndm", "karras"),
    (16, "unipc", "karras"),
    (16, "dpmpp_3m", "optimized"),
    (16, "ipndm", "optimized"),
]


def screen(gmm: GaussianMixture, x: torch.Tensor, steps: int) -> torch.Tensor:
    """(N,) bool: draws that some SCREEN sampler with steps/2 to 2 steps ends in another mode
    than the exact map (coarser screens would keep ~15% of the draws, making the fit slow)."""
    mode = torch.cdist(exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=100), gmm.means).argmin(1)
    near = torch.zeros(len(x), dtype=torch.bool)
    for n, name, sched in SCREEN:
        if not steps / 2 <= n <= 2 * steps:
            continue
        out = SAMPLERS[name](gmm.denoise, x, SCHEDULES[sched](n, SIGMA_MIN, SIGMA_MAX))
        near |= torch.cdist(out, gmm.means).argmin(1) != mode
    return near


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
    """Mean over proxies of log RMS (weighted over samples, see make_problems)."""
    sig = to_sigmas(p)
    errs = [
        ((sampler(g.denoise, x, sig) - ref).pow(2).mean(1) * w).sum().sqrt().item()
        for g, x, ref, w in problems
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


def fit(
    n: int, sampler_name: str, problems, maxfev: int, start: list[float] | None = None
) -> tuple[np.ndarray, float, float]:
    """Nelder-Mead from each start (or only from `start` positions); returns the best
    positions, the Karras and best objective."""
    sampler = SAMPLERS[sampler_name]
    f = lambda t: objective(positions(t), sampler, problems)  # noqa: E731
    inits = starts(n)
    base = f(inits[0])
    if start is not None:
        inits = [_theta(to_sigmas(np.array(start)).numpy()[:-1])]
        print(f"# n={n}: start {f(inits[0]):.3f}", flush=True)
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
    ap.add_argument(
        "--risk", type=int, default=0, help="screen this many draws per proxy (make_problems)"
    )
    ap.add_argument("--start", help="JSON list of positions to start from (one --steps only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    problems = None if args.risk else make_problems(args.samples)
    for n in args.steps:
        t0 = time.time()
        probs = problems or make_problems(args.samples, args.risk, n)
        start = json.loads(args.start) if args.start else None
        p, base, best = fit(n, args.sampler, probs, args.maxfev, start)
        print(
            f"# n={n} {args.sampler}: mean log RMS {base:.3f} (karras) -> {best:.3f} "
            f"({time.time() - t0:.0f}s)"
        )
        print(f"    {n}: [{', '.join(f'{v:.4f}' for v in p)}],", flush=True)


if __name__ == "__main__":
    main()
