"""fit_schedule: step positions fitted to a model, checked on Gaussian data whose PF-ODE map is
known in closed form. A fake clock that advances per denoiser call makes the budget exact and
the tests independent of the machine's speed."""

from __future__ import annotations

import math

import pytest
import torch

from diffusionforge.core.fit_schedule import _accept, _teacher, fit_schedule
from diffusionforge.core.plan import default_schedule
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

F64 = torch.float64
S = 0.3  # data ~ N(0, S^2 I)


class Gaussian:
    """The exact denoiser of N(0, S^2 I), counting its calls as the fit's clock."""

    def __init__(self, cost: float = 0.01):
        self.calls, self.cost = 0, cost

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        shrink = S**2 / (S**2 + sigma.to(x.dtype) ** 2)
        return shrink.view(-1, *([1] * (x.dim() - 1))) * x

    def clock(self) -> float:
        return self.calls * self.cost


def exact_map(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The PF-ODE solution at sigma = 0 from x at sigma: x S / sqrt(S^2 + sigma^2)."""
    return x * S / math.sqrt(S**2 + sigma**2)


def error(sampler: str, sigmas: torch.Tensor) -> float:
    x = torch.randn(512, 6, generator=torch.Generator().manual_seed(99), dtype=F64) * 80.0
    out = SAMPLERS[sampler](Gaussian(), x, sigmas)
    return float((out - exact_map(x, 80.0)).pow(2).mean().sqrt())


def test_teacher_is_the_exact_flow_map():
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 80.0
    ref = _teacher(Gaussian(), x, None, 80.0, 0.002, 100)
    # RK4's own error is ~1e-9 here; the last x = D step from sigma 2e-4 costs ~sigma^2 / 2S.
    assert torch.allclose(ref, exact_map(x, 80.0), atol=1e-6)


@pytest.mark.parametrize("sampler,nfe", [("unipc", 5), ("dpmpp_2m", 6), ("euler", 4)])
def test_fit_is_no_worse_than_its_start_and_well_formed(sampler, nfe):
    model = Gaussian()
    sig = fit_schedule(
        model, (64, 6), nfe, sampler=sampler, seconds=40.0, clock=model.clock,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    steps = SAMPLER_INFO[sampler].steps_for(nfe)
    assert sig.dtype == F64 and sig.shape == (steps + 1,)
    assert float(sig[0]) == 80.0 and float(sig[-1]) == 0.0
    assert bool((sig[:-1] > sig[1:]).all()) and float(sig[-2]) >= 0.002
    start = SCHEDULES[default_schedule(nfe, sampler)](steps, 0.002, 80.0)  # what sample() runs
    assert error(sampler, sig) <= error(sampler, start)


def euler_gain(levels: list[float]) -> float:
    """Euler on N(0, S^2 I) data is linear: x_out = F x_in with F = prod_i (1 + (s_{i+1} - s_i)
    s_i / (S^2 + s_i^2)), times S^2 / (S^2 + s_last^2) for the last step x = D."""
    f = 1.0
    for a, b in zip(levels[:-1], levels[1:], strict=True):
        f *= 1 + (b - a) * a / (S**2 + a**2)
    return f * S**2 / (S**2 + levels[-1] ** 2)


def test_fit_of_euler_on_gaussian_data_finds_the_closed_form_optimum():
    """Euler's relative error on Gaussian data is |1 - F / F*| with F* = S / sqrt(S^2 + 80^2) the
    exact map's gain (F < F* always: Euler shrinks too much), so the best 4-step schedule
    maximises F; a dense grid over the three free levels gives it (~0.72, 0.30, 0.12: 27%)."""
    model = Gaussian()
    sig = fit_schedule(model, (64, 6), 4, sampler="euler", seconds=40.0, clock=model.clock)
    g = torch.logspace(math.log10(0.002), math.log10(79.9), 240, dtype=F64)
    s1, s2, s3 = g[:, None, None], g[None, :, None], g[None, None, :]

    def fac(a, b):
        return 1 + (b - a) * a / (S**2 + a**2)

    gain = fac(80.0, s1) * fac(s1, s2) * fac(s2, s3) * S**2 / (S**2 + s3**2)
    gain = torch.where((s1 > s2) & (s2 > s3), gain, torch.zeros((), dtype=F64))
    target = S / math.sqrt(S**2 + 80.0**2)
    best = 1 - float(gain.max()) / target
    fitted = 1 - euler_gain(sig[:-1].tolist()) / target
    assert 0.25 < best < 0.3 and fitted <= best + 1e-3
    # and the sampler's measured error on fresh draws is that relative error of the exact map
    x_rms = 80.0 * target  # RMS of the exact map of N(0, 80^2) noise
    assert error("euler", sig) == pytest.approx(fitted * x_rms, rel=0.1)


def test_budget_is_respected():
    """With a clock of 0.01 s per denoiser call, a 5 s budget allows 500 calls; the fit may
    overrun by at most one objective evaluation (steps calls per chunk of trajectories)."""
    model = Gaussian(cost=0.01)
    fit_schedule(model, (32, 4), 8, sampler="unipc", seconds=5.0, clock=model.clock)
    assert model.calls * 0.01 <= 5.0 + 8 * 0.01 + 1e-9


def test_tiny_budget_returns_the_default():
    model = Gaussian(cost=1.0)
    sig = fit_schedule(model, (32, 4), 8, sampler="unipc", seconds=0.5, clock=model.clock)
    assert torch.equal(sig, SCHEDULES["optimized"](8, 0.002, 80.0))


def test_deterministic_given_the_generator_and_reports_progress():
    runs, reports = [], []
    for _ in range(2):
        model = Gaussian()
        runs.append(
            fit_schedule(
                model,
                (32, 4),
                5,
                seconds=10.0,
                clock=model.clock,
                callback=reports.append,
                generator=torch.Generator().manual_seed(5),
            )  # fmt: skip
        )
    assert torch.equal(runs[0], runs[1])
    search = [r for r in reports if r["phase"] == "search"]
    assert any(r["phase"] == "teacher" for r in reports) and search
    rms = [r["rms"] for r in search[: len(search) // 2]]
    assert all(b <= a for a, b in zip(rms, rms[1:], strict=False))


class Jittered(Gaussian):
    """Gaussian whose calls cost `cost` s +- `jitter` (relative, drawn from a seeded generator):
    a machine whose speed varies with what else runs. The default cost lies midway between two
    points of the grid (factors 2^(1/8)) that measured costs are rounded to."""

    def __init__(self, jitter: float, seed: int, cost: float = 2 ** (-53.5 / 8)):
        super().__init__(cost)
        self.t, self.jitter = 0.0, jitter
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, x, sigma, cond=None):
        u = float(torch.rand((), generator=self.g, dtype=F64)) * 2 - 1
        self.t += self.cost * (1 + self.jitter * u)
        return super().__call__(x, sigma, cond)

    def clock(self) -> float:
        return self.t


def fit_on(model, **kw) -> torch.Tensor:
    return fit_schedule(
        model, (32, 4), 8, sampler="unipc", clock=model.clock,
        generator=torch.Generator().manual_seed(4), **kw,
    )  # fmt: skip


def test_the_plan_is_in_calls_so_varying_speed_gives_the_same_fit():
    """The budget is planned in costs measured once and rounded: calls up to 10% faster or
    slower here and there (the same 40 s budget) give exactly the sigmas of a steady machine,
    so a fit does not depend on what else the machine runs."""
    steady = fit_on(Jittered(0.0, 0), seconds=40.0)
    for seed in (0, 1, 2):
        assert torch.equal(fit_on(Jittered(0.1, seed), seconds=40.0), steady)


def test_a_budget_in_calls_is_kept_and_ignores_the_clock():
    """calls= replaces the time budget: the same sigmas whatever a call costs, and no more calls
    than asked for (plus at most one objective evaluation: 8 calls on one chunk)."""
    fits = []
    for model in (Gaussian(cost=0.01), Gaussian(cost=5.0), Jittered(0.5, 0)):
        fits.append(fit_on(model, calls=2500))
        assert model.calls <= 2500 + 8
    assert torch.equal(fits[0], fits[1]) and torch.equal(fits[0], fits[2])
    assert not torch.equal(fits[0], SCHEDULES["optimized"](8, 0.002, 80.0))
    with pytest.raises(ValueError, match="calls must be a positive number"):
        fit_on(Gaussian(), calls=0)


def test_sample_runs_a_fitted_schedule_with_the_recommended_sampler():
    """diffusionforge.fit_schedule's sigmas go straight into diffusionforge.sample."""
    import diffusionforge

    model = Gaussian()
    sig = diffusionforge.fit_schedule(model, (32, 4), 5, seconds=10.0, clock=model.clock)
    g = torch.Generator().manual_seed(3)
    out = diffusionforge.sample(Gaussian(), (8, 4), nfe=5, schedule=sig, generator=g, dtype=F64)
    # the fit starts where the default (`leading`) starts, and sampling at the table's first level
    assert float(sig[0]) == float(SCHEDULES["leading"](5, 0.002, 80.0)[0]) < 80.0
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(3), dtype=F64) * float(sig[0])
    rec = SAMPLERS["unipc_gaussian"](Gaussian(), x, sig)  # NFE 5's recommended sampler
    assert torch.allclose(out, rec)


