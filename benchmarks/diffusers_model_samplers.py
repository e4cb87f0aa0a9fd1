"""Our samplers against diffusers' schedulers on a real imported model (a diffusers folder).

The model: the class-conditional UNet2DModel that benchmarks/digits_vs_peers.py trains on the
8x8 digits with diffusers' own recipe (DDPMScheduler, 1000 linear betas, epsilon), saved as a
DDPMPipeline folder:

    python benchmarks/digits_vs_peers.py --export-diffusers runs/digits-diffusers --budget 300
    python benchmarks/diffusers_model_samplers.py runs/digits-diffusers

It is loaded through diffusionforge's importer (pipelines/diffusers_model.py). Every sampler in
SAMPLERS (on the optimized, karras and vp_trailing schedules) and the diffusers schedulers of
benchmarks/samplers.py's grid (DDIM, DPM-Solver++ 2M/3M, UniPC, DEIS, Euler, Heun, LMS, with
their sigma variants: default, Karras, exponential, lu; the best configuration per NFE) run at
NFE 4, 5, 6, 8, 10, 16, 32 from the same standard-normal noise, scaled the way each method
starts. To fit a shared 2-core machine the grid keeps "trailing" spacing only ("leading" starts
below sigma_max, t = 750 of 999 at 4 steps, and "trailing" is its fix, Lin et al. 2024;
"linspace" is left out for time only) and the midpoint / bh2 solver types. Error: RMS
over samples and pixels between the result and a 500-step solution of the model's own
probability-flow ODE from the same starting point (classical RK4 in log sigma down to the
model's smallest level, then one denoising step, as every sampler ends; its own error, 500 vs
250 steps, is printed). x0 clipping is off for all (the ODE is the network's). Stochastic
samplers are listed, but their distance to the ODE solution is not an accuracy.

Sample quality (`--quality`): FID/KID in the features of the digits classifier that
`diffusionforge eval` uses, and the fraction the classifier reads as the requested digit, for
our recommended pair and diffusers' best configuration at NFE 5, 10, 16, n samples each.

Per-model schedules (`--fit SECONDS`, issue 16): core.fit_schedule fits the recommended
sampler's levels to this model's own (unclipped) ODE per NFE within SECONDS of CPU time (its
own noise, seed 123, labels cycling 0-9, batch 64), with its held-out acceptance check; the
table gains a row "ours: recommended + fitted" scored on the same test draws as every other
row, and `--quality` scores it too. `--only-recommended` skips the rows of every other
sampler/schedule pair (CPU time on a shared machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from samplers import diffusers_grid, rms  # noqa: E402

from diffusionforge.core.fit_schedule import fit_schedule  # noqa: E402
from diffusionforge.core.gmm import flow_between  # noqa: E402
from diffusionforge.core.plan import recommended  # noqa: E402
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS  # noqa: E402
from diffusionforge.core.schedules import SCHEDULES  # noqa: E402
from diffusionforge.pipelines.diffusers_model import load  # noqa: E402

NFES = [4, 5, 6, 8, 10, 16, 32]
STOCHASTIC = {name for name, info in SAMPLER_INFO.items() if info.stochastic}


class Bench:
    def __init__(self, folder: str, n: int, seed: int) -> None:
        model = load(folder)
        proc = model.process
        cfg = dict(proc.config or {}, clip_sample=False)  # the network's own ODE
        model.process = dataclasses.replace(proc, config=cfg)
        self.model, self.table = model, proc.table
        self.labels = torch.arange(n) % max(model.num_classes, 1) if model.num_classes else None
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn((n, *model.shape), generator=g, dtype=torch.float64)
        self.denoise = model.denoiser
        self.refs: dict[float, torch.Tensor] = {}
        self.evals = 0

    def d(self, x, sigma, cond=None):
        self.evals += 1
        return self.denoise(x, sigma, self.labels)

    def reference(self, scale: float, sigma: float, steps: int = 500) -> torch.Tensor:
        """The ODE solution from x = scale * noise at sigma, one per starting point."""
        key = (round(scale, 6), round(sigma, 6), steps)
        if key not in self.refs:
            s_min = self.table.sigma_min
            y = flow_between(self.d, self.noise * scale, sigma, s_min, steps)
            self.refs[key] = self.d(y, torch.full((len(y),), s_min, dtype=y.dtype))
        return self.refs[key]

    def ours(self, sampler: str, schedule, nfe: int) -> float:
        """RMS to the reference of `sampler` on a named schedule or a sigma tensor."""
        steps = SAMPLER_INFO[sampler].steps_for(nfe)
        p = self.model.process
        if isinstance(schedule, str):
            sigmas = SCHEDULES[schedule](steps, p.sigma_min, p.sigma_max)
        else:
            sigmas = schedule
        s0 = float(sigmas[0])
        x = self.noise * p.init_scale(s0)
        g = [torch.Generator().manual_seed(i) for i in range(len(x))]
        out = SAMPLERS[sampler](self.d, x, sigmas, generator=g)
        return rms(out, self.reference(p.init_scale(s0), s0))

    def diffusers(self, cls, config, steps: int) -> tuple[float, torch.Tensor]:
        """diffusers' pipeline loop (set_timesteps, scale_model_input, unet, step)."""
        if cls.__name__ == "DDIMScheduler":
            config = {**config, "clip_sample": False}  # the network's own ODE, as for ours
        sched = cls(**config)
        sched.set_timesteps(steps)
        latents = (self.noise * float(sched.init_noise_sigma)).float()
        name = type(sched).__name__
        if hasattr(sched, "sigmas") and name != "DDIMScheduler":
            s0 = float(sched.sigmas[0])
        else:
            s0 = float(self.table.sigmas[int(sched.timesteps[0])])
        ve = name in ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
        scale = float(sched.init_noise_sigma) * (1.0 if ve else math.sqrt(1 + s0**2))
        net = self.model.net
        with torch.no_grad():
            for t in sched.timesteps:
                inp = sched.scale_model_input(latents, t)
                eps = net(inp, t, class_labels=self.labels).sample
                self.evals += 1
                latents = sched.step(eps, t, latents).prev_sample
        return rms(latents.double(), self.reference(scale, s0)), latents


