"""Heun's evaluations and its default schedule: the moons network and held-out mixtures.

    diffusionforge train --preset moons --run-dir runs/moons
    cd benchmarks && python heun_default.py ../runs/moons --nfe 15 16 32
    cd benchmarks && python heun_default.py --mixtures --nfe 8 16 32

EDM's Algorithm 1 (kept here as `heun_algorithm1`, what `heun` ran before) spends 2n - 1
evaluations on n steps, so an even budget leaves one unused, and its corrector on the jump down
from sigma_max adds (s / s' - 1) / 2 (D(s') - D(s)), large when s / s' is. core.samplers'
`heun` takes that first step with Euler (2n - 2 evaluations). Rows: sampler / schedule at each
budget, schedules for the step count each variant affords.

Moons: SW2 to 2000 fresh moons points of 2000 samples per noise seed (seeds 0-4; SW2 moves by
~0.015 between seeds, the network's own ODE included), and the RMS distance to the network's
own ODE solution from the same noise (UniPC, 500 Karras steps). Mixtures: RMS to the exact flow
map, 256 draws, seed 5, on fit_schedule_bar.py's validation mixtures.
"""

from __future__ import annotations

import argparse

import torch
from fit_schedule_bar import PROBLEMS, Reference  # same folder
from samplers import rms

from diffusionforge.core.sampler_utils import denoise_at, working
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras


def heun_algorithm1(denoise, x, sigmas, *, cond=None, generator=None, callback=None):
    """Karras et al. 2022, Algorithm 1: Heun on every step but the one to sigma = 0."""
    x, s = working(x), sigmas.tolist()
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        slope = (x - d) / s[i]
        x_next = x + (s[i + 1] - s[i]) * slope
        if s[i + 1] > 0:
            d2 = denoise_at(denoise, x_next, s[i + 1], cond)
            x_next = x + (s[i + 1] - s[i]) * (slope + (x_next - d2) / s[i + 1]) / 2
        x = x_next
    return x


# (label, sampler function, steps for an NFE, schedule)
VARIANTS = [
    ("alg1/optimized", heun_algorithm1, lambda n: (n + 1) // 2, "optimized"),
    ("alg1/karras", heun_algorithm1, lambda n: (n + 1) // 2, "karras"),
    ("alg1/vp_trailing", heun_algorithm1, lambda n: (n + 1) // 2, "vp_trailing"),
    ("heun/optimized", SAMPLERS["heun"], SAMPLER_INFO["heun"].steps_for, "optimized"),
    ("heun/karras", SAMPLERS["heun"], SAMPLER_INFO["heun"].steps_for, "karras"),
    ("heun/vp_trailing", SAMPLERS["heun"], SAMPLER_INFO["heun"].steps_for, "vp_trailing"),
    ("unipc/optimized", SAMPLERS["unipc"], SAMPLER_INFO["unipc"].steps_for, "optimized"),
]


def counted(denoise):
    calls = [0]

    def fn(x, sigma, cond=None):
        calls[0] += 1
        return denoise(x, sigma, cond)

    return fn, calls


def moons(run: str, nfes: list[int], seeds: list[int], n: int) -> None:
    from diffusionforge.data.toy import make_toy
    from diffusionforge.eval.swd import sliced_wasserstein
    from diffusionforge.pipelines.pipeline import load_pipeline

    pipe = load_pipeline(run)
    lo, hi = pipe.formulation.sigma_min, pipe.formulation.sigma_max
    den, calls = counted(torch.no_grad()(pipe.formulation.precondition(pipe.net)))
    fresh = make_toy("moons", n, seed=12345)
    print(f"data vs data: {sliced_wasserstein(make_toy('moons', n, seed=54321), fresh):.4f}")
    noise = {s: torch.randn(n, 2, generator=torch.Generator().manual_seed(s)) * hi for s in seeds}
    ode = {s: SAMPLERS["unipc"](den, noise[s], karras(500, lo, hi)) for s in seeds}
    sw = [sliced_wasserstein(ode[s], fresh) for s in seeds]
    print(f"own ODE (UniPC, 500 Karras steps): SW2 {_row(sw)}")
    print("| NFE | sampler / schedule | evaluations | SW2 per seed | mean SW2 | RMS to own ODE |")
    print("|---|---|---|---|---|---|")
    for nfe in nfes:
        for label, fn, steps, sched in VARIANTS:
            sig, sws, rs = SCHEDULES[sched](steps(nfe), lo, hi), [], []
            for s in seeds:
                calls[0] = 0
                out = fn(den, noise[s], sig)
                sws.append(sliced_wasserstein(out, fresh))
                rs.append(rms(out.double(), ode[s].double()))
            cells = f"{calls[0]} | {_row(sws)} | {sum(sws) / len(sws):.4f}"
            print(f"| {nfe} | {label} | {cells} | {sum(rs) / len(rs):.4f} |", flush=True)


def mixtures(nfes: list[int], problems: list[str], samples: int) -> None:
    print("| problem | NFE | " + " | ".join(v[0] for v in VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 2) + "|")
    for name in problems:
        gmm, g = PROBLEMS[name](), torch.Generator().manual_seed(5)
        x = torch.randn(samples, gmm.dim, generator=g, dtype=torch.float64) * 80.0
        ref = Reference(gmm)(x, 80.0)
        for nfe in nfes:
            errs = [
                rms(fn(gmm.denoise, x, SCHEDULES[sched](steps(nfe), 0.002, 80.0)), ref)
                for _, fn, steps, sched in VARIANTS
            ]
            best = min(errs)
            cells = [f"**{e:.4f}**" if e == best else f"{e:.4f}" for e in errs]
            print(f"| {name} | {nfe} | " + " | ".join(cells) + " |", flush=True)


def _row(values: list[float]) -> str:
    return " ".join(f"{v:.4f}" for v in values) if values else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?", help="a moons run folder (omit with --mixtures)")
    ap.add_argument("--mixtures", action="store_true", help="the validation mixtures instead")
    ap.add_argument("--nfe", type=int, nargs="+", default=[16])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument(
        "--problems", nargs="+", default=["ring2", "gmm8x6", "broad32x3", "sharp128x16"]
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.mixtures:
        mixtures(args.nfe, args.problems, 256)
    elif args.run:
        moons(args.run, args.nfe, args.seeds, args.n)
    else:
        ap.error("give a moons run folder or --mixtures")


if __name__ == "__main__":
    main()
