"""Plan.resolve picks the schedule for the sampler actually run: the recommended pair's schedule
only with the recommended sampler, else the sampler's own SAMPLER_INFO default; the CLI's help
and eval's sweep say and use the same."""

from __future__ import annotations

import math

import pytest
import torch

from diffusionforge.core.gmm import GaussianMixture
from diffusionforge.core.plan import Plan, default_schedule, recommended
from diffusionforge.core.samplers import SAMPLER_INFO
from diffusionforge.core.schedules import SCHEDULES
from diffusionforge.pipelines.fitted_schedules import fitted_for_plan

F64 = torch.float64


def test_every_sampler_has_a_known_default_schedule():
    assert all(info.schedule in SCHEDULES for info in SAMPLER_INFO.values())


@pytest.mark.parametrize("nfe", [1, 5, 8, 16, 32])
@pytest.mark.parametrize("name", list(SAMPLER_INFO))
def test_named_sampler_runs_its_own_default_unless_it_is_the_recommended_one(name, nfe):
    plan = Plan.resolve(nfe, name)
    rec_sampler, rec_schedule = recommended(nfe)
    want = rec_schedule if name == rec_sampler else SAMPLER_INFO[name].schedule
    assert plan.sampler == name and plan.schedule == want == default_schedule(nfe, name)


def test_heun_runs_the_levels_of_its_own_step_count():
    # the case, `sample runs/moons --nfe 16 --sampler heun`: 9 Heun steps (2 * 9 - 2
    # evaluations), on `optimized`'s levels for 9 steps, not UniPC's 16 levels
    assert Plan.resolve(16).sampler == "unipc_gaussian" and Plan.resolve(16).schedule == "leading"
    plan = Plan.resolve(16, "heun")
    assert (plan.schedule, plan.steps) == ("optimized", 9)
    assert torch.equal(plan.sigmas(0.002, 80.0), SCHEDULES["optimized"](9, 0.002, 80.0))
    assert Plan.resolve(16, "heun", "karras").schedule == "karras"  # asked for: kept


@pytest.mark.parametrize("name", list(SAMPLER_INFO))
def test_every_sampler_spends_exactly_the_nfe_it_is_given(name):
    # A counting denoiser: each sampler on its plan's sigmas calls it exactly SAMPLER_INFO's
    # nfe(steps) times, and that is the budget, except Heun at an odd budget (2n - 2 is even)
    g = GaussianMixture.random(2, 3, std_range=(0.1, 0.3), seed=1)
    calls = []

    def counting(x, sigma, cond=None):
        calls.append(1)
        return g.denoise(x, sigma, cond)

    for nfe in range(1, 21):
        plan, x = Plan.resolve(nfe, name), torch.randn(4, 2, dtype=F64) * 80.0
        calls.clear()
        plan.sample_fn(counting, x, plan.sigmas(0.002, 80.0), generator=torch.Generator())
        assert len(calls) == SAMPLER_INFO[name].nfe(plan.steps), (nfe, len(calls))
        short = 1 if name == "heun" and nfe % 2 and nfe > 1 else 0
        assert len(calls) == nfe - short, (nfe, len(calls))


def test_heun_first_step_is_euler_exact_for_gaussian_data():
    # Gaussian data N(mu, s^2): D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu). Two steps
    # 80 -> 1 -> 0 are Euler then Euler (2 evaluations): after the first, x1 = D0 + (1/80)(x -
    # D0), after the second x = D(x1, 1). Algorithm 1's Heun first step would add
    # (80 / 1 - 1) / 2 (D(x1', 1) - D0), a different number.
    mu, s = 0.25, 0.5
    g = GaussianMixture(torch.tensor([[mu]], dtype=F64), torch.tensor([s], dtype=F64),
                        torch.ones(1, dtype=F64))  # fmt: skip
    x = torch.tensor([[80.0], [-40.0]], dtype=F64)

    def d(x, sigma):
        return mu + s**2 / (s**2 + sigma**2) * (x - mu)

    x1 = d(x, 80.0) + (x - d(x, 80.0)) / 80.0
    plan = Plan.resolve(2, "heun", torch.tensor([80.0, 1.0, 0.0], dtype=F64))
    got = plan.sample_fn(g.denoise, x, plan.sigmas(0.002, 80.0))
    assert torch.allclose(got, d(x1, 1.0), atol=1e-12, rtol=0)


