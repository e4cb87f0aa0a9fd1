"""Per-model schedules on the bundled networks: fitted vs default vs diffusers' best, as the RMS
distance of each method's output to a 500-step solution of the same network's PF-ODE from that
method's own starting point (UniPC, 500 Karras steps: a trained network has no exact map).

    python benchmarks/fitted_on_model.py --checkpoint digits --nfe 5 8 10 16 --seconds 60

Test draws: --samples draws from seed 0, labels cycling through the classes (guidance 1); the
fit draws its own noise (seed 123) with the same labels. diffusers runs as in
benchmarks/samplers.py (an ideal eps-model of a 1000-step linear-beta DDPM reading the network's
denoiser at each timestep's sigma) over a reduced grid: UniPC (bh2, order 2/3), DPM-Solver++ 3M
and DEIS 3 with leading/trailing spacing and plain/Karras/exponential sigmas (the families and
spacings that won every mixture of fit_schedule_bar.py). --positions-json writes nothing; the
fitted sigmas are printed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import warnings

import torch
from samplers import run_diffusers  # same folder

from diffusionforge.core.fit_schedule import fit_schedule
from diffusionforge.core.guidance import cfg as guided
from diffusionforge.core.sample import recommended
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras
from diffusionforge.pipelines.pipeline import load_pipeline


class Bound:
    """The network's denoiser with the labels bound, on flat (B, D) rows: what run_diffusers
    calls as gmm.denoise (its eps-model broadcasts sigma[:, None])."""

    def __init__(self, denoise, labels, shape):
        self.fn, self.labels, self.shape = denoise, labels, tuple(shape)

    def denoise(self, x, sigma, cond=None):
        img = x.float().reshape(x.shape[0], *self.shape)
        return self.fn(img, sigma.float(), self.labels).reshape(x.shape[0], -1).to(x.dtype)


def reduced_grid():
    import diffusers as d

    base = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    kinds = [{}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}]
    for sp, sk in itertools.product(["leading", "trailing"], kinds):
        c = {**base, "timestep_spacing": sp, **sk}
        for order in (2, 3):
            cfg = {**c, "solver_order": order, "solver_type": "bh2", "final_sigmas_type": "zero"}
            yield f"UniPC {order}", d.UniPCMultistepScheduler, cfg
        yield (
            "DPM-Solver++ 3M",
            d.DPMSolverMultistepScheduler,
            {**c, "solver_order": 3, "algorithm_type": "dpmsolver++", "final_sigmas_type": "zero"},
        )
        yield "DEIS 3", d.DEISMultistepScheduler, {**c, "solver_order": 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="digits")
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 16])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--fit-batch", type=int,
        help="draws per network call of the fit (default --samples; fewer on a large network "
        "so that one teacher batch fits the budget)",
    )  # fmt: skip
    ap.add_argument("--no-diffusers", action="store_true")
    ap.add_argument("--no-fit", action="store_true", help="default and diffusers only")
    ap.add_argument(
        "--fitted-from",
        help="score the kept schedules of this checkpoint's schedules.json (fit-schedule) "
        "instead of fitting here (e.g. runs/glyphs32-fitted)",
    )
    ap.add_argument("--guidance", type=float, default=1.0, help="CFG scale of every method")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = load_pipeline(args.checkpoint)
    form = pipe.formulation
    lo, hi = form.sigma_min, form.sigma_max
    labels = None
    if pipe.num_classes:
        labels = torch.arange(args.samples) % pipe.num_classes
    base = form.precondition(pipe.net.eval())
    fb = args.fit_batch or args.samples
    fit_labels = None if labels is None else labels[:fb]
    denoise, fit_denoise = base, base
    if labels is not None and args.guidance != 1.0:  # as fit-schedule and sample guide
        denoise = guided(base, args.guidance, torch.full_like(labels, pipe.num_classes))
        uncond = torch.full_like(fit_labels, pipe.num_classes)
        fit_denoise = guided(base, args.guidance, uncond)
    model = Bound(denoise, labels, pipe.shape)
    stored = {}
    if args.fitted_from:
        from diffusionforge.pipelines.fitted_schedules import read_entries

        entries = read_entries(load_pipeline(args.fitted_from).checkpoint)
        stored = {e["nfe"]: torch.tensor(e["sigmas"], dtype=torch.float64)
                  for e in entries if e.get("kept", True)}  # fmt: skip
    noise = torch.randn(args.samples, *pipe.shape, generator=torch.Generator().manual_seed(0))
    noise = noise.reshape(args.samples, -1)  # flat rows; the fit gets the image shape
    cache: dict = {}

    def ref(x_start: torch.Tensor, sigma_start: float) -> torch.Tensor:
        key = (round(sigma_start, 6), x_start.shape)
        if key not in cache:
            s = karras(500, lo, sigma_start)
            with torch.no_grad():
                cache[key] = SAMPLERS["unipc"](model.denoise, x_start.float(), s)
        return cache[key]

    x = noise * hi
    with torch.no_grad():
        r250 = SAMPLERS["unipc"](model.denoise, x, karras(250, lo, hi))
    print(f"# {args.checkpoint}, {args.samples} draws of {tuple(pipe.shape)}, sigma {lo}-{hi}, "
          f"{time.strftime('%Y-%m-%d %H:%M')} UTC; reference (UniPC 500 Karras steps) vs 250: "
          f"RMS {_rms(ref(x, hi), r250):.5f}")  # fmt: skip
    print("| NFE | default | fitted | diffusers best (reduced grid) | fitted/default | "
          "fitted/diffusers | fit CPU-s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for nfe in args.nfe:
        sampler, schedule = recommended(nfe)
        steps = SAMPLER_INFO[sampler].steps_for(nfe)
        with torch.no_grad():
            s_def = SCHEDULES[schedule](steps, lo, hi)  # `leading` may start below hi
            x0 = noise * float(s_def[0])
            e_def = _rms(SAMPLERS[sampler](model.denoise, x0, s_def), ref(x0, float(s_def[0])))
            c0 = time.process_time()
            sig = stored.get(nfe) if args.fitted_from else None
            last: dict = {}
            sig = sig if args.no_fit or args.fitted_from else fit_schedule(
                fit_denoise, (fb, *pipe.shape), nfe, seconds=args.seconds, cond=fit_labels,
                generator=torch.Generator().manual_seed(123), sigma_min=lo, sigma_max=hi,
                callback=last.update,
            )  # fmt: skip
            cpu = time.process_time() - c0
            xf = None if sig is None else noise * float(sig[0])  # a table's own first level
            e_fit = math.nan if sig is None else _rms(SAMPLERS[sampler](model.denoise, xf, sig),
                                                      ref(xf, float(sig[0])))  # fmt: skip
        best, best_cfg = math.inf, ""
        if not args.no_diffusers:
            for label, cls, cfg in reduced_grid():
                try:
                    with warnings.catch_warnings(), torch.no_grad():
                        warnings.simplefilter("ignore")
                        err = run_diffusers(model, noise.double(), ref, cls, cfg, nfe)
                except Exception:  # a configuration diffusers rejects at this step count
                    continue
                if err < best:
                    best, best_cfg = (
                        err,
                        f"{label} {cfg['timestep_spacing']} "
                        + " ".join(k for k in cfg if k.startswith("use_")),
                    )
        print(f"| {nfe} | {e_def:.4f} | {e_fit:.4f} | {best:.4f} ({best_cfg}) | "
              f"{e_fit / e_def:.2f} | {e_fit / best:.2f} | {cpu:.0f} |", flush=True)  # fmt: skip
        if sig is not None:
            print(f"    fitted sigmas: {[round(v, 4) for v in sig.tolist()]}", flush=True)
        if last.get("phase") == "check":
            print(f"    held-out check: fitted {last['rms_fitted']:.4f} vs default "
                  f"{last['rms_default']:.4f} on {last['trajectories']} draws, z {last['z']:.1f}, "
                  f"{'kept' if last['kept'] else 'not kept (the default is used)'}; "
                  f"{last['calls']} network calls, ended by the {last['ended_by']}",
                  flush=True)  # fmt: skip
        elif last:
            print(f"    the fit stopped before its check ({last.get('phase')})", flush=True)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


if __name__ == "__main__":
    main()
