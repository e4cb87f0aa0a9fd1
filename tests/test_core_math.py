"""Conversions, adapters, schedules, formulations, guidance and likelihood against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from diffusionforge.core import denoiser as dn
from diffusionforge.core.formulations import EDM, VP, Flow
from diffusionforge.core.gmm import GaussianMixture
from diffusionforge.core.guidance import cfg, dynamic_threshold
from diffusionforge.core.likelihood import nll
from diffusionforge.core.optimized_steps import OPTIMIZED_STEPS
from diffusionforge.core.schedules import SCHEDULES, optimized

F64 = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --- conversions and adapters -------------------------------------------------------------


@pytest.mark.parametrize(
    "to_x0,from_x0",
    [(dn.eps_to_x0, dn.x0_to_eps), (dn.v_to_x0, dn.x0_to_v), (dn.flow_to_x0, dn.x0_to_flow)],
)
def test_conversions_round_trip(to_x0, from_x0):
    x0, n = rand(6, 3, 4), rand(6, 3, 4, seed=1)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 10.0, 80.0], dtype=F64)
    x = x0 + sigma[:, None, None] * n
    target = from_x0(x, sigma, x0)
    assert torch.allclose(to_x0(x, sigma, target), x0, atol=1e-10)


def test_targets_match_their_definitions():
    x0, n = rand(5, 7), rand(5, 7, seed=1)
    sigma = torch.tensor([0.05, 0.3, 1.0, 4.0, 30.0], dtype=F64)
    s = sigma[:, None]
    x = x0 + s * n
    alpha = 1 / (1 + s**2).sqrt()
    t = s / (1 + s)
    assert torch.allclose(dn.x0_to_eps(x, sigma, x0), n)
    assert torch.allclose(dn.x0_to_v(x, sigma, x0), alpha * n - s * alpha * x0)
    assert torch.allclose(dn.x0_to_flow(x, sigma, x0), n - x0)
    assert torch.allclose(x / (1 + s), (1 - t) * x0 + t * n)  # flow's x_t


@pytest.mark.parametrize("kind", ["eps", "v", "x0", "flow"])
def test_adapters_recover_x0_from_an_ideal_network(kind):
    # The network is told the truth in its own target; the adapter must return x0 exactly.
    x0, n = rand(4, 6), rand(4, 6, seed=2)
    sigma = torch.tensor([0.02, 0.7, 3.0, 60.0], dtype=F64)
    x = x0 + sigma[:, None] * n
    targets = {"eps": n, "v": dn.x0_to_v(x, sigma, x0), "x0": x0, "flow": n - x0}
    seen = {}

    def net(x_in, t, cond):
        seen["x_in"], seen["t"] = x_in, t
        return targets[kind]

    out = dn.ADAPTERS[kind](net)(x, sigma, None)
    assert torch.allclose(out, x0, atol=1e-10)
    expect_in = x / (1 + sigma[:, None]) if kind == "flow" else x / (1 + sigma[:, None] ** 2).sqrt()
    assert torch.allclose(seen["x_in"], expect_in)


def test_discrete_timesteps_round_trip_and_table():
    table = dn.DiscreteTimesteps(dn.linear_betas())
    t = torch.tensor([0.0, 1.0, 10.0, 499.0, 998.0, 999.0], dtype=F64)
    sig = table.t_to_sigma(t)
    assert torch.allclose(sig, table.sigmas[t.long()])
    assert torch.allclose(table.sigma_to_t(sig), t, atol=1e-9)
    frac = torch.tensor([12.25, 700.5], dtype=F64)
    assert torch.allclose(table.sigma_to_t(table.t_to_sigma(frac)), frac, atol=1e-9)
    assert torch.equal(table.sigma_to_t(table.t_to_sigma(frac), quantize=True), frac.round())
    # DDPM's linear betas: alpha_bar_T ~ 4e-5, sigma_T ~ 157
    assert 150 < table.sigma_max < 165 and abs(table.sigma_min - 0.01) < 1e-3


def test_discrete_timesteps_linear_interpolation_is_np_interp():
    """interpolation="linear" places fractional timesteps as diffusers' Euler does
    (np.interp over the sigma table): sigma(t) = (1 - w) sigma_i + w sigma_(i+1)."""
    table = dn.DiscreteTimesteps(dn.linear_betas(), "linear")
    t = torch.tensor([0.0, 12.25, 700.5, 998.75, 999.0], dtype=F64)
    lo, w = t.floor().long().clamp(max=998), t - t.floor().clamp(max=998)
    expect = (1 - w) * table.sigmas[lo] + w * table.sigmas[lo + 1]
    assert torch.allclose(table.t_to_sigma(t), expect, rtol=1e-12)
    assert torch.allclose(table.sigma_to_t(expect), t, atol=1e-9)
    # the two interpolations agree on the integer timesteps
    ints = torch.tensor([0.0, 5.0, 999.0], dtype=F64)
    log_table = dn.DiscreteTimesteps(dn.linear_betas())
    assert torch.allclose(table.t_to_sigma(ints), log_table.t_to_sigma(ints), rtol=1e-12)


def test_ddpm_adapter_drives_a_timestep_model():
    table = dn.DiscreteTimesteps(dn.cosine_betas())
    x0, n = rand(3, 5), rand(3, 5, seed=3)
    sigma = table.sigmas[torch.tensor([5, 300, 900])]
    x = x0 + sigma[:, None] * n

    def unet(x_vp, t, cond):  # an ideal eps model indexed by integer timesteps
        assert torch.allclose(t, torch.tensor([5.0, 300.0, 900.0], dtype=F64))
        return n

    assert torch.allclose(table.adapter(unet, dn.from_eps, quantize=True)(x, sigma, None), x0)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_discrete_spacings(spacing):
    table = dn.DiscreteTimesteps(dn.linear_betas())
    s = table.schedule(10, spacing)
    assert len(s) == 11 and s[-1] == 0 and (s[:-1].diff() < 0).all()
    if spacing == "trailing":
        assert s[0] == table.sigmas[-1]


# --- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 17, 40])
def test_schedules_shape_monotone_endpoints(name, n):
    s = SCHEDULES[name](n, 0.002, 80.0)
    assert s.dtype == F64 and len(s) == n + 1 and s[-1] == 0
    assert (s.diff() < 0).all()
    if name == "leading":  # starts at DDPM's leading level, ends at 0.2 or below (test below)
        assert (0.002 < float(s[-2]) <= 0.2 or n == 1) and float(s[0]) <= 80.0
        return
    assert math.isclose(float(s[0]), 80.0, rel_tol=1e-9)
    if n > 1 and name != "vp_trailing":
        assert math.isclose(float(s[-2]), 0.002, rel_tol=1e-6) or name == "optimized"
        assert float(s[-2]) >= 0.002 * (1 - 1e-9)


def test_leading_closed_form():
    # VP-linear sigma(t) = sqrt(exp(19.9 t^2 / 2 + 0.1 t) - 1) at t = 4/5 .. 1/5, then 0.2
    def vp(t):
        return math.sqrt(math.expm1(0.5 * 19.9 * t * t + 0.1 * t))

    want = [vp(t) for t in (0.8, 0.6, 0.4, 0.2)] + [0.2, 0.0]
    assert torch.allclose(SCHEDULES["leading"](5, 0.002, 80.0), torch.tensor(want, dtype=F64))
    assert [round(v, 2) for v in want[:4]] == [25.11, 6.1, 2.03, 0.72]
    low = SCHEDULES["leading"](5, 0.002, 10.0)  # levels above sigma_max move down, in t
    assert float(low[0]) == pytest.approx(10.0) and float(low[3]) == pytest.approx(vp(0.2))
    assert float(SCHEDULES["leading"](5, 0.5, 80.0)[-2]) == pytest.approx(0.5)  # Karras there
    s16 = SCHEDULES["leading"](16, 0.002, 80.0)  # t = 15/16 is above sigma 80: t from t(80)
    assert float(s16[0]) == pytest.approx(80.0) and float(s16[-3]) == pytest.approx(vp(1 / 16))
    assert float(s16[-2]) == pytest.approx(vp(1 / 16) / 2)  # the last level halves sigma
    for n in range(3, 41):
        s = SCHEDULES["leading"](n, 0.002, 80.0)
        assert (s.diff() < 0).all() and float(s[0]) <= 80.0
        assert float(s[-2]) == pytest.approx(min(0.2, float(s[-3]) / 2))


def test_karras_closed_form():
    s = SCHEDULES["karras"](3, 0.002, 80.0)
    mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    assert torch.allclose(s, torch.tensor([80.0, mid, 0.002, 0.0], dtype=F64))


def test_optimized_uses_table_and_interpolates():
    for n, p in OPTIMIZED_STEPS.items():
        s = optimized(n, 0.002, 80.0)[:-1]
        expect = torch.exp(math.log(0.002) + torch.tensor(p, dtype=F64) * math.log(80 / 0.002))
        assert torch.allclose(s, expect)
    s = optimized(37, 0.01, 10.0)
    assert len(s) == 38 and (s.diff() < 0).all() and math.isclose(float(s[0]), 10.0)


# --- formulations -------------------------------------------------------------------------


def oracle(form, x0):
    """A network that outputs exactly the formulation's target for the known x0."""

    def net(x_in, c_noise, cond):
        if isinstance(form, Flow):
            t = c_noise.reshape(-1, 1, 1)
            sigma = t / (1 - t)
            x = x_in * (1 + sigma)
            return (x - x0) / sigma - x0
        sigma = (4 * c_noise).exp().reshape(-1, 1, 1)
        if isinstance(form, EDM):
            sd = form.sigma_data
            x = x_in * (sigma**2 + sd**2).sqrt()
            c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()
            return (x0 - c_skip * x) / c_out
        x = x_in * (1 + sigma**2).sqrt()
        eps = (x - x0) / sigma
        alpha = 1 / (1 + sigma**2).sqrt()
        return alpha * eps - sigma * alpha * x0 if form.prediction == "v" else eps

    return net


