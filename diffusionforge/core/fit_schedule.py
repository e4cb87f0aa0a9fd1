"""`fit_schedule()`: step positions fitted to one model, one sampler and one NFE budget.

The idea of Align Your Steps (Sabour et al. 2024), GITS (Chen et al. 2024) and optimal stepsize
(Pei et al. 2025): a few-step sampler is best on levels chosen for the model at hand, and they
can be found without data. The teacher is the model's own probability-flow ODE, solved finely
(classical RK4 in u = log sigma, where dx/du = x - D(x, sigma) is smooth) from N noise draws; the
objective is the mean squared error of the few-step solution from the same draws against it,
which is what a benchmark's RMS measures, flips included.

Why that objective and not a local-error one: most of a few-step sampler's error on multi-modal
data is "flips", the rare draws near a basin boundary that a coarse step sends to another mode
(BENCHMARKS.md, Samplers). Their cost is set by where the levels sit when basins separate, which
local truncation errors do not see. Robustness to them comes from numbers: the budget buys as
many teacher trajectories as leave room for the search (up to 16384), all of them scored with
the same draws at every candidate (common random numbers), so the search compares schedules,
not noise, and a schedule that moves a few specific draws across a boundary gains little.

Search: the interior levels as positions p = log(sigma / sigma_min) / log(sigma_max /
sigma_min) in [0, 1) (sigma_0 = sigma_max is where sampling starts, the last level is 0), a
pattern search (coordinate moves with per-level step sizes that grow on success and halve on
failure, Hooke and Jeeves 1961) from the best of a few starting schedules (the recommended one
for the sampler, Karras, log-uniform, `optimized` and tilts of them). Derivative-free because
the samplers work on sigma lists, and deterministic: the only randomness is the draws, from
`generator`.

The budget is CPU seconds (time.process_time), so a fit costs the same on a busy machine, but
it is planned in counted denoiser calls: what a teacher call and a search call cost is
measured once (probe calls, the first teacher chunk, whole objective evaluations) and rounded
up to a grid of factors 2^(1/8), and the plan spends 95% of the seconds, so that how fast each
call happens to run does not change the fit's course or result; `calls=` gives the budget in
calls directly (the same sigmas on any machine). It is split between the teacher (at most
40%) and the search, and the search stops once the next evaluation would overrun it; the
seconds stay a hard limit if calls turn slower than measured.

Acceptance on held-out draws: a fit on few draws can overfit them (glyphs32 at NFE 10 was worse
than the default on other noise, BENCHMARKS.md). So a share of the budget (`holdout`, 20%) is
kept back for draws the search never sees: after the search, their teacher solutions are
computed and the fitted sigmas are returned only if their error there is below the default
schedule's; otherwise the default is returned. Both numbers go to the callback (phase "check"),
with z, the paired per-draw gain in standard errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Cond, Denoiser
from diffusionforge.core.plan import default_schedule, recommended, start_level
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras, log_uniform
from diffusionforge.core.step_search import legal, pattern_search

_F64 = torch.float64
MAX_TRAJECTORIES = 16384
MAX_HOLDOUT = 4096  # held-out draws of the acceptance check


def fit_schedule(
    denoise: Denoiser,
    shape: Sequence[int],
    nfe: int,
    *,
    sampler: str | None = None,
    cond: Cond = None,
    seconds: float = 60.0,
    calls: int | None = None,
    generator: torch.Generator | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    teacher_steps: int = 200,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.process_time,
    holdout: float = 0.2,
) -> Tensor:
    """Sigmas (float64, decreasing from sigma_max, ending in 0) for `sampler` (default: the
    recommended one for `nfe`) at `nfe` evaluations of `denoise`, fitted within `seconds` of
    CPU time (as measured by `clock`), or within `calls` denoiser calls when given (each on one
    chunk of draws: shape[0] rows, at most 1024 without cond), which replaces the time budget
    and gives the same sigmas on any machine.

    shape is a batch's shape as in `sample()`: shape[0] is the largest batch the denoiser is
    called with, shape[1:] one sample's; with `cond` every call has exactly shape[0] rows (cond
    is per batch). The number of teacher trajectories is set by the budget. `callback` gets a
    dict per stage (phase "teacher" or "search", cpu_seconds, calls, cost (what the plan counts
    as spent: estimated seconds, or calls with `calls`), trajectories,
    evaluations, rms, sigmas) and, at the end, phase "check": rms_fitted and rms_default on
    held-out draws (trajectories of them), z (the fitted's mean gain per draw in standard
    errors), kept (whether the fitted sigmas are returned: a positive gain) and ended_by ("plan", or
    "clock" when calls ran slower than measured and the time limit ended the search). `holdout`
    is the share of the budget kept back for that check (0: no check, the fit is returned as
    found).
    """
    sampler = sampler or recommended(nfe)[0]
    steps = SAMPLER_INFO[sampler].steps_for(nfe)
    run = SAMPLERS[sampler]
    start_clock = clock()
    model = _Counted(denoise)

    def elapsed() -> float:
        return clock() - start_clock

    def tell(phase: str, **kw: Any) -> None:
        if callback is not None:
            info = {"cpu_seconds": elapsed(), "calls": model.calls, "cost": spent()}
            callback({"phase": phase, **info, **kw})

    default = _default_sigmas(nfe, sampler, steps, sigma_min, sigma_max)
    # Draws, teacher and every candidate start where the default does (`leading` starts below
    # sigma_max at few steps; its start is then the fitted schedule's too).
    sigma_max = start_level(default, sigma_max)
    if steps < 2:
        return default
    if calls is not None and calls < 1:
        raise ValueError(f"calls must be a positive number of denoiser calls, got {calls}")
    batch = int(shape[0])
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    gen_device = g.device

    def noise(n: int) -> Tensor:
        z = torch.randn((n, *shape[1:]), generator=g, device=gen_device, dtype=dtype)
        return z.to(device) * sigma_max

    chunk = batch if cond is not None else min(batch, 1024)
    probe = noise(chunk)

    # The budget is planned in units of cost, not read off the clock, so that how fast calls
    # happen to run does not change the fit's course. With `calls`, a unit is one call. With
    # `seconds`, a teacher call and a search call each get a cost in CPU seconds, measured
    # once (the median of three probe calls first; then the first chunk's teacher, hundreds
    # of calls, and the median of up to three objective evaluations on it, the solvers' and
    # the scoring's own work included) and rounded up to a grid of factors 2^(1/8): small
    # differences in measured speed give the same costs, the same plan and the same sigmas.
    # The plan spends 95% of `seconds`; the clock stays a hard limit if calls turn slower.
    costs = {"teacher": 1.0, "other": 1.0}
    if calls is None:
        times: list[float] = []
        with torch.no_grad():
            for _ in range(3):
                t0 = clock()
                model(probe, probe.new_full((chunk,), sigma_max), cond)
                times.append(max(clock() - t0, 1e-9))
                if times[-1] > 0.1 * seconds:
                    break
        times.sort()
        costs = dict.fromkeys(costs, _round_up(times[len(times) // 2]))
        total = 0.95 * seconds
    else:
        total = float(calls)

    def spent() -> float:
        return model.teacher * costs["teacher"] + (model.calls - model.teacher) * costs["other"]

    def teacher_cost(t_steps: int) -> float:  # one chunk's teacher
        return (4 * t_steps + 1) * costs["teacher"]

    def eval_cost(chunks: int) -> float:  # one objective evaluation on that many chunks
        return per_run * chunks * costs["other"]

    per_run = nfe  # calls per sampler run, counted at the first

    # Teacher steps: fewer (down to 32) if one chunk's would take over a quarter of the budget;
    # if it would take over 40% even then, the default schedule is returned.
    t_steps = teacher_steps
    while t_steps > 32 and spent() + teacher_cost(t_steps) > 0.25 * total:
        t_steps = max(32, t_steps * 3 // 4)

    # The acceptance check's held-out chunks (teacher plus two scorings each), as many as
    # `holdout` of the budget pays for, at least one; the search gets the rest.
    def holdout_chunks() -> tuple[int, float]:
        hold_cost = teacher_cost(t_steps) + 2 * eval_cost(1)
        if holdout <= 0:
            return 0, hold_cost
        return max(1, min(MAX_HOLDOUT // chunk, int(holdout * total / hold_cost))), hold_cost

    n_hold, hold_cost = holdout_chunks()
    if spent() + teacher_cost(t_steps) > 0.4 * (total - n_hold * hold_cost):
        return default
    xs: list[Tensor] = []
    refs: list[Tensor] = []

    def teach(x: Tensor) -> Tensor:
        with torch.no_grad():
            c = model.calls
            ref = _teacher(model, x, cond, sigma_max, sigma_min, t_steps)
            model.teacher += model.calls - c
            return ref

    def errors(sigmas: Tensor) -> Tensor:
        """Per draw: the squared error of the sampler's output against the teacher."""
        out = []
        with torch.no_grad():
            for x, ref in zip(xs, refs, strict=True):
                diff = run(model, x, sigmas, cond=cond).to(_F64) - ref.to(_F64)
                out.append(diff.pow(2).flatten(1).sum(1))
        return torch.cat(out)

    # The first chunk's teacher, which also measures what the calls cost: a teacher call, and a
    # call within an objective evaluation (the median of up to three, scoring included).
    t0 = clock()
    refs.append(teach(probe))
    xs.append(probe)
    if calls is None:
        costs["teacher"] = _round_up(max(clock() - t0, 1e-9) / model.teacher)
        per_call: list[float] = []
        t_start = clock()
        while len(per_call) < 3 and clock() - t_start < 0.02 * seconds:
            t0, c = clock(), model.calls
            errors(default)
            per_run = model.calls - c
            per_call.append(max(clock() - t0, 1e-9) / per_run)
        costs["other"] = _round_up(sorted(per_call)[len(per_call) // 2])
    n_hold, hold_cost = holdout_chunks()
    budget = total - n_hold * hold_cost  # for the teacher and the search
    c0 = spent() - teacher_cost(t_steps)  # what was spent before the first chunk
    tell("teacher", trajectories=chunk, teacher_steps=t_steps)

    ended = {"by": "plan"}
    t_teach = 0.0  # CPU time of the last chunk's teacher (for the guard)

    def add_chunks(k: int, until: float) -> None:
        """Up to k more chunks of draws with their teacher solutions, while the next one
        ends before `until` (and, if calls turned slower, before the time limit)."""
        nonlocal t_teach
        for _ in range(k):
            if len(xs) * chunk >= MAX_TRAJECTORIES or spent() + teacher_cost(t_steps) > until:
                break
            if calls is None and elapsed() + t_teach + n_hold * hold_cost > seconds:
                ended["by"] = "clock"
                break
            t0 = clock()
            x = noise(chunk)
            refs.append(teach(x))
            xs.append(x)
            t_teach = clock() - t0
            tell("teacher", trajectories=len(xs) * chunk, teacher_steps=t_steps)

    # First as many chunks as leave the search room for ~50 evaluations per free level
    # (the teacher taking at most 40%); more are added when the search has converged.
    per_chunk = teacher_cost(t_steps) + 50 * (steps - 1) * eval_cost(1)
    add_chunks(int((budget - c0) / per_chunk) - 1, 0.4 * budget)

    def loss(sigmas: Tensor) -> float:
        return float(errors(sigmas).sum()) / (len(xs) * probe.numel())

    lo_log, hi_log = math.log(sigma_min), math.log(sigma_max)

    def to_sigmas(p: Tensor) -> Tensor:
        return torch.cat([torch.exp(lo_log + p * (hi_log - lo_log)), p.new_zeros(1)])

    def to_p(sigmas: Tensor) -> Tensor:
        s = sigmas[:-1].clamp_min(sigma_min)
        return ((s.log() - lo_log) / (hi_log - lo_log)).clamp(0, 1)

    evals, t_eval = 0, 0.0  # t_eval: the costliest evaluation's CPU time (for the guard)

    def f(p: Tensor) -> float:
        nonlocal evals, t_eval
        t = clock()
        v = loss(to_sigmas(p))
        t_eval = max(t_eval, clock() - t)
        evals += 1
        return v if math.isfinite(v) else math.inf

    def out_of_time() -> bool:
        if spent() + eval_cost(len(xs)) > budget:
            return True
        # A guard, not the plan: if calls turned slower than measured, the time budget still
        # holds (and the fit then depends on the machine's speed; the check reports it).
        if calls is None and elapsed() + t_eval + n_hold * hold_cost > seconds:
            ended["by"] = "clock"
            return True
        return False

    scored: list[tuple[float, int, Tensor]] = []  # (objective, order, positions) per start
    for k, cand in enumerate(_starts(default, steps, sigma_min, sigma_max)):
        if out_of_time():
            break
        q = legal(to_p(cand))
        scored.append((f(q), k, q))
    scored.sort(key=lambda t: (t[0], t[1]))
    best, _, best_p = scored[0] if scored else (math.inf, 0, to_p(default))

    def sweep_done(p: Tensor, best: float) -> None:
        tell("search", trajectories=len(xs) * chunk, evaluations=evals, rms=math.sqrt(best),
             sigmas=to_sigmas(p))  # fmt: skip

    sweep_done(best_p, best)
    p, step0 = best_p, 0.03
    while not out_of_time():
        p, best = pattern_search(f, p, best, out_of_time, sweep_done, step0)
        # Converged with time left: double the draws (their teacher taking at most half of
        # what is left) and refine from here with small moves.
        left = budget - spent()
        before = len(xs)
        add_chunks(
            min(before, int(0.5 * left / teacher_cost(t_steps))), budget - 20 * eval_cost(before)
        )
        if len(xs) == before:
            break
        t_eval *= len(xs) / before
        if out_of_time():
            break
        best, step0 = f(p), 0.01
        sweep_done(p, best)
    # Draws and time left over (cheap models): search again from the next-best starts, on all
    # the draws, and keep whichever ends lower.
    for _, _, q in scored[1:]:
        if out_of_time():
            break
        q, v = pattern_search(f, q, f(q), out_of_time, None, 0.03)
        if v < best:
            p, best = q, v
            sweep_done(p, best)
    sig = to_sigmas(p)
    sig[0] = sigma_max
    if n_hold == 0:
        return sig
    # Acceptance: fitted vs default on draws the search never saw (drawn after all of its own),
    # paired per draw; the fit is kept if it is better there, with z reported (`_accept`).
    if calls is None and ended["by"] == "clock":  # calls turned slower: as many as still fit
        slow = max(1.0, t_eval / eval_cost(len(xs)))  # the slowest evaluation vs the plan
        n_hold = max(1, min(n_hold, int((seconds - elapsed()) / (hold_cost * slow))))
    xs.clear()
    refs.clear()
    for _ in range(n_hold):
        x = noise(chunk)
        refs.append(teach(x))
        xs.append(x)
    e_fit, e_def = errors(sig), errors(default)
    z, kept = _accept(e_fit, e_def)
    norm = len(xs) * probe.numel()
    tell("check", trajectories=n_hold * chunk, rms_fitted=math.sqrt(float(e_fit.sum()) / norm),
         rms_default=math.sqrt(float(e_def.sum()) / norm), z=z, kept=kept,
         ended_by=ended["by"])  # fmt: skip
    return sig if kept else default


class _Counted:
    """The denoiser, counting its calls (`teacher`: how many of them the teacher made)."""

    def __init__(self, denoise: Denoiser):
        self.denoise, self.calls, self.teacher = denoise, 0, 0

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        self.calls += 1
        return self.denoise(x, sigma, cond)


def _accept(e_fit: Tensor, e_def: Tensor) -> tuple[float, bool]:
    """Paired comparison of per-draw errors: z, the mean gain (default's error minus the fit's)
    in standard errors of that mean, and whether the gain is positive. Keeping the fit whenever
    it is better on held-out draws minimises the expected error when keeping a worse fit and
    rejecting a better one cost alike; z says how sure that is (a demand of z > 2 was tried on
    the validation mixtures: it rejected three fits that were better on the test draws for one
    that was worse, BENCHMARKS.md)."""
    gain = (e_def - e_fit).to(_F64)
    mean = float(gain.mean())
    se = float(gain.std()) / math.sqrt(len(gain)) if len(gain) > 1 else math.inf
    z = mean / se if se > 0 else (math.inf if mean > 0 else 0.0)
    return z, mean > 0


def _round_up(v: float) -> float:
    """v rounded up to the grid 2^(k/8)."""
    return 2 ** (math.ceil(8 * math.log2(v) - 1e-9) / 8)


def _teacher(denoise, x: Tensor, cond, sigma_max: float, sigma_min: float, steps: int) -> Tensor:
    """The PF-ODE from x at sigma_max: `steps` RK4 steps in log sigma down to sigma_min / 10,
    then x = D there (the rest of the path moves x by O(sigma^2 / width))."""
    sigma_end = sigma_min / 10
    us = torch.linspace(math.log(sigma_max), math.log(sigma_end), steps + 1, dtype=_F64).tolist()
    state = x.to(torch.promote_types(x.dtype, torch.float32))

    def f(y: Tensor, u: float) -> Tensor:
        return y - denoise(y, y.new_full((y.shape[0],), math.exp(u)), cond).to(y.dtype)

    for u0, u1 in zip(us[:-1], us[1:], strict=True):
        h = u1 - u0
        k1 = f(state, u0)
        k2 = f(state + h / 2 * k1, u0 + h / 2)
        k3 = f(state + h / 2 * k2, u0 + h / 2)
        k4 = f(state + h * k3, u1)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return denoise(state, state.new_full((state.shape[0],), sigma_end), cond).to(state.dtype)


def _default_sigmas(
    nfe: int, sampler: str, steps: int, sigma_min: float, sigma_max: float
) -> Tensor:
    """What `sample()` runs `sampler` on at this NFE when no schedule is given."""
    return SCHEDULES[default_schedule(nfe, sampler)](steps, sigma_min, sigma_max)


def _starts(default: Tensor, steps: int, sigma_min: float, sigma_max: float) -> list[Tensor]:
    """Starting schedules: the default, Karras, log-uniform, `optimized` (fitted on mixtures),
    the default's interior levels moved up or down in log sigma (where basins separate depends
    on the data's scale), and geometric ramps after the first step (the shape of the schedules
    diffusers' multistep solvers run with "leading" spacing and exponential sigmas)."""
    out = [default, karras(steps, sigma_min, sigma_max), log_uniform(steps, sigma_min, sigma_max)]
    out.append(SCHEDULES["optimized"](steps, sigma_min, sigma_max))
    span = math.log(sigma_max / sigma_min)
    for shift in (0.08, -0.08, 0.16):
        s = default.clone()
        s[1:-1] = (s[1:-1].log() + shift * span).exp().clamp(sigma_min, sigma_max * 0.999)
        out.append(s)
    for hi, lo in ((0.3, 5.0), (0.15, 2.0), (0.05, 10.0)):  # first level, last (x sigma_min)
        ramp = torch.logspace(
            math.log10(sigma_max * hi), math.log10(sigma_min * lo), steps - 1, dtype=_F64
        )
        out.append(torch.cat([default[:1], ramp, default.new_zeros(1)]))
    return out
