"""Block diffusion: masked diffusion inside blocks, autoregression across them.

BD3-LM (Arriola et al. 2025, "Block Diffusion: Interpolating Between Autoregressive and Diffusion
Language Models", ICLR 2025). A sequence of L tokens is cut into blocks of b tokens; the model
factorises left to right over blocks, p(x) = prod_j p(x^j | x^<j), and each block's conditional
is a masked diffusion model (MDLM, core/discrete.py) given the clean blocks before it. Its NELBO
is the sum of the blocks' NELBOs (BD3-LM eq. 5, one independent time t_j per block):

    NELBO(x) = sum_j int_0^1 alpha'_t / (1 - alpha_t)
                   E_q [ sum_{l in block j: z^l = m} log p(x^l | z^j, x^<j) ] dt_j.

b = 1 is an autoregressive model (a one-token NELBO is exact: -log p(x^l | x^<l)); b = L is
MDLM. Small blocks buy AR's likelihood and KV-cacheable prefixes; within a block tokens are still
drawn in parallel, in any order, and holes inside a block are filled from both sides.

The network is the bidirectional transformer with block attention (nets/transformer.py,
`block=b`): `net(tokens, t, cond)` is block-causal (for sampling: a clean prefix and the block
being drawn), and `net(z, t, cond, clean=x)` is the vectorised training pass over the noisy and
the clean copy at once (BD3-LM Sec. 3.2), which returns the logits of every noisy block given
the clean blocks before it. As in MDLM, the network takes no time input (the masks tell it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.discrete import (
    Cond,
    Generator,
    LogLinear,
    MaskedDiffusion,
    Schedule,
    TokenDenoiser,
    TokenNet,
    subs,
    uniform,
)
from diffusionforge.core.discrete_samplers import Callback, sample_confidence


@dataclass(frozen=True)
class BlockDiffusion:
    """The block-diffusion formulation (DESIGN.md rule 2). Training times are drawn per block,
    low-discrepancy over all blocks of the batch (as MDLM draws them per sequence); with one
    generator per sample each block's time is drawn on its own."""

    mask_id: int
    block: int  # tokens per block, b
    schedule: Schedule = field(default_factory=LogLinear)
    t_min: float = 1e-5
    low_discrepancy: bool = True

    def blocks(self, length: int) -> int:
        return -(-length // self.block)

    def per_token(self, v: Tensor, length: int) -> Tensor:
        """(B, blocks) -> (B, L): each block's value at each of its positions."""
        return v.repeat_interleave(self.block, dim=1)[:, :length]

    def sample_noise_level(
        self,
        batch: int,
        length: int,
        *,
        device: torch.device | str | None = None,
        generator: Generator = None,
    ) -> Tensor:
        """Training times t in [t_min, 1], one per block (B, blocks)."""
        n = self.blocks(length)
        u = uniform((batch, n), generator, device)
        if self.low_discrepancy and (generator is None or isinstance(generator, torch.Generator)):
            u = ((u[0, 0] + torch.arange(batch * n, device=u.device) / (batch * n)) % 1).view(
                batch, n
            )
        return self.t_min + (1 - self.t_min) * u

    def add_noise(self, tokens: Tensor, t: Tensor, generator: Generator = None) -> Tensor:
        """z_t: each token becomes the mask id with probability 1 - alpha(its block's time)."""
        keep = self.per_token(self.schedule.alpha(t.double()).float(), tokens.shape[1])
        masked = uniform(tuple(tokens.shape), generator, tokens.device) >= keep
        return tokens.masked_fill(masked, self.mask_id)

    def precondition(self, net: TokenNet) -> TokenDenoiser:
        """The token seam for sampling: log-probabilities of a block-causal pass (SUBS)."""
        return MaskedDiffusion(self.mask_id, self.schedule).precondition(net)

    def pair_logp(self, net: TokenNet, z: Tensor, tokens: Tensor, cond: Cond = None) -> Tensor:
        """log p (B, L, V) of every noisy block of z given the clean blocks of `tokens` before
        it: one vectorised pass (SUBS: unmasked positions are carried over)."""
        t = (z == self.mask_id).float().mean(1)  # not used by the time-free network
        return subs(net(z, t, cond, clean=tokens), z, self.mask_id)

    def weight(self, t: Tensor) -> Tensor:
        """-alpha'_t / (1 - alpha_t), the NELBO weight (as MDLM's, per block)."""
        return MaskedDiffusion(self.mask_id, self.schedule).weight(t)

    def loss_at(
        self, net: TokenNet, tokens: Tensor, t: Tensor, z: Tensor, cond: Cond = None
    ) -> Tensor:
        """The NELBO integrand at block times t (B, blocks) and noisy tokens z, per example, in
        nats per token: sum over masked positions of weight(t_block) * -log p, divided by L."""
        logp = self.pair_logp(net, z, tokens, cond)
        nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)
        nll = torch.where(z == self.mask_id, nll, 0.0)
        w = self.per_token(self.weight(t), tokens.shape[1])  # (B, L)
        return (w * nll).sum(1) / tokens.shape[1]

    def loss(
        self, net: TokenNet, tokens: Tensor, cond: Cond = None, *, generator: Generator = None
    ) -> Tensor:
        """One-sample Monte Carlo NELBO per example (B,): an unbiased estimate of `elbo_nll`."""
        b, length = tokens.shape
        t = self.sample_noise_level(b, length, device=tokens.device, generator=generator)
        return self.loss_at(net, tokens, t, self.add_noise(tokens, t, generator), cond)

    def elbo_nll(
        self,
        net: TokenNet,
        tokens: Tensor,
        cond: Cond = None,
        *,
        steps: int | None = None,
        generator: Generator = None,
    ) -> Tensor:
        """An unbiased estimate of the NELBO in nats per token (B,), an upper bound on
        -log p(x) / L. Per block, the any-order form of discrete.MaskedDiffusion.elbo_nll:
        NELBO_j = sum_{k=1}^{b} E_{|M| = k} [ mean_{l in M} -log p(x^l | ...) ]; every block of
        an example gets k masks at once (its own random order), so one pass per k serves them
        all. `steps=None` takes every k = 1..b (b passes); `steps=n` one k from each of n strata
        of 1..b, weighted by the stratum size. L must be a whole number of blocks."""
        b, length = tokens.shape
        if length % self.block:
            raise ValueError(f"elbo_nll: length {length} is not a multiple of {self.block}")
        size = self.block
        n = size if steps is None else min(steps, size)
        u = uniform((b, length), generator, tokens.device).view(b, -1, size)
        rank = u.argsort(-1).argsort(-1).view(b, length)  # a random order within each block
        edges = [round(j * size / n) for j in range(n + 1)]
        pick = uniform((b, n), generator, tokens.device)
        total = torch.zeros(b, device=tokens.device)
        for j in range(n):
            lo, width = edges[j], edges[j + 1] - edges[j]
            k = lo + 1 + (pick[:, j] * width).long().clamp(max=width - 1)  # (B,) in (lo, lo+w]
            masked = rank < k.unsqueeze(-1)  # (B, L): k masks in every block
            z = tokens.masked_fill(masked, self.mask_id)
            logp = self.pair_logp(net, z, tokens, cond)
            nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            total = total + width * torch.where(masked, nll, 0.0).sum(1) / k
        return total / length