def best_diffusers(b: Bench, nfes: list[int]) -> dict[int, tuple[float, str, object, dict, int]]:
    best: dict[int, tuple[float, str, object, dict, int]] = {}
    base_keys = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end")
    for label, cls, cfg, nfe_of in diffusers_grid():
        if cfg.get("timestep_spacing") != "trailing" or cfg.get("solver_type") in ("heun", "bh1"):
            continue  # see the docstring: trailing spacing, midpoint / bh2 solvers
        for nfe in nfes:
            steps = max(s for s in range(1, nfe + 2) if nfe_of(s) <= nfe)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    err, _ = b.diffusers(cls, cfg, steps)
            except Exception:  # a configuration diffusers rejects at this step count
                continue
            if math.isfinite(err) and (nfe not in best or err < best[nfe][0]):
                short = {k: v for k, v in cfg.items() if k not in base_keys}
                best[nfe] = (err, f"{label} {short}", cls, cfg, steps)
    return best


def fit(b: Bench, nfe: int, seconds: float) -> tuple[torch.Tensor, dict]:
    """The recommended sampler's levels fitted to the model's unclipped ODE (the one the
    table measures), and the fit's held-out check report."""
    p = b.model.process
    labels = torch.arange(64) % 10 if b.model.num_classes else None
    reports: list[dict] = []
    c0 = time.process_time()
    with torch.no_grad():
        sig = fit_schedule(
            b.denoise, (64, *b.model.shape), nfe, cond=labels, seconds=seconds,
            generator=torch.Generator().manual_seed(123), sigma_min=p.sigma_min,
            sigma_max=p.sigma_max, callback=reports.append,
        )  # fmt: skip
    check = next((r for r in reports if r["phase"] == "check"), {})
    teacher = max((r.get("trajectories", 0) for r in reports if r["phase"] == "teacher"), default=0)
    check = dict(check, cpu=time.process_time() - c0, teacher_draws=teacher)
    return sig, check