FORMS = [
    EDM(),
    VP(),
    VP(schedule="cosine", prediction="v"),
    VP(min_snr_gamma=5.0),
    Flow(),
    Flow(shift=3.0),
]


@pytest.mark.parametrize("form", FORMS, ids=repr)
def test_formulation_loss_and_precondition_agree(form):
    x0 = rand(16, 2, 3)
    net = oracle(form, x0)
    loss = form.loss(net, x0, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (16,) and loss.max() < 1e-10
    sigma = form.sample_noise_level(16, generator=torch.Generator().manual_seed(1)).double()
    x = form.add_noise(x0, sigma, rand(16, 2, 3, seed=4))
    assert torch.allclose(form.precondition(net)(x, sigma, None), x0, atol=1e-8)
    wrong = form.loss(
        lambda x, c, k: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(0)
    )
    assert (wrong > 1e-3).all()


def test_edm_training_sigmas_are_log_normal():
    s = EDM().sample_noise_level(20000, generator=torch.Generator().manual_seed(0)).log()
    assert abs(s.mean() + 1.2) < 0.03 and abs(s.std() - 1.2) < 0.03


def test_flow_shift_moves_t_towards_noise():
    t1 = Flow().sample_noise_level(5000, generator=torch.Generator().manual_seed(0))
    t3 = Flow(shift=3.0).sample_noise_level(5000, generator=torch.Generator().manual_seed(0))
    t1, t3 = t1 / (1 + t1), t3 / (1 + t3)
    assert abs(t1.median() - 0.5) < 0.03 and abs(t3.median() - 0.75) < 0.03  # 3*0.5/(1+2*0.5)


def test_min_snr_weighting_closed_form():
    form, plain = VP(min_snr_gamma=5.0), VP()
    x0 = rand(64, 4)
    zero = lambda x, c, k: torch.zeros_like(x)  # noqa: E731
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    weighted, base = form.loss(zero, x0, generator=g1), plain.loss(zero, x0, generator=g2)
    sigma = plain.sample_noise_level(64, generator=torch.Generator().manual_seed(3))
    snr = sigma.double() ** -2
    assert torch.allclose(weighted.double(), base.double() * snr.clamp(max=5.0) / snr, rtol=1e-5)


# --- guidance ----------------------------------------------------------------------------


def linear_denoiser(calls=None):
    def d(x, sigma, cond):
        if calls is not None:
            calls.append(x.shape[0])
        return 0.5 * x + cond

    return d


def test_cfg_formula_and_batching():
    x, sigma = rand(3, 4), torch.full((3,), 2.0, dtype=F64)
    c, u = torch.ones(3, 4, dtype=F64), torch.zeros(3, 4, dtype=F64)
    calls = []
    out = cfg(linear_denoiser(calls), 3.0, u)(x, sigma, c)
    assert torch.allclose(out, 0.5 * x + 3.0 * c) and calls == [6]  # one batched call
    assert torch.allclose(cfg(linear_denoiser(), 1.0, u)(x, sigma, c), 0.5 * x + c)


def test_cfg_interval_and_rescale():
    x, c, u = rand(2, 8), torch.ones(2, 8, dtype=F64), torch.zeros(2, 8, dtype=F64)
    calls = []
    g = cfg(linear_denoiser(calls), 4.0, u, interval=(0.3, 5.0))
    assert torch.allclose(g(x, torch.full((2,), 10.0, dtype=F64), c), 0.5 * x + c)  # outside
    assert torch.allclose(g(x, torch.full((2,), 1.0, dtype=F64), c), 0.5 * x + 4 * c)  # inside
    assert calls == [2, 4]
    # D_c = 2x, D_u = x: guided 4x, rescaled to D_c's std: 2x
    r = cfg(lambda x, s, k: x * (1 + k), 3.0, u, rescale=1.0)(x, torch.ones(2, dtype=F64), c)
    assert torch.allclose(r.std(dim=1), (2 * x).std(dim=1))


def test_dynamic_threshold():
    d = lambda x, s, c: x  # noqa: E731
    small = torch.linspace(-0.9, 0.9, 100, dtype=F64)[None]
    assert torch.allclose(dynamic_threshold(d)(small, torch.ones(1), None), small)
    big = torch.linspace(-3, 3, 1000, dtype=F64)[None]
    out = dynamic_threshold(d, percentile=0.9)(big, torch.ones(1), None)
    s = torch.quantile(big.abs(), 0.9)
    assert torch.allclose(out, big.clamp(-s, s) / s) and out.abs().max() <= 1 + 1e-12


# --- likelihood ---------------------------------------------------------------------------


def gaussian_logpdf(x, mu, std):
    d = x.shape[1]
    return (
        -0.5 * ((x - mu) ** 2).sum(1) / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)
    )


