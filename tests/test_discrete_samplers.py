"""Token samplers (core/discrete_samplers.py) with an exact oracle denoiser: distributions,
infilling, caching, determinism, batch invariance, re-entrancy and the shaping knobs."""

import threading

import pytest
import torch
from discrete_oracle import Oracle, correlated

from diffusionforge.core.discrete_samplers import (
    TOKEN_SAMPLERS,
    draw,
    filter_logits,
    sample_ancestral,
    sample_confidence,
    sample_semi_ar,
)

M = 3  # mask id: symbols 0, 1, 2
CHI2_26, CHI2_8, CHI2_2 = 54.05, 26.12, 13.82  # chi-square quantiles at p = 0.001
SAMPLERS = sorted(TOKEN_SAMPLERS.items())


def chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    return float(((counts - n * probs) ** 2 / (n * probs)).sum())


def histogram(oracle: Oracle, tokens: torch.Tensor) -> torch.Tensor:
    return torch.bincount(oracle.index(tokens), minlength=len(oracle.p)).double()


def test_ancestral_sampling_reproduces_a_correlated_law():
    oracle = Oracle(correlated(), 3, 3)
    start = torch.full((5000, 3), M)
    out = sample_ancestral(
        oracle, start, 128, mask_id=M, generator=torch.Generator().manual_seed(0)
    )
    assert chi2(histogram(oracle, out), oracle.p) < CHI2_26
    # One step reveals all positions at once, independently: the product of the marginals, which
    # the test above must tell apart from the data (else it would prove nothing).
    one = sample_ancestral(oracle, start, 1, mask_id=M, generator=torch.Generator().manual_seed(0))
    marg = [torch.bincount(oracle.seqs[:, i], weights=oracle.p, minlength=3) for i in range(3)]
    product = marg[0][:, None, None] * marg[1][None, :, None] * marg[2][None, None, :]
    assert chi2(histogram(oracle, one), product.flatten()) < CHI2_26
    assert chi2(histogram(oracle, one), oracle.p) > 10 * CHI2_26


@pytest.mark.parametrize("name", ["ancestral", "semi_ar"])
def test_infilling_keeps_given_tokens_and_samples_the_conditional(name):
    oracle = Oracle(correlated(), 3, 3)
    start = torch.tensor([[M, 2, M]]).repeat(3000, 1)  # a hole on each side of a given token
    g = torch.Generator().manual_seed(1)
    kw = {"inner": sample_ancestral} if name == "semi_ar" else {}
    out = TOKEN_SAMPLERS[name](oracle, start, 64, mask_id=M, generator=g, **kw)
    assert (out[:, 1] == 2).all()
    cond = oracle.p * (oracle.seqs[:, 1] == 2)
    keep = cond > 0
    assert chi2(histogram(oracle, out)[keep], (cond / cond.sum())[keep]) < CHI2_8


@pytest.mark.parametrize(("name", "sampler"), SAMPLERS)
def test_every_sampler_fills_all_masks_and_never_touches_given_tokens(name, sampler):
    # A denoiser that is not SUBS-parametrised proposes other tokens at given positions too: the
    # samplers themselves must keep them (and must never propose the mask, given -inf there).
    def babbler(tokens, t, cond=None):
        logits = torch.randn(*tokens.shape, 4, generator=torch.Generator().manual_seed(len(t)))
        return logits.index_fill(-1, torch.tensor([M]), -float("inf"))

    g = torch.Generator().manual_seed(2)
    start = torch.randint(0, 4, (200, 3), generator=g)  # random holes, given tokens elsewhere
    for denoise in (Oracle(correlated(), 3, 3), babbler):
        out = sampler(denoise, start, 5, mask_id=M, generator=g)
        given = start != M
        assert (out != M).all() and torch.equal(out[given], start[given])


@pytest.mark.parametrize(("name", "sampler"), SAMPLERS)
def test_caching_gives_identical_tokens_with_fewer_network_calls(name, sampler):
    start = torch.full((4, 3), M)
    runs = {}
    for cache in (True, False):
        oracle, nfes = Oracle(correlated(), 3, 3), []
        out = sampler(
            oracle,
            start,
            64,
            mask_id=M,
            cache=cache,
            callback=lambda d, nfes=nfes: nfes.append(d["nfe"]),
            generator=torch.Generator().manual_seed(3),
        )
        runs[cache] = out, oracle.calls
        assert nfes[-1] == oracle.calls  # the callback's count is the true count
    assert torch.equal(runs[True][0], runs[False][0])
    assert runs[False][1] == 64
    # A call is needed only after a step that revealed something: at most 12 reveals + 1.
    assert runs[True][1] <= 13


@pytest.mark.parametrize(("name", "sampler"), SAMPLERS)
def test_same_seed_same_tokens_other_seed_other_tokens(name, sampler):
    oracle, start = Oracle(correlated(), 3, 3), torch.full((64, 3), M)
    a, b, c = (
        sampler(oracle, start, 8, mask_id=M, generator=torch.Generator().manual_seed(s))
        for s in (7, 7, 8)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("name", "sampler"), SAMPLERS)