class TwoModes:
    """The exact denoiser of the 1-D mixture (N(-1, W^2) + N(1, W^2)) / 2, W = 0.05: a sampler's
    error there is draws near the basin boundary changing mode, so a fit on a handful of draws
    can overfit them. Counts its calls as the fit's clock, like Gaussian."""

    W = 0.05

    def __init__(self, cost: float = 0.01):
        self.calls, self.cost = 0, cost

    def clock(self) -> float:
        return self.calls * self.cost

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        v = self.W**2 + sigma.to(x.dtype).view(-1, *([1] * (x.dim() - 1))) ** 2
        p = torch.sigmoid(2 * x / v)  # posterior weight of the mode at +1
        k = self.W**2 / v
        return p * (1 + k * (x - 1)) + (1 - p) * (-1 + k * (x + 1))


def two_mode_error(sigmas: torch.Tensor) -> float:
    """unipc's RMS error on 1024 fresh draws against a 400-step teacher."""
    x = torch.randn(1024, 1, generator=torch.Generator().manual_seed(999), dtype=F64) * 80.0
    ref = _teacher(TwoModes(), x, None, 80.0, 0.002, 400)
    return float((SAMPLERS["unipc"](TwoModes(), x, sigmas) - ref).pow(2).mean().sqrt())


