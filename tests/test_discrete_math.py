"""Masked diffusion math (core/discrete.py) against closed forms and an exact oracle denoiser."""

import itertools
import math

import pytest
import torch
from discrete_oracle import Oracle, correlated, factorised

from diffusionforge.core.discrete import (
    SCHEDULES,
    Cosine,
    Linear,
    LogLinear,
    MaskedDiffusion,
    subs,
)

ALL_SCHEDULES = [LogLinear(), Cosine(), Linear()]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_endpoints_monotone_and_derivative(schedule):
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    a = schedule.alpha(t)
    assert a[0] == pytest.approx(1.0, abs=1e-12)
    assert a[-1] == pytest.approx(0.0, abs=5e-5)  # Linear stops at exp(-10) = 4.5e-5
    assert (a[1:] < a[:-1]).all()
    h = 1e-6  # central differences: error O(h^2) relative to the scale of alpha'
    inner = t[1:-1]
    fd = (schedule.alpha(inner + h) - schedule.alpha(inner - h)) / (2 * h)
    torch.testing.assert_close(schedule.dalpha(inner), fd, rtol=1e-6, atol=1e-7)


def test_registry_builds_every_schedule():
    assert {type(cls()) for cls in SCHEDULES.values()} == {LogLinear, Cosine, Linear}


def test_loglinear_weight_is_one_over_t():
    t = torch.tensor([0.01, 0.25, 0.5, 1.0])
    torch.testing.assert_close(MaskedDiffusion(mask_id=3).weight(t), 1 / t)


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_masking_rate_is_one_minus_alpha(schedule):
    md = MaskedDiffusion(mask_id=7, schedule=schedule)
    n = 20000
    tokens = torch.randint(0, 7, (5, n), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    z = md.add_noise(tokens, t, torch.Generator().manual_seed(1))
    masked = z == 7
    rate = masked.double().mean(1)
    want = 1 - schedule.alpha(t.double())
    se = (want * (1 - want) / n).sqrt()
    assert ((rate - want).abs() <= 5 * se + 1e-12).all(), (rate, want)
    assert torch.equal(z[~masked], tokens[~masked])  # unmasked positions are untouched


def test_subs_zeroes_mask_and_carries_unmasked_tokens():
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[4, 1, 4, 0], [2, 4, 4, 4]])  # mask id 4
    logp = subs(logits, tokens, mask_id=4)
    assert (logp[..., 4] == -math.inf).all()
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 4))
    assert logp[0, 1].argmax() == 1 and logp[0, 1, 1] == 0 and logp[1, 0, 2] == 0
    torch.testing.assert_close(logp[0, 0, :4], logits[0, 0, :4].log_softmax(-1))


# --- NELBO against the exact NLL ---------------------------------------------------------------


def exact_nelbo(denoise, seq: torch.Tensor, mask_id: int) -> float:
    """The continuous-time NELBO by enumeration: a mask set M of size k has weight
    int_0^1 m^(k-1) (1-m)^(L-k) dm = 1 / (k C(L, k)) (m = 1 - alpha_t), whatever the schedule."""
    length, total = seq.shape[0], 0.0
    for k in range(1, length + 1):
        for m in itertools.combinations(range(length), k):
            z = seq.clone()
            z[list(m)] = mask_id
            logp = denoise(z[None], torch.ones(1), None)[0].double()
            total += -sum(logp[i, seq[i]].item() for i in m) / (k * math.comb(length, k))
    return total


def test_nelbo_of_exact_denoiser_equals_nll_even_for_correlated_data():
    # With exact conditionals every revealing order is the chain rule of p, so the bound is tight
    # (not only for factorised data): NELBO(x) = -log p(x) for each of the 27 sequences.
    oracle = Oracle(correlated(), 3, 3)
    for seq, p in zip(oracle.seqs, oracle.p, strict=True):
        assert exact_nelbo(oracle, seq, 3) == pytest.approx(-math.log(p), rel=1e-6)


def test_nelbo_of_wrong_denoiser_bounds_the_entropy_from_above():
    # A blurred denoiser is no exact posterior of any law: its expected NELBO under the data must
    # exceed the data entropy H (NELBO >= -log p_model >= ... in expectation, Gibbs' inequality).
    oracle = Oracle(correlated(), 3, 3, blur=0.3)
    p = oracle.p
    entropy = -(p * p.log()).sum().item()
    nelbo = sum(w.item() * exact_nelbo(oracle, s, 3) for s, w in zip(oracle.seqs, p, strict=True))
    assert nelbo > entropy + 0.05


def test_factorised_law_estimator_is_exact_where_every_term_is_equal():
    # For i.i.d. positions a masked position's posterior is its marginal whatever else is masked;
    # on a constant sequence (a, a, a) every term of the estimator is then -log q(a), so each
    # single draw of elbo_nll must equal the exact NLL, with no Monte Carlo error.
    probs = factorised([[0.7, 0.2, 0.1]] * 3)
    oracle = Oracle(probs, 3, 3)
    md = MaskedDiffusion(mask_id=3)
    const = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 2]]).repeat(4, 1)
    est = md.elbo_nll(oracle, const, steps=None, generator=torch.Generator().manual_seed(0))
    want = -torch.tensor([0.7, 0.2, 0.1]).log().repeat(4)
    torch.testing.assert_close(est, want.float())
    est1 = md.elbo_nll(oracle, const, steps=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est1, want.float())