def test_per_sample_generators_make_samples_independent_of_the_batch(name, sampler):
    oracle = Oracle(correlated(), 3, 3)
    start = torch.tensor([[M, M, M], [0, M, M], [M, M, 1], [M, 2, M], [M, M, M]])
    gens = [torch.Generator().manual_seed(100 + i) for i in range(5)]
    batch = sampler(oracle, start, 6, mask_id=M, generator=gens)
    for i in range(5):
        one = sampler(
            oracle,
            start[i : i + 1],
            6,
            mask_id=M,
            generator=[torch.Generator().manual_seed(100 + i)],
        )
        assert torch.equal(one[0], batch[i])


@pytest.mark.parametrize(("name", "sampler"), SAMPLERS)
def test_two_threads_at_once_give_the_sequential_results(name, sampler):
    oracle, start = Oracle(correlated(), 3, 3), torch.full((300, 3), M)
    run = lambda s: sampler(
        oracle, start, 16, mask_id=M, generator=torch.Generator().manual_seed(s)
    )
    expected = {s: run(s) for s in (1, 2)}
    got, barrier = {}, threading.Barrier(2)

    def worker(s):
        barrier.wait()
        for _ in range(3):  # interleave several runs in each thread
            got[s] = run(s)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(torch.equal(got[s], expected[s]) for s in (1, 2))


# --- temperature, top-k, top-p -----------------------------------------------------------------


def test_top_k_keeps_exactly_the_k_most_probable():
    logits = torch.tensor([[1.0, 3.0, -2.0, 2.5, 0.0]])
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[False, True, False, True, False]]
    assert filter_logits(logits, top_k=5).isfinite().all()


def test_top_p_keeps_the_smallest_nucleus_including_the_crossing_token():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()[None]
    assert filter_logits(logits, top_p=0.75).isfinite().tolist() == [[False, True, False, True]]
    assert filter_logits(logits, top_p=0.45).isfinite().tolist() == [[False, True, False, False]]
    assert filter_logits(logits, top_p=0.99).isfinite().all()


def test_temperature_sharpens_as_a_power_of_the_probabilities():
    probs = torch.tensor([0.6, 0.3, 0.1])
    n = 40000
    u = torch.rand(1, n, generator=torch.Generator().manual_seed(0))
    logits = probs.log().expand(1, n, 3)
    for temp in (0.5, 1.0, 2.0):
        want = probs ** (1 / temp) / (probs ** (1 / temp)).sum()
        counts = torch.bincount(draw(filter_logits(logits, temp), u, temp)[0], minlength=3)
        assert chi2(counts.double(), want.double()) < CHI2_2
    assert (draw(filter_logits(logits, 0.0), u, 0.0) == 0).all()  # temperature 0: the argmax


def test_samplers_apply_the_knobs_top_k_one_is_greedy():
    oracle, start = Oracle(correlated(), 3, 3), torch.full((50, 3), M)
    for sampler in (sample_ancestral, sample_confidence):
        greedy = sampler(
            oracle, start, 4, mask_id=M, temperature=0.0, generator=torch.Generator().manual_seed(0)
        )
        top1 = sampler(
            oracle, start, 4, mask_id=M, top_k=1, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(greedy, top1)


# --- confidence remasking and semi-autoregressive blocks -----------------------------------------


def test_confidence_reveals_on_schedule_and_most_confident_first():
    oracle = Oracle(correlated(), 3, 3)
    masks_left = []
    out = sample_confidence(
        oracle,
        torch.full((1, 3), M),
        3,
        mask_id=M,
        temperature=0.0,
        callback=lambda d: masks_left.append((d["tokens"] == M).sum().item()),
    )
    assert masks_left == [2, 1, 0]  # log-linear: a third of the masks per step
    first = oracle(torch.full((1, 3), M), torch.ones(1))[0].exp()  # marginals (L, V)
    pos = first.max(-1).values.argmax()
    assert out[0, pos] == first[pos].argmax()


def test_semi_ar_extends_past_the_window_with_the_right_conditional():
    oracle = Oracle(correlated(), 3, 3)
    lengths = []

    def windowed(tokens, t, cond=None):
        lengths.append(tokens.shape[1])
        return oracle(tokens, t, cond)

    start = torch.tensor([[0, 1, 2, M, M, M, M]]).repeat(3000, 1)
    out = sample_semi_ar(
        windowed,
        start,
        16,
        mask_id=M,
        window=3,
        block=1,
        inner=sample_ancestral,
        generator=torch.Generator().manual_seed(4),
    )
    assert set(lengths) == {3} and (out != M).all() and torch.equal(out[:, :3], start[:, :3])
    # position 3 is drawn in the window (1, 2, [3]): from p(x_2 | x_0 = 1, x_1 = 2)
    cond = oracle.p.view(3, 3, 3)[1, 2]
    counts = torch.bincount(out[:, 3], minlength=3).double()
    assert chi2(counts, cond / cond.sum()) < CHI2_2
