"""Self-verified masked-diffusion sampling (core/discrete_verify.py): leave-one-out
probabilities against the exact conditionals of a known distribution, the choice of the draw
of highest pseudo-likelihood, redraws only for doubted rows, fixed tokens never changed; and
the digits-only Sudoku denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from discrete_oracle import Oracle

from diffusionforge.core.discrete_samplers import sample_margin
from diffusionforge.core.discrete_verify import leave_one_out, sample_verified
from diffusionforge.pipelines.text_pairs import only_tokens

S, L = 3, 4


def _oracle() -> Oracle:
    g = torch.Generator().manual_seed(3)
    return Oracle(torch.rand(S**L, generator=g) ** 4, S, L)


def _prob(o: Oracle, seq: list[int]) -> float:
    return float(o.p[o.index(torch.tensor([seq]))[0]])


def test_leave_one_out_is_the_exact_conditional():
    """log p(x_j | x_-j) = log P(x) - log sum_v P(x with x_j = v), by enumeration."""
    o = _oracle()
    tokens = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1], [1, 0, 0, 2]])
    positions = torch.tensor([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    got = leave_one_out(o, tokens, positions, mask_id=o.mask_id, batch=3)
    for b in range(3):
        for j in range(L):
            if not positions[b, j]:
                assert got[b, j] == 0.0
                continue
            seq = tokens[b].tolist()
            total = sum(_prob(o, seq[:j] + [v] + seq[j + 1 :]) for v in range(S))
            want = math.log(_prob(o, seq) / total)
            assert got[b, j].item() == pytest.approx(want, abs=1e-5)
    assert torch.equal(got, leave_one_out(o, tokens, positions, mask_id=o.mask_id, batch=1000))


def _pll(o: Oracle, seq: list[int], free: list[bool]) -> float:
    out = 0.0
    for j in range(L):
        if free[j]:
            total = sum(_prob(o, seq[:j] + [v] + seq[j + 1 :]) for v in range(S))
            out += math.log(_prob(o, seq) / total)
    return out


def test_keeps_the_draw_of_highest_pseudo_likelihood_and_redraws_only_doubted_rows():
    o = _oracle()
    m = o.mask_id
    start = torch.tensor([[0, m, m, 1], [m, m, m, m]])
    free = (start == m).tolist()
    # scripted draws: every call returns the next candidate for the rows it is asked for
    script = [
        torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]]),
        torch.tensor([[0, 1, 2, 1], [1, 2, 0, 1]]),
        torch.tensor([[0, 2, 2, 1], [2, 1, 1, 0]]),
    ]
    asked: list[list[int]] = []

    def inner(denoise, tokens, steps, *, mask_id, temperature, generator, cond, **kw):
        call = len(asked)
        asked.append(list(generator))
        return torch.stack([script[call][r] for r in generator])

    # the generators are the row indices here, so the script knows which rows it was asked for
    out = sample_verified(
        o, start, 2, mask_id=m, inner=inner, draws=3, accept=1.0, generator=[0, 1]
    )
    assert asked == [[0, 1], [0, 1], [0, 1]]  # accept=1.0: nothing is ever sure enough
    for r in range(2):
        scores = [_pll(o, script[c][r].tolist(), free[r]) for c in range(3)]
        assert out[r].tolist() == script[max(range(3), key=scores.__getitem__)][r].tolist()

    # a threshold every first draw passes: one draw, no retry
    asked.clear()
    sample_verified(o, start, 2, mask_id=m, inner=inner, draws=3, accept=1e-12, generator=[0, 1])
    assert asked == [[0, 1]]


def test_only_doubted_rows_are_drawn_again_with_their_own_generators():
    o = _oracle()
    m = o.mask_id
    start = torch.tensor([[m, m, m, m], [m, m, m, m]])
    every = leave_one_out(o, o.seqs, torch.ones_like(o.seqs, dtype=torch.bool), mask_id=m)
    weakest = every.min(1).values  # per sequence: the least sure position
    sure, unsure = o.seqs[weakest.argmax()], o.seqs[weakest.argmin()]
    accept = math.exp(float(weakest.min()) / 2 + float(weakest.max()) / 2)  # between the two
    asked = []

    def inner(denoise, tokens, steps, *, mask_id, temperature, generator, cond, **kw):
        asked.append((list(generator), temperature))
        return torch.stack([sure if g == "g0" else unsure for g in generator])

    reports = []
    sample_verified(
        o, start, 4, mask_id=m, inner=inner, draws=4, accept=accept, generator=["g0", "g1"],
        retry_temperature=0.7, callback=reports.append,
    )  # fmt: skip
    assert asked == [(["g0", "g1"], 0.0), (["g1"], 0.7), (["g1"], 0.7), (["g1"], 0.7)]
    assert [r["rows"] for r in reports] == [2, 1, 1, 1]
    assert [r["accepted"] for r in reports] == [1, 1, 1, 1]


def test_given_tokens_are_never_changed_with_a_real_sampler():
    o = _oracle()
    m = o.mask_id
    start = torch.tensor([[2, m, m, 0], [m, 1, m, m], [0, 0, m, 1]] * 3)
    gens = [torch.Generator().manual_seed(i) for i in range(len(start))]
    out = sample_verified(
        o, start, L, mask_id=m, inner=sample_margin, draws=6, accept=0.99, generator=gens
    )
    given = start != m
    assert torch.equal(out[given], start[given])
    assert not (out == m).any()


@pytest.mark.parametrize("bad", [dict(draws=0), dict(accept=0.0), dict(accept=1.5)])
def test_bad_settings_are_one_line_errors(bad):
    o = _oracle()
    start = torch.full((1, L), o.mask_id)
    kw = dict(draws=2, accept=0.9) | bad
    with pytest.raises(ValueError, match="draws must|accept must"):
        sample_verified(o, start, L, mask_id=o.mask_id, inner=sample_margin, **kw)


def test_only_tokens_renormalises_over_the_allowed_ones():
    o = _oracle()
    tokens = torch.tensor([[o.mask_id, 1, 2, o.mask_id]])
    t = torch.zeros(1)
    full = o(tokens, t).double().exp()
    got = only_tokens(o, [0, 2])(tokens, t).double().exp()
    want = full.clone()
    want[..., [1, 3]] = 0.0
    want = want / want.sum(-1, keepdim=True)
    masked = [0, 3]  # a given token outside the allowed set is not a case that arises
    assert torch.allclose(got[:, masked], want[:, masked], atol=1e-6)
