"""A default schedule that generalises? Few parameters, fitted minimax on many random mixtures.

The recommended pair should never lose to diffusers' best scheduler on data it was not tuned on
(issue 16, second bar). Free per-level positions fitted on 8 mixtures overfit
(fit_default_schedule.py); here the schedule has three parameters per NFE and the training set
is 40 mixtures drawn at random (`draw_mixture`, seeds 5000-5039): dims log-uniform 2-1024, 2-32
modes, widths log-uniform 0.003-0.6 (up to 2.7x apart within a mixture), uneven weights, tiny
modes (weight 0.3-3%, a tenth of the narrowest width), rings and curves in a random plane or
3-D subspace. The family (`family_sigmas`): the first level is sigma_max, the others run from
position a down to position b (p = log(sigma / sigma_min) / log(sigma_max / sigma_min)) with a
power warp gamma: p_i = a - (a - b) ((i - 1) / (n - 2))^gamma; gamma 1 is log-uniform levels
below the first. Objective per (sampler, NFE): the maximum over the training mixtures of
log(ours / diffusers' best) (+ 0.05 x the mean), diffusers' best being the minimum over a
reduced grid (`reduced_grid`: the scheduler families and spacings that won fit_schedule_bar's
full grid) on the same 256 draws, scored against exact maps of 100 RK4 steps. Held out:
`validate` scores a candidate on fit_schedule_bar's PROBLEMS (their full-grid results at 1024
draws copied from that script's cache into CACHE/bar_diffusers_1024.json, else 256 draws) and
on 8 fresh random mixtures (seeds 9000+, full grid, 256 draws), all against 200-step maps;
`networks` compares it with today's pair on the bundled networks.

    python benchmarks/robust_default.py cache-train                  # diffusers on the 40
    python benchmarks/robust_default.py cache-heldout                # ... on the held-out set
    python benchmarks/robust_default.py fit --nfe 5 8 --samplers unipc_gaussian --seconds 100
    python benchmarks/robust_default.py validate --fitted FILE --samplers unipc_gaussian
    python benchmarks/robust_default.py networks --fitted FILE --samplers unipc_gaussian
    python benchmarks/robust_default.py endscan                      # the end level, oracle
    python benchmarks/robust_default.py rescore --fresh 16           # winners on other draws

Expensive results (diffusers' best per mixture and NFE, exact maps) are cached under
runs/robust_default/ (gitignored); `fit` writes its parameters to
runs/robust_default/fitted_<train>_<nfes>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time

import samplers  # same folder: the diffusers grid, the exact reference
import torch
from fit_schedule_bar import PROBLEMS, other_draws, ours, winner_error
from samplers import best_diffusers, rms

from diffusionforge.core.gmm import GaussianMixture
from diffusionforge.core.sample import recommended
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
LO, HI = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runs", "robust_default")
FULL_GRID = samplers.diffusers_grid


def draw_mixture(seed: int) -> tuple[str, GaussianMixture]:
    """A random mixture problem (name, mixture); every choice comes from `seed`."""
    g = torch.Generator().manual_seed(seed)

    def u(a: float = 0.0, b: float = 1.0) -> float:
        return a + (b - a) * float(torch.rand((), generator=g, dtype=torch.float64))

    def logu(a: float, b: float) -> float:
        return math.exp(u(math.log(a), math.log(b)))

    dim = max(2, round(logu(2, 1024)))
    modes = max(2, round(logu(2, 32)))
    kind = ["box", "box", "ring", "curve", "tiny"][int(u(0, 5))]
    width = logu(0.003, 0.6)
    stds = width * torch.exp(torch.rand(modes, generator=g, dtype=torch.float64) * u(0, 1.0))
    alpha = logu(0.3, 3.0)
    w = (-torch.log(torch.rand(modes, generator=g, dtype=torch.float64))) ** (1 / alpha)
    w = w / w.sum()
    if kind in ("ring", "curve"):
        sub = min(dim, 2 if kind == "ring" else 3)
        basis = torch.linalg.qr(torch.randn(dim, sub, generator=g, dtype=torch.float64))[0]
        t = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
        if kind == "ring":
            coords = torch.stack([t.cos(), t.sin()], 1)
        else:  # a trefoil-like curve through a 3-D subspace (or its 2-D shadow)
            coords = torch.stack(
                [t.cos() + 0.5 * (2 * t).cos(), t.sin() - 0.5 * (2 * t).sin(), 0.6 * (3 * t).sin()],
                1,
            )[:, :sub]
        means = coords @ basis.T * u(0.5, 1.5)
        if kind == "ring" and u() < 0.5:
            w = torch.full((modes,), 1 / modes, dtype=torch.float64)
    else:
        means = -1 + 2 * torch.rand(modes, dim, generator=g, dtype=torch.float64)
    if kind == "tiny":
        tiny = logu(0.003, 0.03)
        w = w * (1 - tiny) / w[:-1].sum()
        w[-1] = tiny
        stds[-1] = stds[:-1].min() / 10
    name = f"r{seed}-{kind}{dim}x{modes}w{width:.3f}"
    return name, GaussianMixture(means, stds, w)


def reduced_grid():
    """The diffusers configurations that won fit_schedule_bar's full grid, and their kin:
    UniPC bh2 / DEIS orders 2-3, DPM-Solver++ 3M, LMS; leading and trailing spacing; plain,
    Karras, exponential (and lu for DPM-Solver++) sigmas."""
    for label, cls, cfg, nfe_of in FULL_GRID():
        if cfg["timestep_spacing"] == "linspace" or label in ("DDIM", "Euler", "Heun"):
            continue
        if label == "UniPC" and cfg["solver_type"] != "bh2":
            continue
        if label.startswith("DPM") and (
            cfg["solver_order"] != 3 or cfg["solver_type"] != "midpoint"
        ):
            continue
        yield label, cls, cfg, nfe_of


def diffusers_best(name, gmm, noise, ref, nfes, full: bool) -> dict[str, list]:
    """{nfe: [error, label]}: diffusers' best on these draws, cached per problem and grid."""
    os.makedirs(CACHE, exist_ok=True)
    path = f"{CACHE}/diffusers_{'full' if full else 'reduced'}.json"
    cache = json.load(open(path)) if os.path.exists(path) else {}
    key = f"{name}/{noise.shape[0]}/{'full' if full else 'reduced'}"
    missing = [n for n in nfes if str(n) not in cache.get(key, {})]
    if missing:
        samplers.diffusers_grid = FULL_GRID if full else reduced_grid
        try:
            best = best_diffusers(gmm, noise, ref, missing)
        finally:
            samplers.diffusers_grid = FULL_GRID
        for n in missing:
            err, cfg, lab = min((per[n][0], per[n][1], k) for k, per in best.items() if n in per)
            cache.setdefault(key, {})[str(n)] = [err, f"{lab} {cfg}"]
        cache = {**(json.load(open(path)) if os.path.exists(path) else {}), key: cache[key]}
        tmp = f"{path}.tmp{os.getpid()}"
        json.dump(cache, open(tmp, "w"), indent=1)
        os.replace(tmp, path)
    return {int(n): v for n, v in cache[key].items()}


