"""Samplers against closed-form answers: exact flow maps, orders of convergence, distributions,
determinism, batch invariance, re-entrancy and low-precision networks."""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from diffusionforge import sample
from diffusionforge.core.gmm import GaussianMixture, exact_flow_map
from diffusionforge.core.multistep import gaussian_end_step
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES, karras, log_uniform, optimized

F64 = torch.float64
DETERMINISTIC = [k for k, v in SAMPLER_INFO.items() if not v.stochastic]
STOCHASTIC = [k for k, v in SAMPLER_INFO.items() if v.stochastic]


def gaussian(mu=(0.3, -0.2, 0.1), std=0.5) -> GaussianMixture:
    return GaussianMixture(
        torch.tensor([mu], dtype=F64), torch.tensor([std], dtype=F64), torch.ones(1, dtype=F64)
    )


def gaussian_map(g: GaussianMixture, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Closed-form PF-ODE map of Gaussian data: x0 = mu + (x - mu) s / sqrt(s^2 + sigma^2)."""
    mu, s = g.means[0], float(g.stds[0])
    return mu + (x - mu) * s / math.sqrt(s**2 + sigma**2)


def noise(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_registry_complete():
    expected = {
        "ddpm",
        "ddim",
        "euler",
        "euler_ancestral",
        "heun",
        "dpmpp_2m",
        "dpmpp_3m",
        "dpmpp_2m_sde",
        "unipc",
        "unipc_gaussian",
        "ipndm",
    }
    assert expected <= set(SAMPLERS) and set(SAMPLERS) == set(SAMPLER_INFO)


def test_exact_flow_map_matches_closed_form():
    g = gaussian()
    x = noise(8, 3) * 80
    assert torch.allclose(exact_flow_map(g.denoise, x, 80.0), gaussian_map(g, x, 80.0), atol=1e-8)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_converge_to_exact_map(name):
    g = GaussianMixture.random(4, 3, std_range=(0.2, 0.4), seed=3)
    x = noise(64, 4) * 80
    ref = exact_flow_map(g.denoise, x, 80.0, steps=600)
    steps = SAMPLER_INFO[name].steps_for(200)
    out = SAMPLERS[name](g.denoise, x, karras(steps, 1e-3, 80.0))
    tol = 1e-2 if SAMPLER_INFO[name].order == 1 else 2e-3  # first order: error ~ 1 / steps
    assert (out - ref).pow(2).mean().sqrt() < tol


# Expected order of convergence on a smooth problem, and the step counts where it is measured.
# DPM-Solver++(3M) is third order per step, but its first- and second-order start-up steps cap
# the global order at 2 (their local errors are O(h^2) and O(h^3)); UniPC's corrector lifts its
# start-up, so it keeps order 3.
ORDERS = {
    "euler": (1, 32),
    "ddim": (1, 32),
    "heun": (2, 32),
    "dpmpp_2m": (2, 64),
    "dpmpp_3m": (2, 96),
    "unipc": (3, 32),
    "unipc_gaussian": (3, 32),
    "ipndm": (2, 64),
}


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_order_of_convergence(name):
    # Log-uniform steps on Gaussian data: the error halves 2^p times per doubling of the steps.
    # iPNDM keeps fixed Adams-Bashforth weights on unequal steps, which caps it at order 2.
    order, n = ORDERS[name]
    g = gaussian()
    x = noise(16, 3) * 80
    ref = gaussian_map(g, x, 80.0)
    errs = [
        (SAMPLERS[name](g.denoise, x, log_uniform(m, 1e-5, 80.0)) - ref).abs().max().item()
        for m in (n, 2 * n)
    ]
    measured = math.log2(errs[0] / errs[1])
    assert measured > order - 0.35, (name, errs, measured)


@pytest.mark.parametrize("name", STOCHASTIC + ["heun_churn"])
def test_stochastic_samplers_reach_data_distribution(name):
    # Gaussian data: the samples' mean and std approach the data's as steps grow (ancestral
    # samplers lose variance at O(1/steps)); 4000 samples give a standard error of ~0.008.
    g = gaussian(mu=(0.4, -0.6), std=0.5)
    x = noise(4000, 2, seed=1) * 80
    kw = {"s_churn": 20.0} if name == "heun_churn" else {}
    fn = SAMPLERS["heun" if name == "heun_churn" else name]
    std_err = []
    for steps in (24, 200):
        out = fn(
            g.denoise,
            x,
            karras(steps, 0.002, 80.0),
            generator=torch.Generator().manual_seed(2),
            **kw,
        )
        std_err.append((out.std(0) - 0.5).abs().max().item())
    assert torch.allclose(out.mean(0), g.means[0], atol=0.03)
    assert std_err[1] < 0.03 and std_err[1] <= std_err[0] + 0.01, std_err
    if name != "heun_churn":  # and they are stochastic: a different map than the ODE's
        assert (out - gaussian_map(g, x, 80.0)).abs().mean() > 0.05


def test_stochastic_sampler_reaches_mixture_weights():
    g = GaussianMixture.random(2, 3, std_range=(0.05, 0.1), seed=5)
    out = SAMPLERS["dpmpp_2m_sde"](
        g.denoise,
        noise(3000, 2) * 80,
        karras(40, 0.002, 80.0),
        generator=torch.Generator().manual_seed(0),
    )
    nearest = torch.cdist(out, g.means).argmin(1)
    freq = torch.bincount(nearest, minlength=3).double() / len(out)
    assert torch.allclose(freq, g.weights, atol=0.03)


def test_equivalences():
    g = GaussianMixture.random(3, 4, seed=2)
    x, sig = noise(32, 3) * 80, karras(12, 0.002, 80.0)
    assert torch.allclose(SAMPLERS["ddim"](g.denoise, x, sig), SAMPLERS["euler"](g.denoise, x, sig))
    outs = [
        SAMPLERS[n](g.denoise, x, sig, generator=torch.Generator().manual_seed(4))
        for n in ("ddpm", "euler_ancestral")
    ]
    ddim1 = SAMPLERS["ddim"](g.denoise, x, sig, generator=torch.Generator().manual_seed(4), eta=1.0)
    assert torch.allclose(outs[0], outs[1]) and torch.allclose(outs[0], ddim1)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_same_seed_same_bytes(name):
    g = GaussianMixture.random(3, 4, seed=2)
    runs = [
        sample(
            g.denoise,
            (5, 3),
            nfe=9,
            sampler=name,
            generator=torch.Generator().manual_seed(11),
            dtype=F64,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m_sde", "ddpm", "unipc"])
def test_sample_does_not_depend_on_batch(name):
    g = GaussianMixture.random(3, 4, seed=2)
    seeds = [3, 1, 4, 1, 5]
    batch = sample(
        g.denoise,
        (5, 3),
        nfe=8,
        sampler=name,
        dtype=F64,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    for i, s in enumerate(seeds):
        alone = sample(
            g.denoise,
            (1, 3),
            nfe=8,
            sampler=name,
            dtype=F64,
            generator=[torch.Generator().manual_seed(s)],
        )
        assert torch.allclose(alone[0], batch[i], atol=1e-12)


def test_interleaved_threads_match_sequential():
    g = GaussianMixture.random(3, 4, seed=2)

    def slow(x, sigma, cond):
        time.sleep(0.002)  # yield so the two threads interleave step by step
        return g.denoise(x, sigma)

    def job(name, seed):
        return sample(
            slow,
            (4, 3),
            nfe=8,
            sampler=name,
            dtype=F64,
            generator=torch.Generator().manual_seed(seed),
        )

    plan = [("dpmpp_2m_sde", 1), ("unipc", 2), ("dpmpp_3m", 3), ("euler_ancestral", 4)]
    sequential = [job(*p) for p in plan]
    results: dict[int, torch.Tensor] = {}
    threads = [
        threading.Thread(target=lambda i=i, p=p: results.__setitem__(i, job(*p)))
        for i, p in enumerate(plan)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, ref in enumerate(sequential):
        assert torch.equal(results[i], ref)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bfloat16_network(name):
    # A network that computes in bfloat16 still gives float32 samples close to the float32 ones.
    g = GaussianMixture.random(8, 3, std_range=(0.2, 0.4), seed=6)

    def bf16(x, sigma, cond):
        return g.denoise(x.bfloat16().double(), sigma.double()).bfloat16()

    x = noise(64, 8).float()
    full = sample(
        lambda x, s, c: g.denoise(x.double(), s.double()).float(),
        (64, 8),
        nfe=12,
        sampler=name,
        generator=torch.Generator().manual_seed(0),
    )
    low = sample(bf16, (64, 8), nfe=12, sampler=name, generator=torch.Generator().manual_seed(0))
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - full).pow(2).mean().sqrt() < 0.05, x.shape


def test_callback_sees_every_step_and_can_cancel():
    g = gaussian()
    seen = []
    SAMPLERS["dpmpp_2m"](
        g.denoise, noise(2, 3) * 80, karras(6, 0.002, 80.0), callback=lambda d: seen.append(d["i"])
    )
    assert seen == list(range(6))

    def stop(info):
        if info["i"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SAMPLERS["heun"](g.denoise, noise(2, 3) * 80, karras(6, 0.002, 80.0), callback=stop)


@pytest.mark.parametrize("nfe", [1, 2, 3, 5, 8, 10, 16, 50])
def test_sample_respects_nfe_budget(nfe):
    calls = []
    g = gaussian()

    def counting(x, sigma, cond):
        calls.append(1)
        return g.denoise(x, sigma)

    out = sample(counting, (3, 3), nfe=nfe, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert len(calls) <= nfe and torch.isfinite(out).all()


def test_sample_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(gaussian().denoise, (1, 3), nfe=4, sampler="nope")
    with pytest.raises(ValueError, match="unknown schedule"):
        sample(gaussian().denoise, (1, 3), nfe=4, schedule="nope")


def test_every_schedule_works_with_every_sampler():
    g = GaussianMixture.random(3, 2, std_range=(0.2, 0.3), seed=1)
    for sch in SCHEDULES:
        for name in SAMPLERS:
            out = sample(
                g.denoise,
                (4, 3),
                nfe=10,
                sampler=name,
                schedule=sch,
                dtype=F64,
                generator=torch.Generator().manual_seed(0),
            )
            assert torch.isfinite(out).all() and out.abs().max() < 5, (sch, name)


@pytest.mark.parametrize("std", [0.0, 0.05, 0.3, 2.0])
def test_gaussian_end_step_is_the_closed_form_map_for_gaussian_data(std):
    # N(m, std^2 I) data: from two states anywhere (not on one path) with their exact denoised
    # values, the end step from a third (corrected) state x at sigma_b is its exact PF-ODE map
    g = gaussian(std=std)
    xa, xb = noise(6, 3, seed=1) * 1.3, noise(6, 3, seed=2) * 0.4
    x = xb + 0.05 * noise(6, 3, seed=3)
    evals = [(xa, g.denoise(xa, torch.full((6,), 1.3, dtype=F64)), 1.3)]
    evals.append((xb, g.denoise(xb, torch.full((6,), 0.4, dtype=F64)), 0.4))
    out = gaussian_end_step(evals, x)
    if std == 0:  # a point mass: x = D
        assert torch.allclose(out, g.means[0].expand(6, 3), atol=1e-12)
    else:
        assert torch.allclose(out, gaussian_map(g, x, 0.4), atol=1e-9)


def test_unipc_gaussian_solves_gaussian_data_in_few_steps():
    # its end step is exact for Gaussian data, where plain UniPC's x = D is first order (what
    # is left is the multistep error up to the last level: 0.005 against 0.26)
    g = gaussian(std=0.3)
    x = noise(16, 3) * 80
    sig = optimized(5, 0.002, 80.0)
    ref = gaussian_map(g, x, 80.0)
    err = {
        n: (SAMPLERS[n](g.denoise, x, sig) - ref).abs().max().item()
        for n in ("unipc", "unipc_gaussian")
    }
    assert err["unipc_gaussian"] < 0.05 * err["unipc"], err
