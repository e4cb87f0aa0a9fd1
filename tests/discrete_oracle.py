"""Exact denoisers for tiny token distributions, shared by the discrete-diffusion tests.

All sequences of length L over S symbols (ids 0..S-1, mask id S) with known probabilities; the
exact posterior over a masked position given the unmasked ones is a sum over the sequences that
agree with them, so an `Oracle` is the perfect denoise_tokens for that distribution.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


class Oracle:
    """denoise_tokens(tokens (B, L), t, cond) -> log p(x^l = v | unmasked tokens) (B, L, V).

    Ignores t, as an exact posterior must. `calls` counts network evaluations. `blur` mixes each
    posterior with the uniform law over symbols: a deliberately wrong (inexact) denoiser."""

    def __init__(self, probs: Tensor, symbols: int, length: int, blur: float = 0.0) -> None:
        self.seqs = torch.tensor(list(itertools.product(range(symbols), repeat=length)))  # (N, L)
        self.p = probs.double() / probs.sum()
        self.mask_id, self.vocab, self.blur, self.calls = symbols, symbols + 1, blur, 0
        self.onehot = torch.nn.functional.one_hot(self.seqs, self.vocab).double()  # (N, L, V)

    def __call__(self, tokens: Tensor, t: Tensor, cond=None) -> Tensor:
        self.calls += 1
        agree = (tokens[:, None, :] == self.seqs[None]) | (tokens[:, None, :] == self.mask_id)
        w = agree.all(-1) * self.p  # (B, N): prior mass of the sequences consistent with tokens
        post = torch.einsum("bn,nlv->blv", w, self.onehot) / w.sum(1)[:, None, None]
        if self.blur:
            uniform = torch.zeros(self.vocab, dtype=post.dtype)
            uniform[: self.mask_id] = 1 / self.mask_id
            masked = (tokens == self.mask_id)[..., None]
            post = torch.where(masked, (1 - self.blur) * post + self.blur * uniform, post)
        return post.log().float()

    def index(self, tokens: Tensor) -> Tensor:
        """Row index of each sequence in `seqs` (B,), for histograms."""
        base = self.mask_id ** torch.arange(tokens.shape[1] - 1, -1, -1)
        return (tokens * base).sum(1)


def correlated(symbols: int = 3, length: int = 3, seed: int = 0) -> Tensor:
    """A strongly correlated law: random positive weights, sharpened so that it is far from the
    product of its marginals."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(symbols**length, generator=g, dtype=torch.float64) ** 4 + 1e-3


def factorised(marginals: list[list[float]]) -> Tensor:
    """The product law of independent positions with the given marginals (one list per position)."""
    p = torch.ones(())
    for m in marginals:
        p = (p[..., None] * torch.tensor(m, dtype=torch.float64)).flatten()
    return p