@pytest.mark.parametrize("steps", [None, 2])
def test_elbo_nll_estimator_is_unbiased_for_correlated_data(steps):
    oracle = Oracle(correlated(), 3, 3)
    md = MaskedDiffusion(mask_id=3)
    reps = 400
    g = torch.Generator().manual_seed(0)
    est = md.elbo_nll(oracle, oracle.seqs.repeat(reps, 1), steps=steps, generator=g)
    est = est.view(reps, 27).double()
    mean, se = est.mean(0), est.std(0) / reps**0.5
    nll = -oracle.p.log() / 3
    assert ((mean - nll).abs() <= 5 * se + 1e-6).all()


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_training_loss_estimates_the_nelbo(schedule):
    # E_x~p E_t,z [loss] = H(p) / L for the exact denoiser, whatever the schedule (the weight
    # alpha' / (1 - alpha) undoes the schedule); a loss without the weight would fail this.
    oracle = Oracle(correlated(), 3, 3)
    md = MaskedDiffusion(mask_id=3, schedule=schedule)
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(oracle.p, 60000, replacement=True, generator=g)
    loss = md.loss(oracle, oracle.seqs[idx], generator=g).double()
    entropy = -(oracle.p * oracle.p.log()).sum() / 3
    se = loss.std() / len(loss) ** 0.5
    assert abs(loss.mean() - entropy) <= 5 * se
    assert se < 0.03 * entropy  # the check has teeth: a 15% error would be caught


def test_loss_is_per_example_and_deterministic_with_a_seed():
    oracle = Oracle(correlated(), 3, 3)
    md = MaskedDiffusion(mask_id=3)
    a = md.loss(oracle, oracle.seqs, generator=torch.Generator().manual_seed(5))
    b = md.loss(oracle, oracle.seqs, generator=torch.Generator().manual_seed(5))
    assert a.shape == (27,) and torch.equal(a, b) and (a >= 0).all()


def test_per_sample_generators_make_loss_and_bound_independent_of_the_batch():
    oracle = Oracle(correlated(), 3, 3)
    md = MaskedDiffusion(mask_id=3)
    seqs = oracle.seqs[:6]
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(6)]  # noqa: E731
    for fn in (md.loss, md.elbo_nll):
        batch = fn(oracle, seqs, generator=gens())
        singles = [fn(oracle, seqs[i : i + 1], generator=[gens()[i]]) for i in range(6)]
        torch.testing.assert_close(batch, torch.cat(singles), rtol=0, atol=0)


def test_a_tiny_network_learns_with_finite_gradients_through_subs():
    # SUBS puts -inf in the logits; the loss and its gradients must stay finite, and training
    # must move the bound towards the data entropy (from log 3 = 1.10 nats per token).
    torch.manual_seed(0)
    oracle = Oracle(correlated(), 3, 3)
    emb = torch.nn.Embedding(4, 16)
    head = torch.nn.Linear(3 * 16, 3 * 4)
    net = lambda z, t, cond: head(emb(z).flatten(1)).view(-1, 3, 4)  # noqa: E731
    md = MaskedDiffusion(mask_id=3)
    opt = torch.optim.Adam([*emb.parameters(), *head.parameters()], lr=3e-2)
    g = torch.Generator().manual_seed(0)
    test = oracle.seqs[torch.multinomial(oracle.p, 2000, replacement=True, generator=g)]
    before = md.elbo_nll(net, test, generator=torch.Generator().manual_seed(1)).mean().item()
    for _ in range(150):
        batch = oracle.seqs[torch.multinomial(oracle.p, 256, replacement=True, generator=g)]
        loss = md.loss(net, batch, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad.isfinite().all() for p in [*emb.parameters(), *head.parameters()])
        opt.step()
    with torch.no_grad():
        after = md.elbo_nll(net, test, generator=torch.Generator().manual_seed(1)).mean().item()
    entropy = (-(oracle.p * oracle.p.log()).sum() / 3).item()
    assert after < before - 0.2 and after < entropy + 0.1, (before, after, entropy)


def test_training_times_are_low_discrepancy_with_one_generator():
    md = MaskedDiffusion(mask_id=3, t_min=1e-3)
    t = md.sample_noise_level(64, generator=torch.Generator().manual_seed(0))
    assert ((t >= 1e-3) & (t <= 1)).all()
    u = ((t - 1e-3) / (1 - 1e-3)).sort().values  # one time in each stratum [b/64, (b+1)/64)
    offset = u * 64 - torch.arange(64)
    assert (offset > -1e-4).all() and (offset < 1 + 1e-4).all()
    assert offset.max() - offset.min() < 1e-4  # the same offset in every stratum