def test_inpainting_keeps_the_recommended_schedule_for_its_substitute_sampler():
    plan = Plan.resolve(5, None, inpainting=True)
    assert (plan.sampler, plan.schedule) == ("unipc", "optimized")
    for nfe in (1, 2, 5, 16):  # one rule in `recommended`, the same in every place asking
        pair = recommended(nfe, inpainting=True)
        assert pair == (recommended(nfe) if nfe == 1 else ("unipc", "optimized"))
        plan = Plan.resolve(nfe, None, inpainting=True)
        assert (plan.sampler, plan.schedule) == pair
        assert default_schedule(nfe, pair[0], inpainting=True) == pair[1]
    entries = [{"sampler": "unipc", "sigmas": [9.0, 1.0, 0.0]},
               {"sampler": "unipc_gaussian", "sigmas": [9.0, 2.0, 1.0, 0.0]}]  # fmt: skip
    assert list(fitted_for_plan(entries, 5, None, inpainting=True)) == [2]  # unipc's table
    assert list(fitted_for_plan(entries, 5, None)) == [3]


def test_fitted_table_is_used_only_when_given_for_the_sampler_run():
    table = {9: torch.tensor([80.0, 10.0, 3.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.0], dtype=F64)}
    assert Plan.resolve(16, "heun", fitted=table).schedule == "fitted"  # 9 Heun steps
    assert Plan.resolve(16, "heun", fitted={}).schedule == "optimized"
    assert Plan.resolve(16, "unipc", fitted=table).schedule == "optimized"  # 16 steps: none


@pytest.mark.parametrize("name", [k for k, v in SAMPLER_INFO.items() if not v.stochastic])
def test_each_default_schedule_solves_gaussian_data(name):
    # Gaussian data N(mu, s^2 I) has the closed-form PF-ODE map x0 = mu + (x - mu) s /
    # sqrt(s^2 + sigma^2); at NFE 32 every sampler on its default schedule lands near it
    # (first order: ~0.085 measured; Heun, whose first step is Euler: 0.029; higher order:
    # <= 0.015).
    mu, s = torch.tensor([0.3, -0.2, 0.1], dtype=F64), 0.5
    g = GaussianMixture(mu[None], torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64))
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 80
    exact = mu + (x - mu) * s / math.sqrt(s**2 + 80.0**2)
    plan = Plan.resolve(32, name)
    out = plan.sample_fn(g.denoise, x, plan.sigmas(0.002, 80.0))
    tol = 0.12 if SAMPLER_INFO[name].order == 1 else 0.04 if name == "heun" else 0.02
    assert (out - exact).abs().max().item() < tol


def test_help_shows_each_samplers_default_schedule(capsys):
    from diffusionforge.cli import main

    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "heun, ddim" in text
        and "ipndm: optimized" in text
        and "unipc_gaussian (leading schedule) at NFE 5+" in text
    )


def test_eval_sweep_includes_the_recommended_pair():
    from diffusionforge.pipelines.evaluate import EvalSettings

    assert EvalSettings().sweep_samplers[0] == "recommended"


def test_classifier_fid_is_labelled_as_such():
    from diffusionforge.pipelines.evaluate import fid_label

    assert fid_label("inception-v3") == "FID"
    assert "classifier features" in fid_label("features") and "not Inception" in fid_label("x")


def test_default_pair_starts_its_noise_at_the_schedules_first_level():
    # `leading` starts below sigma_max at few steps (sigma 25.1 at NFE 5): sample() must scale
    # the noise to that level. Gaussian data N(mu, s^2 I) maps x at sigma_0 to mu + (x - mu) s
    # / sqrt(s^2 + sigma_0^2); from noise scaled to 80 instead the output would be 3.2x wider.
    from diffusionforge.core.sample import sample

    assert recommended(5) == ("unipc_gaussian", "leading")
    mu, s = torch.tensor([0.3, -0.2, 0.1], dtype=F64), 0.5
    g = GaussianMixture(mu[None], torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64))
    out = sample(g.denoise, (64, 3), nfe=5, generator=torch.Generator().manual_seed(0),
                 dtype=F64)  # fmt: skip
    s0 = float(SCHEDULES["leading"](5, 0.002, 80.0)[0])
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = mu + (z * s0 - mu) * s / math.sqrt(s**2 + s0**2)
    assert (out - exact).abs().max().item() < 0.03  # 0.009 measured; ~1 from noise at 80
