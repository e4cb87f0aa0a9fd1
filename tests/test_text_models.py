"""The transformer (nets/transformer.py), the AR objective and sampler (core/autoregressive.py),
prompt templates and the text pipeline, and a tiny end-to-end training through the engine."""

import math

import pytest
import torch

from diffusionforge.core.autoregressive import Autoregressive, sample_autoregressive
from diffusionforge.core.discrete import MaskedDiffusion
from diffusionforge.data.tokenizers import CharTokenizer
from diffusionforge.errors import UserError
from diffusionforge.nets.transformer import TransformerLM, apply_rope, rope_tables
from diffusionforge.pipelines.text import encode_template


def test_rope_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    cos, sin = rope_tables(32, 16)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q.view(1, 1, 1, 16), cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k.view(1, 1, 1, 16), cos[n : n + 1], sin[n : n + 1])
        return float((qm * kn).sum())

    assert math.isclose(score(5, 2), score(20, 17), rel_tol=1e-4, abs_tol=1e-5)
    assert math.isclose(score(3, 3), float(q @ k), rel_tol=1e-5, abs_tol=1e-5)  # no rotation
    assert not math.isclose(score(5, 2), score(5, 9), rel_tol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_mask_decides_which_positions_see_a_change(causal):
    torch.manual_seed(0)
    net = TransformerLM(12, 10, dim=32, depth=2, heads=2, causal=causal).eval()
    x = torch.randint(2, 12, (1, 10))
    y = x.clone()
    y[0, 6] = (x[0, 6] - 1) % 10 + 2  # change position 6
    diff = (net(x) - net(y)).abs().amax(-1)[0]  # (L,)
    if causal:
        assert diff[:6].max() < 1e-6 and diff[6:].min() > 1e-6
    else:
        assert diff.min() > 1e-6
    assert net(x[:, :7]).shape == (1, 7, 12)  # shorter windows: RoPE is relative


def test_losses_at_initialisation_match_the_uniform_closed_form():
    """Near-zero logits at init: masked diffusion's NELBO per token is E[w(t) * masked / L] *
    log(V - 1) = log(V - 1) (SUBS removes the mask token; E[masked fraction / t] = 1 for the
    log-linear schedule); the AR loss is log V."""
    torch.manual_seed(0)
    vocab, length = 30, 32
    x = torch.randint(2, vocab, (512, length))
    g = torch.Generator().manual_seed(1)
    bi = TransformerLM(vocab, length, dim=32, depth=1, heads=2)
    causal = TransformerLM(vocab, length, dim=32, depth=1, heads=2, causal=True)
    with torch.no_grad():
        mdlm = MaskedDiffusion(mask_id=1).loss(bi, x, generator=g).mean()
        ar = Autoregressive(bos_id=1).loss(causal, x).mean()
    assert abs(float(mdlm) - math.log(vocab - 1)) < 0.04 * math.log(vocab - 1)
    assert abs(float(ar) - math.log(vocab)) < 0.01 * math.log(vocab)


class MarkovNet:
    """A causal 'network' with exact next-token law p(next | prev) = table[prev]."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # (V, V) log-probabilities

    def __call__(self, tokens, t, cond=None):
        return self.table[tokens]  # (B, L, V): row l is the law of token l + 1


def test_ar_nll_and_sampler_follow_an_exact_markov_chain():
    vocab, bos = 5, 1
    p = torch.full((vocab, vocab), 1e-9)
    p[bos, 2:] = torch.tensor([0.5, 0.3, 0.2])  # first token
    p[2:, 2:] = torch.tensor([[0.1, 0.8, 0.1], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]])
    table = (p / p.sum(1, keepdim=True)).log()
    net = MarkovNet(table)
    x = torch.tensor([[2, 3, 2, 4]])
    want = -(table[1, 2] + table[2, 3] + table[3, 2] + table[2, 4]) / 4
    assert torch.allclose(Autoregressive(bos_id=bos).nll(net, x), want.view(1), atol=1e-6)
    start = torch.full((4000, 2), bos)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    out = sample_autoregressive(net, start, bos_id=bos, mask_id=bos, generator=gens)
    pairs = torch.bincount((out[:, 0] - 2) * 3 + out[:, 1] - 2, minlength=9).double()
    law = (p[bos, 2:, None] * p[2:, 2:]).flatten().double()
    chi2 = float(((pairs - 4000 * law) ** 2 / (4000 * law)).sum())
    assert chi2 < 26.12  # chi-square, 8 degrees of freedom, p = 0.001
    given = torch.tensor([[bos, 4]])  # a fixed token after a hole is kept
    kept = sample_autoregressive(net, given, bos_id=bos, mask_id=bos, generator=gens[:1])
    assert kept[0, 1] == 4 and kept[0, 0] != bos


def test_templates_turn_holes_into_masks_and_refuse_unknown_characters():
    tok = CharTokenizer.from_text("abc .")
    ids = encode_template(tok, "ab [____] c[_:3].", hole=2)
    assert ids.tolist() == tok.encode("ab ") + [1, 1] + tok.encode(" c") + [1, 1, 1] + [
        tok.encode(".")[0]
    ]
    with pytest.raises(UserError, match="unknown character 'Z'"):
        encode_template(tok, "aZ [____]", hole=2)
    with pytest.raises(UserError, match="at least one token"):
        encode_template(tok, "a [__:0]", hole=2)


def test_bpe_templates_give_the_space_before_a_hole_to_the_generated_word():
    from diffusionforge.data.tokenizers import BPETokenizer

    bpe = BPETokenizer.train(["the cat sat on the mat."] * 20, vocab_size=300)
    ids = encode_template(bpe, "the cat [____:2] mat.", hole=1).tolist()
    assert ids == bpe.encode("the cat") + [bpe.mask_id] * 2 + bpe.encode(" mat.")
    assert bpe.decode(bpe.encode("the cat") + bpe.encode(" sat on the") + bpe.encode(" mat.")) == (
        "the cat sat on the mat."
    )
