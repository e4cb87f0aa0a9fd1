"""Sampler accuracy on analytic Gaussian mixtures: ours vs diffusers' schedulers, side by side.

Every method starts from the same standard-normal noise, scaled the way that method starts, and
is scored by the RMS error (over samples and dimensions) between its output and the exact
probability-flow map of its own starting point (RK4 with 500 steps in log sigma, float64;
its own error is ~1e-7). The denoiser is the exact E[x0 | x] of the mixture, so the error is the
sampler's alone.

diffusers runs exactly as its pipelines do (set_timesteps, scale_model_input, step), driving an
ideal eps-prediction model of a DDPM trained with 1000 linear betas: the model reads the
timestep it is given and denoises at that timestep's noise level. Each diffusers scheduler gets
its best configuration per NFE from a grid (timestep spacing, Karras/exponential/lu sigmas,
solver order and type). Run:

    python benchmarks/samplers.py                 # full table (about 10 minutes on 2 cores)
    python benchmarks/samplers.py --quick         # headline problem only
    python benchmarks/samplers.py --quick --flips # where the recommended pair's error comes from
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
import warnings

import torch

from diffusionforge.core.denoiser import DiscreteTimesteps, linear_betas
from diffusionforge.core.gmm import GaussianMixture, exact_flow_map
from diffusionforge.core.sample import RECOMMENDED, recommended
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

NFES = [4, 5, 6, 8, 10, 16, 32]
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0

# Benchmark problems (the fitted schedule never saw these seeds; see fit_schedule.py).
PROBLEMS = {
    "gmm64x10": dict(dim=64, modes=10, std_range=(0.05, 0.2), seed=1001),
    "gmm2x8": dict(dim=2, modes=8, std_range=(0.02, 0.1), seed=1002),
    "gmm16x4": dict(dim=16, modes=4, std_range=(0.1, 0.3), seed=1003),
    "gmm256x20": dict(dim=256, modes=20, std_range=(0.05, 0.15), seed=1004),
}


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


class Reference:
    """Exact flow maps, cached by starting point."""

    def __init__(self, gmm: GaussianMixture, steps: int = 500):
        self.gmm, self.steps, self.cache = gmm, steps, {}

    def __call__(self, x_start: torch.Tensor, sigma_start: float) -> torch.Tensor:
        key = (round(sigma_start, 9), round(float(x_start[0, 0]), 9))
        if key not in self.cache:
            self.cache[key] = exact_flow_map(
                self.gmm.denoise, x_start, sigma_start, steps=self.steps
            )
        return self.cache[key]


def run_ours(gmm, noise, ref, sampler: str, schedule: str, nfe: int) -> float | None:
    info = SAMPLER_INFO[sampler]
    steps = info.steps_for(nfe)
    if info.nfe(steps) > nfe or steps < 1:
        return None
    sigmas = SCHEDULES[schedule](steps, SIGMA_MIN, SIGMA_MAX)
    start = float(sigmas[0])  # `leading` starts below SIGMA_MAX at few steps
    x = noise * start
    kw = {"generator": torch.Generator().manual_seed(0)}
    out = SAMPLERS[sampler](gmm.denoise, x, sigmas, **kw)
    return rms(out, ref(x, start))


# --- diffusers --------------------------------------------------------------------------


def diffusers_grid():
    """(label, scheduler class, config, nfe(steps)) for every configuration tried."""
    import diffusers as d

    base = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    spacings = ["leading", "linspace", "trailing"]
    sig_kinds = [{}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}]
    one = lambda n: n  # noqa: E731
    for sp in spacings:
        yield (
            "DDIM",
            d.DDIMScheduler,
            {**base, "timestep_spacing": sp, "set_alpha_to_one": True},
            one,
        )
    for sp, sk, order, st in itertools.product(
        spacings, sig_kinds + [{"use_lu_lambdas": True}], [2, 3], ["midpoint", "heun"]
    ):
        cfg = {
            **base,
            "timestep_spacing": sp,
            **sk,
            "solver_order": order,
            "solver_type": st,
            "algorithm_type": "dpmsolver++",
            "final_sigmas_type": "zero",
        }
        yield f"DPM-Solver++ {order}M", d.DPMSolverMultistepScheduler, cfg, one
    for sp, sk, order, st in itertools.product(spacings, sig_kinds, [2, 3], ["bh1", "bh2"]):
        cfg = {
            **base,
            "timestep_spacing": sp,
            **sk,
            "solver_order": order,
            "solver_type": st,
            "final_sigmas_type": "zero",
        }
        yield "UniPC", d.UniPCMultistepScheduler, cfg, one
    for sp, sk, order in itertools.product(spacings, sig_kinds, [2, 3]):
        yield (
            "DEIS",
            d.DEISMultistepScheduler,
            {**base, "timestep_spacing": sp, **sk, "solver_order": order},
            one,
        )
    for sp, sk in itertools.product(spacings, sig_kinds):
        yield (
            "Euler",
            d.EulerDiscreteScheduler,
            {**base, "timestep_spacing": sp, **sk, "final_sigmas_type": "zero"},
            one,
        )
        yield (
            "Heun",
            d.HeunDiscreteScheduler,
            {**base, "timestep_spacing": sp, **sk},
            lambda n: 2 * n - 1,
        )
        yield "LMS", d.LMSDiscreteScheduler, {**base, "timestep_spacing": sp, **sk}, one


def run_diffusers(gmm, noise, ref, cls, config, steps: int) -> float:
    """One diffusers pipeline loop on the ideal DDPM model; returns RMS to the exact map."""
    table = DiscreteTimesteps(linear_betas())
    sched = cls(**config)
    sched.set_timesteps(steps)

    def eps_model(x_vp: torch.Tensor, t) -> torch.Tensor:
        # An ideal network: it sees the VP-scaled input and the timestep, nothing else.
        t = torch.as_tensor(t, dtype=torch.float64).reshape(1).expand(x_vp.shape[0])
        sigma = table.t_to_sigma(t)
        x = x_vp * (1 + sigma[:, None] ** 2).sqrt()
        return (x - gmm.denoise(x, sigma)) / sigma[:, None]

    latents = noise * sched.init_noise_sigma
    if hasattr(sched, "sigmas") and not isinstance(sched, _ddim_cls()):
        sigma_start = float(sched.sigmas[0])
    else:
        sigma_start = float(table.sigmas[int(sched.timesteps[0])])
    ve_scaled = type(sched).__name__ in (
        "EulerDiscreteScheduler",
        "HeunDiscreteScheduler",
        "LMSDiscreteScheduler",
    )
    x_start = latents if ve_scaled else latents * math.sqrt(1 + sigma_start**2)
    for t in sched.timesteps:
        inp = sched.scale_model_input(latents, t)
        latents = sched.step(eps_model(inp, t), t, latents).prev_sample
    return rms(latents, ref(x_start, sigma_start))


def _ddim_cls():
    import diffusers

    return diffusers.DDIMScheduler


def best_diffusers(gmm, noise, ref, nfes) -> dict[str, dict[int, tuple[float, str]]]:
    """Per scheduler family and NFE: the lowest error over the grid, with its configuration."""
    best: dict[str, dict[int, tuple[float, str]]] = {}
    for label, cls, cfg, nfe_of in diffusers_grid():
        for nfe in nfes:
            steps = max(s for s in range(1, nfe + 2) if nfe_of(s) <= nfe)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    err = run_diffusers(gmm, noise, ref, cls, cfg, steps)
            except Exception as e:  # a configuration diffusers rejects at this step count
                err, cfg = float("inf"), {**cfg, "error": str(e)[:60]}
            if not math.isfinite(err):
                continue
            cur = best.setdefault(label, {}).get(nfe)
            if cur is None or err < cur[0]:
                short = {
                    k: v
                    for k, v in cfg.items()
                    if k not in ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end")
                }
                best[label][nfe] = (err, str(short))
    return best


def flip_report(name: str, samples: int) -> None:
    """Where the recommended pair's error comes from: samples that end nearest another mode than
    the exact map's ("flips"), the median per-sample error, and the RMS without flips, for two
    noise seeds; plus a check of the reference itself (500 vs 2000 RK4 steps)."""
    gmm = GaussianMixture.random(**PROBLEMS[name])
    print(f"\n## {name}: error breakdown of the recommended pair, {samples} samples per seed")
    print("| NFE | seed | RMS | flips | median per-sample error | RMS without flips |")
    print("|---|---|---|---|---|---|")
    for seed in (7, 8):
        noise = torch.randn(
            samples, gmm.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        x = noise * SIGMA_MAX
        ref = exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=500)
        if seed == 7:
            fine = exact_flow_map(gmm.denoise, x, SIGMA_MAX, steps=2000)
            print(f"(reference: 500 vs 2000 RK4 steps differ by RMS {rms(ref, fine):.1e})")
        mode_ref = torch.cdist(ref, gmm.means).argmin(1)
        for nfe in NFES:
            sampler, schedule = recommended(nfe)
            steps = SAMPLER_INFO[sampler].steps_for(nfe)
            sig = SCHEDULES[schedule](steps, SIGMA_MIN, SIGMA_MAX)
            start = float(sig[0])  # `leading` starts below SIGMA_MAX at few steps
            out = SAMPLERS[sampler](gmm.denoise, noise * start, sig)
            if start != SIGMA_MAX:  # the exact map from that start (the mode reference too)
                ref_n = exact_flow_map(gmm.denoise, noise * start, start, steps=500)
                mode_n = torch.cdist(ref_n, gmm.means).argmin(1)
            else:
                ref_n, mode_n = ref, mode_ref
            per = (out - ref_n).pow(2).mean(1).sqrt()
            flips = torch.cdist(out, gmm.means).argmin(1) != mode_n
            kept = per[~flips].pow(2).mean().sqrt()
            print(
                f"| {nfe} | {seed} | {rms(out, ref_n):.4f} | {int(flips.sum())} | "
                f"{per.median():.4f} | {kept:.4f} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="headline problem only")
    p.add_argument("--problems", nargs="+", choices=list(PROBLEMS), help="a subset of problems")
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument("--all-ours", action="store_true", help="every sampler x schedule pair")
    p.add_argument("--flips", action="store_true", help="error breakdown of the recommended pair")
    args = p.parse_args()
    torch.set_num_threads(1)  # two threads beside any other process slow tiny ops 10-100x
    problems = ["gmm64x10"] if args.quick else (args.problems or list(PROBLEMS))
    if args.flips:
        for name in problems:
            flip_report(name, args.samples)
        return
    print(f"# sampler benchmark, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}")
    for name in problems:
        gmm = GaussianMixture.random(**PROBLEMS[name])
        noise = torch.randn(
            args.samples, gmm.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64
        )
        ref = Reference(gmm)
        print(
            f"\n## {name} ({PROBLEMS[name]}) RMS error to the exact PF-ODE map, "
            f"{args.samples} samples"
        )
        print("| method | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
        print("|---|" + "---|" * len(NFES))
        rows = {}
        rec = [run_ours(gmm, noise, ref, *recommended(n), n) for n in NFES]
        rows[
            "**ours: recommended** ("
            + ", ".join(f"{n}:{'+'.join(recommended(n))}" for n in sorted(RECOMMENDED))
            + ")"
        ] = rec
        pairs = (
            itertools.product(SAMPLERS, SCHEDULES)
            if args.all_ours
            else [
                (s, "karras") for s in ["euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm"]
            ]
            + [("unipc", "log_uniform")]
            + [(s, "optimized") for s in ["dpmpp_2m", "dpmpp_3m", "unipc", "unipc_gaussian"]]
            + [("ipndm", "optimized")]
        )
        for s, sch in pairs:
            if SAMPLER_INFO[s].stochastic:
                continue
            rows[f"ours: {s} + {sch}"] = [run_ours(gmm, noise, ref, s, sch, n) for n in NFES]
        best_d = {} if args.no_diffusers else best_diffusers(gmm, noise, ref, NFES)
        for label, per in best_d.items():
            rows[f"diffusers: {label} (best config)"] = [per.get(n, (None,))[0] for n in NFES]
        if best_d:
            overall = [
                min((per[n][0] for per in best_d.values() if n in per), default=None) for n in NFES
            ]
            rows["**diffusers: best of all**"] = overall
            rows["**ratio recommended / diffusers best**"] = [
                (a / b if a is not None and b else None) for a, b in zip(rec, overall, strict=True)
            ]
        for label, vals in rows.items():
            cells = " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
            print(f"| {label} | {cells} |")
        if best_d:
            print("\nbest diffusers configuration per NFE:")
            for n in NFES:
                lab, (err, cfg) = min(
                    ((k, per[n]) for k, per in best_d.items() if n in per), key=lambda kv: kv[1][0]
                )
                print(f"  NFE {n}: {lab} {err:.4f} {cfg}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