def fit_two_modes(seed: int, holdout: float) -> tuple[torch.Tensor, list[dict]]:
    model, reports = TwoModes(), []
    sig = fit_schedule(
        model, (2, 1), 8, sampler="unipc", seconds=40.0, clock=model.clock, holdout=holdout,
        generator=torch.Generator().manual_seed(seed), callback=reports.append,
    )  # fmt: skip
    return sig, reports


def test_without_the_check_a_fit_on_few_draws_can_overfit():
    """The danger the held-out check is for: a few teacher draws, 8 levels; the unchecked fit
    is 20x worse than the default on fresh draws (0.59 vs 0.027)."""
    default = SCHEDULES["optimized"](8, 0.002, 80.0)
    sig, reports = fit_two_modes(seed=3, holdout=0.0)
    assert not [r for r in reports if r["phase"] == "check"]
    assert two_mode_error(sig) > 5 * two_mode_error(default)


def test_a_fit_worse_than_the_default_on_held_out_draws_is_not_kept():
    default = SCHEDULES["optimized"](8, 0.002, 80.0)
    sig, reports = fit_two_modes(seed=6, holdout=0.2)
    (check,) = [r for r in reports if r["phase"] == "check"]
    assert check["kept"] is False and check["rms_fitted"] > check["rms_default"]
    assert torch.equal(sig, default)  # the default comes back
    # and rejecting it was right: the fitted candidate is worse on 1024 other draws too
    candidate = [r for r in reports if r["phase"] == "search"][-1]["sigmas"]
    assert two_mode_error(candidate) > 1.1 * two_mode_error(default)  # 0.078 vs 0.027
    assert check["cpu_seconds"] <= 40.0 + 8 * 2 * 0.01 + 1e-9  # the check is inside the budget