def sample_blocks(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    steps: int,
    *,
    mask_id: int,
    block: int,
    inner: Callable[..., Tensor] = sample_confidence,
    context: Callable[[Tensor, int], TokenDenoiser] | None = None,
    window: int | None = None,
    callback: Callback = None,
    **kw: Any,
) -> Tensor:
    """Block-diffusion sampling (BD3-LM Alg. 2): left to right, the masks of each block of
    `block` tokens are filled by the masked-diffusion sampler `inner` (a TOKEN_SAMPLERS entry,
    given the other keywords: schedule, generator, temperature...) on that block, given the
    finished text before it. `steps` is shared among the blocks in proportion to their masks'
    share of the row (at least one step each). Given tokens are kept; a block sees no text
    after it.

    `window` (the network's context; default: all of `tokens`) is the most text the network
    sees: past it, a block sees the whole blocks of the last window - block tokens before it
    (a sliding window, so any length can be written). `context(prefix, offset) ->
    denoise_block` makes the block's denoiser given its prefix x[:, offset:start]: by default
    `denoise_tokens` on prefix + block (the prefix rerun at every step); a key/value cache of
    the prefix gives the same logits at a block's cost per step (pipelines/text.py)."""
    x = tokens.clone()
    length = x.shape[1]
    keep = (min(window or length, length) - block) // block * block  # context tokens kept
    total = max(1, int((x == mask_id).sum(1).max()))
    for j, start in enumerate(range(0, length, block)):
        end = min(start + block, length)
        todo = int((x[:, start:end] == mask_id).sum(1).max())
        if not todo:
            continue
        offset = max(0, start - keep)  # whole blocks, so the block structure is kept
        if context is None:
            prefix = x[:, offset:start]

            def denoise(z: Tensor, t: Tensor, c: Cond = None, prefix=prefix) -> Tensor:
                return denoise_tokens(torch.cat([prefix, z], 1), t, c)[:, prefix.shape[1] :]
        else:
            denoise = context(x[:, offset:start], offset)
        report = None if callback is None else lambda info, j=j: callback({"block": j, **info})
        n = max(1, round(steps * todo / total))
        x[:, start:end] = inner(denoise, x[:, start:end], n, mask_id=mask_id, callback=report, **kw)
    return x