def quality(b: Bench, best, n: int, nfes=(5, 10, 16), fitted=None) -> None:
    from diffusionforge.data.builtin import load_digits
    from diffusionforge.eval import extract_features, fid, kid
    from diffusionforge.pipelines.evaluate import extractor_for

    real = load_digits()
    clf = extractor_for(real.images, real.labels, None, print)
    ref_feat = extract_features(clf, real.images).double().numpy()
    big = Bench.__new__(Bench)
    big.__dict__.update(b.__dict__)
    big.labels = torch.arange(n) % 10
    big.noise = torch.randn((n, *b.model.shape), generator=torch.Generator().manual_seed(99))
    big.noise = big.noise.double()

    def score(x: torch.Tensor) -> str:
        x = x.float().clamp(-1, 1)
        feats = extract_features(clf, x).double().numpy()
        acc = (clf.predict(x) == big.labels).double().mean().item()
        return f"{fid(ref_feat, feats):.3f} | {kid(ref_feat, feats)[0]:.4f} | {acc:.3f}"

    print(f"\n| method ({n} samples) | NFE | FID (classifier) | KID | as requested |")
    print("|---|---|---|---|---|")
    for nfe in nfes:
        sampler, schedule = recommended(nfe)
        p = b.model.process
        sig = SCHEDULES[schedule](SAMPLER_INFO[sampler].steps_for(nfe), p.sigma_min, p.sigma_max)
        x = big.noise * p.init_scale(float(sig[0]))
        out = SAMPLERS[sampler](big.d, x, sig)
        print(f"| ours: {sampler} + {schedule} | {nfe} | {score(out)} |")
        if fitted and nfe in fitted:
            sig = fitted[nfe]
            out = SAMPLERS[sampler](big.d, big.noise * p.init_scale(float(sig[0])), sig)
            print(f"| ours: {sampler} + fitted | {nfe} | {score(out)} |")
        _, label, cls, cfg, steps = best[nfe]
        big.refs = {}  # no reference needed: only its samples
        big.reference = lambda scale, s: big.noise * scale  # type: ignore[method-assign]
        _, lat = Bench.diffusers(big, cls, cfg, steps)
        print(f"| diffusers best: {label} | {nfe} | {score(lat)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a diffusers DDPMPipeline folder (see the docstring)")
    p.add_argument("--n", type=int, default=16, help="samples for the RMS table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=0, help="also score N samples (e.g. 1000)")
    p.add_argument("--nfes", default=",".join(map(str, NFES)), help="a quick subset, e.g. 5,10")
    p.add_argument("--fit", type=float, default=0, help="fit per NFE in this many CPU-s")
    p.add_argument("--only-recommended", action="store_true", help="skip the other pairs")
    args = p.parse_args()
    NFES[:] = [int(v) for v in args.nfes.split(",")]
    torch.set_num_threads(1)
    c0 = time.process_time()
    b = Bench(args.folder, args.n, args.seed)
    s_max = b.model.process.sigma_max
    scale = b.model.process.init_scale(s_max)
    coarse = rms(b.reference(scale, s_max), b.reference(scale, s_max, steps=250))
    print(f"reference: 500 vs 250 RK4 steps differ by RMS {coarse:.1e}")
    rows: dict[str, list[float]] = {}
    for sampler in () if args.only_recommended else SAMPLERS:
        for schedule in ("optimized", "karras", "vp_trailing"):
            tag = " (stochastic)" if sampler in STOCHASTIC else ""
            rows[f"ours: {sampler} + {schedule}{tag}"] = [
                b.ours(sampler, schedule, nfe) for nfe in NFES
            ]
    rows["**ours: recommended**"] = [b.ours(*recommended(nfe), nfe) for nfe in NFES]
    fitted, checks = {}, {}
    if args.fit:
        for nfe in NFES:
            fitted[nfe], checks[nfe] = fit(b, nfe, args.fit)
        rows[f"**ours: recommended + fitted ({args.fit:g} CPU-s)**"] = [
            b.ours(recommended(nfe)[0], fitted[nfe], nfe) for nfe in NFES
        ]
    best = best_diffusers(b, NFES)
    rows["**diffusers: best of all**"] = [best[n][0] for n in NFES]
    ours, theirs = rows["**ours: recommended**"], rows["**diffusers: best of all**"]
    rows["**ratio recommended / diffusers best**"] = [
        a / d for a, d in zip(ours, theirs, strict=True)
    ]
    if args.fit:
        mine = rows[f"**ours: recommended + fitted ({args.fit:g} CPU-s)**"]
        rows["**ratio fitted / diffusers best**"] = [
            a / d for a, d in zip(mine, theirs, strict=True)
        ]
    print(f"\n| method | {' | '.join(f'NFE {n}' for n in NFES)} |")
    print("|---|" + "---|" * len(NFES))
    for name, vals in rows.items():
        print(f"| {name} | {' | '.join(f'{v:.4f}' for v in vals)} |")
    print("\nrecommended pair and diffusers' best configuration per NFE:")
    for nfe in NFES:
        print(f"- NFE {nfe}: ours {'+'.join(recommended(nfe))}; diffusers {best[nfe][1]}")
    for nfe, c in checks.items():
        sig = " ".join(f"{v:.4g}" for v in fitted[nfe])
        verdict = {True: "kept", False: "not kept (default returned)"}.get(
            c.get("kept"), "budget too short to fit (default returned)"
        )
        print(
            f"- fit NFE {nfe}: {c['cpu']:.1f} CPU-s, {c['teacher_draws']} teacher draws; held-out "
            f"({c.get('trajectories')} draws) fitted {c.get('rms_fitted', float('nan')):.4f} vs "
            f"default {c.get('rms_default', float('nan')):.4f}: {verdict}; sigmas {sig}"
        )
    if args.quality:
        quality(b, best, args.quality, nfes=tuple(NFES), fitted=fitted)
    print(f"\n{b.evals} network evaluations, {time.process_time() - c0:.0f} CPU-s")


if __name__ == "__main__":
    main()