def test_likelihood_of_gaussian_data_matches_closed_form():
    mu, std = torch.tensor([[0.2, -0.3, 0.1, 0.4]], dtype=F64), 0.5
    g = GaussianMixture(mu, torch.tensor([std], dtype=F64), torch.ones(1, dtype=F64))
    x0 = g.sample(8, torch.Generator().manual_seed(0))
    res = nll(g.denoise, x0, steps=48, data_std=std)
    exact = -gaussian_logpdf(x0, mu, std)
    assert torch.allclose(res.nats, exact, rtol=0.01)
    assert torch.allclose(res.bits_per_dim, exact / (4 * math.log(2)), rtol=0.01)


def test_hutchinson_likelihood_is_unbiased():
    mu, std = torch.zeros(1, 16, dtype=F64), 0.7
    g = GaussianMixture(mu, torch.tensor([std], dtype=F64), torch.ones(1, dtype=F64))
    x0 = g.sample(4, torch.Generator().manual_seed(1)).repeat(16, 1)  # 16 probes per example
    res = nll(
        g.denoise,
        x0,
        steps=24,
        exact=False,
        data_std=std,
        generator=torch.Generator().manual_seed(2),
    )
    exact = -gaussian_logpdf(x0[:4], mu, std)
    assert torch.allclose(res.nats.reshape(16, 4).mean(0), exact, rtol=0.02)


def test_likelihood_of_mixture_prefers_data_over_noise():
    g = GaussianMixture.random(2, 4, std_range=(0.05, 0.1), seed=3)
    x0 = g.sample(6, torch.Generator().manual_seed(0))
    far = torch.full_like(x0, 3.0)
    res = nll(g.denoise, torch.cat([x0, far]), steps=40, sigma_min=1e-3)
    exact = -g.log_prob(x0)
    assert torch.allclose(res.nats[:6], exact, rtol=0.03, atol=0.05)
    assert (res.nats[6:] > res.nats[:6].max() + 10).all()