def family_sigmas(n: int, a: float, b: float, gamma: float) -> torch.Tensor:
    """n levels: sigma_max, then positions a .. b with warp gamma (see the module docstring)."""
    if n == 1:
        p = torch.ones(1, dtype=torch.float64)
    elif n == 2:
        p = torch.tensor([1.0, b], dtype=torch.float64)
    else:
        r = torch.linspace(0, 1, n - 1, dtype=torch.float64) ** gamma
        p = torch.cat([torch.ones(1, dtype=torch.float64), a - (a - b) * r])
    return torch.cat([torch.exp(LO + p * (HI - LO)), p.new_zeros(1)])


def family(sampler: str, nfe: int, q) -> torch.Tensor:
    return family_sigmas(SAMPLER_INFO[sampler].steps_for(nfe), *q)


class Problem:
    def __init__(self, name, gmm, samples, seed, nfes, full, ref_steps=200):
        self.name, self.gmm = name, gmm
        self.noise = torch.randn(
            samples, gmm.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        self.reference = samplers.Reference(gmm, steps=ref_steps)
        self.best = diffusers_best(name, gmm, self.noise, self.reference, nfes, full)
        self.stem = f"{CACHE}/ref_{name}_{samples}_{seed}_{ref_steps}"
        self.refs: dict[float, torch.Tensor] = {}

    def exact(self, start: float) -> torch.Tensor:
        """The exact map of the draws started at sigma `start` (cached on disk)."""
        if start not in self.refs:
            path = f"{self.stem}.pt" if start == SIGMA_MAX else f"{self.stem}_from{start:.6g}.pt"
            if os.path.exists(path):
                self.refs[start] = torch.load(path)
            else:
                self.refs[start] = self.reference(self.noise * start, start)
                torch.save(self.refs[start], path)
        return self.refs[start]

    def draw_errors(self, sampler: str, sigmas: torch.Tensor) -> torch.Tensor:
        """Each draw's squared error to the exact map from the schedule's first level."""
        start = float(sigmas[0])
        out = SAMPLERS[sampler](self.gmm.denoise, self.noise * start, sigmas)
        return (out - self.exact(start)).pow(2).sum(1) / self.gmm.dim

    def ratio(self, sampler: str, sigmas: torch.Tensor, nfe: int) -> float:
        """Error to the exact map from the schedule's own first level, over diffusers' best."""
        start = float(sigmas[0])
        out = SAMPLERS[sampler](self.gmm.denoise, self.noise * start, sigmas)
        r = rms(out, self.exact(start)) / self.best[nfe][0]
        return r if math.isfinite(r) else math.inf


def ddpm_levels(n: int, spacing: str) -> torch.Tensor:
    """The n levels diffusers visits with 1000 linear betas and that timestep spacing, then 0."""
    from diffusionforge.core.denoiser import DiscreteTimesteps, linear_betas  # deferred: named

    table = DiscreteTimesteps(linear_betas()).sigmas.to(torch.float64)
    if spacing == "leading":
        ts = [i * (1000 // n) for i in range(n)][::-1]
    else:
        ts = [round(1000 - i * 1000 / n) - 1 for i in range(n)]
    return torch.cat([table[ts], table.new_zeros(1)])


def train_set(nfes, samples: int, count: int) -> list[Problem]:
    out = []
    for seed in range(5000, 5000 + count):
        t0 = time.process_time()
        name, gmm = draw_mixture(seed)
        out.append(Problem(name, gmm, samples, 17, nfes, full=False, ref_steps=100))
        print(f"# {name}: {time.process_time() - t0:.1f} CPU-s", flush=True)
    return out


def fresh_set(nfes, count: int, first: int = 9100, label: str = "fresh") -> list[Problem]:
    """`count` random mixtures from seeds `first`+ (full grid, 256 draws); from 9100: a set for
    a last check, never looked at while choosing."""
    out = []
    for seed in range(first, first + count):
        name, gmm = draw_mixture(seed)
        out.append(Problem(name, gmm, 256, 7, nfes, full=True))
        print(f"# {label} {name}", flush=True)
    return out


def heldout_set(nfes, count: int) -> list[Problem]:
    """fit_schedule_bar's PROBLEMS (their full-grid results at 1024 draws from that script's
    cache when present, else 256 draws here) and `count` fresh mixtures (seeds 9000+)."""
    bar = f"{CACHE}/bar_diffusers_1024.json"
    bar = json.load(open(bar)) if os.path.exists(bar) else {}
    out = []
    for name, make in PROBLEMS.items():
        samples = 1024 if all(str(n) in bar.get(f"{name}/1024", {}) for n in nfes) else 256
        if samples == 1024:
            os.makedirs(CACHE, exist_ok=True)
            path = f"{CACHE}/diffusers_full.json"
            cache = json.load(open(path)) if os.path.exists(path) else {}
            cache[f"{name}/1024/full"] = bar[f"{name}/1024"]
            json.dump(cache, open(path, "w"), indent=1)
        out.append(Problem(name, make(), samples, 7, nfes, full=True))
        print(f"# held out {name} ({samples} draws)", flush=True)
    return out + fresh_set(nfes, count, 9000, "held out")


def current(nfe: int) -> tuple[str, torch.Tensor]:
    """Today's recommended pair at `nfe`: (sampler, sigmas)."""
    sampler, schedule = recommended(nfe)
    return sampler, SCHEDULES[schedule](SAMPLER_INFO[sampler].steps_for(nfe), SIGMA_MIN, SIGMA_MAX)


def minimax(problems, sampler: str, nfe: int, seconds: float) -> tuple[list[float], float]:
    """(a, b, gamma) minimising max log ratio (+ 0.05 x mean, to break ties) over `problems`:
    a coarse grid, then a compass search with halving steps, within `seconds` CPU-s."""
    n = SAMPLER_INFO[sampler].steps_for(nfe)
    t0 = time.process_time()

    def f(q) -> float:
        a, b, gamma = q
        if not (0.3 < a < 0.99 and 0.0 <= b < a - 0.02 and 0.3 <= gamma <= 3.0):
            return math.inf
        lr = [math.log(p.ratio(sampler, family_sigmas(n, a, b, gamma), nfe)) for p in problems]
        return max(lr) + 0.05 * sum(lr) / len(lr)

    grid = itertools.product([0.76, 0.84, 0.92], [0.1, 0.2, 0.3, 0.4, 0.5], [0.7, 1.0, 1.4])
    scored = sorted((f(q), list(q)) for q in grid)
    best_v, best = scored[0]
    step = [0.03, 0.04, 0.15]
    while max(step) > 0.004 and time.process_time() - t0 < seconds:
        moved = False
        for i in range(3):
            for sgn in (1, -1):
                q = list(best)
                q[i] += sgn * step[i]
                v = f(q)
                if v < best_v:
                    best_v, best, moved = v, q, True
        if not moved:
            step = [s / 2 for s in step]
    return best, best_v


def table(problems, cands: dict[str, dict[int, tuple[str, torch.Tensor]]], nfes) -> dict:
    """Print per problem x NFE the ratio to diffusers' best of each candidate; worst per column."""
    heads = [f"{c} @{n}" for n in nfes for c in cands]
    print("| problem | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    worst = {h: 0.0 for h in heads}
    for p in problems:
        cells = []
        for n in nfes:
            for c, per in cands.items():
                r = p.ratio(*per[n], n)
                worst[f"{c} @{n}"] = max(worst[f"{c} @{n}"], r)
                cells.append(f"{r:.2f}")
        print(f"| {p.name} | " + " | ".join(cells) + " |", flush=True)
    print("| **worst** | " + " | ".join(f"**{worst[h]:.2f}**" for h in heads) + " |")
    return worst


def _lead_top(n: int) -> float:
    from diffusionforge.core.schedules import _vp_sigma  # deferred: named

    return min(SIGMA_MAX, float(_vp_sigma(torch.tensor((n - 1) / n, dtype=torch.float64))))


def _drop(sigmas: torch.Tensor, d: int) -> torch.Tensor:
    """The levels without the `d` lowest non-zero ones."""
    return sigmas if d == 0 else torch.cat([sigmas[: -1 - d], sigmas[-1:]])


def summary(sets: dict, cands: dict, nfes) -> None:
    """Per NFE and candidate, per set of mixtures: the worst ratio to diffusers' best (and
    where), the geometric mean (ratios floored at 0.005) and how many exceed 1.0."""
    for n in nfes:
        print(f"\nNFE {n}")
        print("| candidate | " + " | ".join(f"{k}: worst / gmean / >1" for k in sets) + " |")
        print("|---|" + "---|" * len(sets))
        for c, make in cands.items():
            sampler, sigmas = make(n)
            cells = [_stats({p.name: p.ratio(sampler, sigmas, n) for p in probs})
                     for probs in sets.values()]  # fmt: skip
            print(f"| {c} | " + " | ".join(cells) + " |", flush=True)


def _stats(r: dict[str, float]) -> str:
    """Ratios per mixture: the worst (where) / geometric mean (floored at 0.005) / count > 1.0."""
    worst = max(r, key=r.get)
    gm = math.exp(sum(math.log(max(v, 0.005)) for v in r.values()) / len(r))
    over = sum(v > 1.0 for v in r.values())
    return f"{r[worst]:.2f} ({worst}) / {gm:.2f} / {over} of {len(r)}"


def endscan(sets: dict, ends: list[float], nfes) -> None:
    """Could an end level chosen per mixture meet the second bar? Per set and NFE: the default
    with its last level moved to each of `ends`, the best of them per mixture with hindsight
    (an oracle no sampler has), how many mixtures stay above 1.0x even so, and of those how
    many have over half of the default's squared error in its worst 1% of draws (a few draws
    that end in another mode than the exact map)."""
    print("| set | NFE | default >1.0x | oracle end >1.0x | of those, few-draw | worst oracle |")
    print("|---|---|---|---|---|---|")
    for label, probs in sets.items():
        for n in nfes:
            sampler, base = current(n)
            over_default = over_oracle = few = 0
            worst = (0.0, "")
            for p in probs:
                rs = []
                for e in ends:
                    if e < float(base[-3]):
                        s = base.clone()
                        s[-2] = e
                        rs.append(p.ratio(sampler, s, n))
                r0, best = p.ratio(sampler, base, n), min(rs)
                over_default += r0 > 1.0
                if best > 1.0:
                    over_oracle += 1
                    err = p.draw_errors(sampler, base).sort(descending=True).values
                    few += float(err[: max(1, len(err) // 100)].sum()) > 0.5 * float(err.sum())
                    worst = max(worst, (best, p.name))
                print(
                    f"# {label} {p.name} NFE {n}: default {r0:.2f}, ends "
                    + " ".join(f"{r:.2f}" for r in rs),
                    flush=True,
                )
            print(
                f"| {label} | {n} | {over_default} of {len(probs)} | {over_oracle} | {few} | "
                f"{worst[0]:.2f} ({worst[1]}) |",
                flush=True,
            )


def rescore(sets: dict, nfes, draws: int) -> None:
    """The second bar without the pick's luck. Diffusers' best per mixture is the minimum over
    its grid on the very draws it is scored on; here that winner and today's default also run
    from `draws` other draws (seed 8), and the ratio there is set beside the usual one."""
    print("| set | NFE | default / winner, its own draws: worst / gmean / >1 "
          "| other draws: worst / gmean / >1 |")  # fmt: skip
    print("|---|---|---|---|")
    for label, probs in sets.items():
        for n in nfes:
            sampler, sigmas = current(n)
            own, other = {}, {}
            for p in probs:
                own[p.name] = p.ratio(sampler, sigmas, n)
                noise = other_draws(p.gmm, draws)
                d_err = winner_error(p.gmm, noise, p.reference, p.best[n][1], n)
                other[p.name] = ours(p.gmm, noise, p.reference, n) / d_err  # today's pair
                print(f"# {label} {p.name} NFE {n}: {own[p.name]:.2f} -> {other[p.name]:.2f}",
                      flush=True)  # fmt: skip
            print(f"| {label} | {n} | {_stats(own)} | {_stats(other)} |", flush=True)


def networks(checkpoints, fitted, sampler: str, nfes, samples: int = 64) -> None:
    """The default pair today vs `sampler` on the fitted family, on trained networks: RMS to a
    200-step UniPC/Karras solution of the network's own ODE from the same noise (as
    benchmarks/schedule_on_model.py; 64 samples, seed 0, unconditional / null label)."""
    from diffusionforge.pipelines.pipeline import load_pipeline  # deferred: networks only

    for ckpt in checkpoints:
        pipe = load_pipeline(ckpt)
        form = pipe.formulation
        lo, hi = form.sigma_min, form.sigma_max
        denoise = form.precondition(pipe.net.eval())
        g = torch.Generator().manual_seed(0)
        noise0 = torch.randn(samples, *pipe.shape, generator=g)
        x = noise0 * hi
        with torch.no_grad():
            ref = SAMPLERS["unipc"](denoise, x, SCHEDULES["karras"](200, lo, hi))
            for n in nfes:
                cur_s, cur_sched = recommended(n)
                steps = SAMPLER_INFO[cur_s].steps_for(n)
                cur_sig = SCHEDULES[cur_sched](steps, lo, hi)  # may start below hi (`leading`)
                x0 = noise0 * float(cur_sig[0])
                ref0 = (
                    ref
                    if float(cur_sig[0]) == hi
                    else SAMPLERS["unipc"](
                        denoise, x0, SCHEDULES["karras"](200, lo, float(cur_sig[0]))
                    )
                )
                cur = SAMPLERS[cur_s](denoise, x0, cur_sig)
                q = fitted[sampler][str(n)]
                sig = family(sampler, n, q)
                sig = torch.cat(
                    [
                        torch.exp(
                            math.log(lo)
                            + (sig[:-1].log() - LO) / (HI - LO) * (math.log(hi) - math.log(lo))
                        ),
                        sig[-1:],
                    ]
                )
                new = SAMPLERS[sampler](denoise, x, sig)
                print(
                    f"| {ckpt} | {n} | {rms(cur, ref0):.4f} | {rms(new, ref):.4f} | "
                    f"{rms(new, ref) / rms(cur, ref0):.2f} |",
                    flush=True,
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "what",
        choices=[
            "cache-train",
            "cache-heldout",
            "fit",
            "validate",
            "networks",
            "named",
            "endscan",
            "rescore",
        ],
    )
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 16])
    ap.add_argument("--train", type=int, default=40, help="training mixtures")
    ap.add_argument("--heldout", type=int, default=8, help="fresh held-out mixtures")
    ap.add_argument(
        "--fresh", type=int, default=0, help="named: score on this many fresh mixtures instead"
    )
    ap.add_argument("--skip", nargs="*", default=[], help="held-out problems to leave out")
    ap.add_argument("--fitted", help="validate / networks: a JSON file `fit` wrote")
    ap.add_argument(
        "--named",
        nargs="+",
        default=["unipc:log_uniform:0.002", "unipc:karras:0.002"],
        help="named: candidates SAMPLER:SCHEDULE:SIGMA_MIN[:SIGMA_MAX] (a SCHEDULES name; "
        "sigma_max 80, or 'lead': sigma at VP time (n-1)/n), SAMPLER:ddpm_leading|ddpm_trailing:D "
        "(diffusers' levels, the D lowest dropped) or SAMPLER:leadend:E (leading, last level E)",
    )
    ap.add_argument(
        "--ends",
        type=float,
        nargs="+",
        default=[0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45],
        help="endscan: last levels to try",
    )
    ap.add_argument("--draws", type=int, default=1024, help="rescore: other draws per mixture")
    ap.add_argument("--checkpoints", nargs="+", default=["digits", "glyphs32"])
    ap.add_argument("--samplers", nargs="+", default=["unipc", "unipc_gaussian"])
    ap.add_argument("--seconds", type=float, default=120.0, help="CPU-s per (sampler, NFE) fit")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == "cache-train":
        train_set(args.nfe, 256, args.train)
    elif args.what == "cache-heldout":
        heldout_set(args.nfe, args.heldout)
    elif args.what == "fit":
        probs = train_set(args.nfe, 256, args.train)
        fitted = {}
        for sampler in args.samplers:
            for nfe in args.nfe:
                q, v = minimax(probs, sampler, nfe, args.seconds)
                fitted.setdefault(sampler, {})[nfe] = q
                print(
                    f"{sampler} NFE {nfe}: a b gamma = {[round(x, 4) for x in q]}, "
                    f"max log ratio {v:.3f}",
                    flush=True,
                )
        tag = "-".join(map(str, args.nfe))
        json.dump(fitted, open(f"{CACHE}/fitted_{args.train}_{tag}.json", "w"), indent=1)
        show = {"current": {n: current(n) for n in args.nfe}}
        for sampler, per in fitted.items():
            show[sampler] = {n: (sampler, family(sampler, n, q)) for n, q in per.items()}
        table(probs, show, args.nfe)
    elif args.what == "networks":
        print("| checkpoint | NFE | current pair | candidate | candidate / current |")
        print("|---|---|---|---|---|")
        fitted = json.load(open(args.fitted))
        networks(args.checkpoints, fitted, args.samplers[0], args.nfe)
    elif args.what == "named":  # named schedules on the training and the held-out mixtures
        sets = {}
        if args.fresh:
            sets["fresh"] = fresh_set(args.nfe, args.fresh)
        else:
            sets["train"] = train_set(args.nfe, 256, args.train)
            sets["held out"] = heldout_set(args.nfe, args.heldout)
        cands = {"current": current}
        for spec in args.named:
            sampler, sched, lo, *top = spec.split(":")
            if top:  # SAMPLER:SCHEDULE:SIGMA_MIN:SIGMA_MAX, "lead": sigma at VP time (n-1)/n
                cands[spec] = lambda n, s=sampler, k=sched, lo=float(lo), hi=top[0]: (
                    s,
                    SCHEDULES[k](
                        SAMPLER_INFO[s].steps_for(n),
                        lo,
                        _lead_top(SAMPLER_INFO[s].steps_for(n)) if hi == "lead" else float(hi),
                    ),
                )
                continue
            if sched == "leadend":  # diffusers' leading levels, the last one moved to `lo`
                cands[spec] = lambda n, s=sampler, e=float(lo): (
                    s,
                    torch.cat(
                        [
                            ddpm_levels(SAMPLER_INFO[s].steps_for(n), "leading")[:-2],
                            torch.tensor([e, 0.0], dtype=torch.float64),
                        ]
                    ),
                )
                continue
            if sched.startswith("ddpm_"):  # diffusers' levels; lo: extra steps dropped at the end
                cands[spec] = lambda n, s=sampler, k=sched[5:], d=int(lo): (
                    s,
                    _drop(ddpm_levels(SAMPLER_INFO[s].steps_for(n) + d, k), d),
                )
                continue
            cands[spec] = lambda n, s=sampler, k=sched, lo=float(lo): (
                s,
                SCHEDULES[k](SAMPLER_INFO[s].steps_for(n), lo, SIGMA_MAX),
            )
        summary(sets, cands, args.nfe)
    elif args.what in ("endscan", "rescore"):  # the training, held-out and fresh mixtures
        sets = {"train": train_set(args.nfe, 256, args.train)}
        sets["held out"] = heldout_set(args.nfe, args.heldout)
        if args.fresh:
            sets["fresh"] = fresh_set(args.nfe, args.fresh)
        if args.what == "endscan":
            endscan(sets, args.ends, args.nfe)
        else:
            rescore(sets, args.nfe, args.draws)
    elif args.what == "validate":
        probs = [p for p in heldout_set(args.nfe, args.heldout) if p.name not in args.skip]
        fitted = json.load(open(args.fitted))
        show = {"current": {n: current(n) for n in args.nfe}}
        for sampler in args.samplers:
            per = fitted[sampler]
            show[sampler] = {n: (sampler, family(sampler, n, per[str(n)])) for n in args.nfe}
        table(probs, show, args.nfe)


if __name__ == "__main__":
    main()