def test_a_fit_better_on_held_out_draws_is_kept_and_reported():
    model, reports = Gaussian(), []
    sig = fit_schedule(
        model, (32, 4), 5, sampler="unipc", seconds=10.0, clock=model.clock,
        callback=reports.append,
    )  # fmt: skip
    (check,) = [r for r in reports if r["phase"] == "check"]
    assert check["kept"] is True and check["rms_fitted"] < check["rms_default"]
    assert check["trajectories"] >= 32
    assert not torch.equal(sig, SCHEDULES["optimized"](5, 0.002, 80.0))


def test_the_check_compares_per_draw_and_reports_the_gain_in_standard_errors():
    """Per-draw errors, paired: the fit is kept when its mean gain is positive, and z is
    mean / (std / sqrt(n)) in closed form. A gain on every draw has no spread (z infinite); the
    same total gain from one draw (a sample that changed mode under the default only) is one
    standard error; a fit worse on average is never kept."""
    n = 100
    e_def = torch.ones(n, dtype=F64)
    z, kept = _accept(e_def - 0.1, e_def)
    assert kept and z == math.inf
    one = e_def.clone()
    one[0] += 10.0  # mean gain 0.1, std 1.0: z = 0.1 / (1 / 10) = 1.0
    z, kept = _accept(e_def, one)
    assert z == pytest.approx(1.0) and kept
    gains = torch.tensor([0.3, 0.1] * 50, dtype=F64)  # mean 0.2, std 0.1005: z = 19.9
    z, kept = _accept(e_def - gains, e_def)
    assert z == pytest.approx(0.2 / (float(gains.std()) / 10)) and kept
    z, kept = _accept(e_def + gains, e_def)
    assert z < 0 and not kept
    assert _accept(e_def, e_def) == (0.0, False)  # no gain at all: the default


class Slowing(Gaussian):
    """Calls costing `cost` s until call `after`, then three times that: a machine that gets
    busy during the fit."""

    def __init__(self, after: int, cost: float = 0.01):
        super().__init__(cost)
        self.t, self.after = 0.0, after

    def __call__(self, x, sigma, cond=None):
        self.t += self.cost * (3.0 if self.calls >= self.after else 1.0)
        return super().__call__(x, sigma, cond)

    def clock(self) -> float:
        return self.t


def test_calls_turning_slower_end_the_fit_within_its_seconds():
    """The clock ends the search, and the held-out check then takes only as many draws as
    still fit: the whole fit overruns by at most one held-out chunk (a teacher and two
    scorings), not by the check planned at the old speed."""
    steady = Gaussian(cost=0.01)
    reports: list = []
    fit_schedule(steady, (32, 4), 8, sampler="unipc", seconds=200.0, clock=steady.clock)
    model = Slowing(after=steady.calls // 2)
    fit_schedule(model, (32, 4), 8, sampler="unipc", seconds=200.0, clock=model.clock,
                 callback=reports.append)  # fmt: skip
    check = reports[-1]
    assert check["phase"] == "check" and check["ended_by"] == "clock"
    one_chunk = (4 * 200 + 1 + 2 * 8) * 0.03  # teacher of 200 RK4 steps and two scorings, slow
    assert model.clock() <= 200.0 + one_chunk
