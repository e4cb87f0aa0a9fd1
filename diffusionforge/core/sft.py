"""Conditional generation: (prompt, response) sequences trained on the response only.

LLaDA's supervised fine-tuning (Nie et al. 2025, Sec. 2.3, eq. 5): a training sequence is the
prompt followed by the response (padded with end-of-sequence tokens up to the window, which are
part of the response and learnt, so the model chooses its answer's length). The prompt is never
masked; response tokens are masked as in pre-training, and the loss is the masked cross-entropy
over response positions with the NELBO weight, normalised by the response length:

    L = - E_t [ w(t) / |r| sum_{l in r, z_t^l = m} log p(x^l | z_t) ]

with w(t) = -alpha'_t / (1 - alpha_t) (1 / t for the log-linear schedule, LLaDA's 1/t). The
autoregressive twin scores the same response positions with next-token cross-entropy. `cond`
is the prompt length (B,) long, counted in tokens (the separator included): positions
l >= cond[b] are the response of row b. Networks are called without it (they see the prompt in
the tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from diffusionforge.core.autoregressive import Autoregressive
from diffusionforge.core.discrete import Generator, MaskedDiffusion, TokenNet


def response_mask(tokens: Tensor, prompt_len: Tensor | None) -> Tensor:
    """(B, L) bool: True at response positions (l >= prompt_len[b]); all True without lengths."""
    if prompt_len is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    pos = torch.arange(tokens.shape[1], device=tokens.device)
    return pos.unsqueeze(0) >= prompt_len.to(tokens.device).view(-1, 1)


@dataclass(frozen=True)
class MaskedSFT(MaskedDiffusion):
    """Masked diffusion trained on responses only (LLaDA SFT); sampling is MaskedDiffusion's."""

    def loss(
        self,
        net: TokenNet,
        tokens: Tensor,
        cond: Tensor | None = None,
        *,
        generator: Generator = None,
    ) -> Tensor:
        """One-sample Monte Carlo estimate per example (B,), in nats per response token."""
        response = response_mask(tokens, cond)
        t = self.sample_noise_level(tokens.shape[0], device=tokens.device, generator=generator)
        z = torch.where(response, self.add_noise(tokens, t, generator), tokens)
        logp = self.precondition(net)(z, t, None)
        nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        nll = torch.where(z == self.mask_id, nll, 0.0)
        return self.weight(t) * nll.sum(1) / response.sum(1).clamp(min=1)

    def elbo_nll(self, net, tokens, cond=None, *, steps=None, generator=None) -> Tensor:
        """An unbiased estimate of the response NELBO per response token (B,), prompt given.
        By the any-order form (MaskedDiffusion.elbo_nll), NELBO / |r| = E_k E_{|M| = k}
        [mean_{l in M} -log p(x^l | x with M masked)] with k uniform in 1..|r|: the mean of
        `steps` (default 32) such draws, M random response positions."""
        response = response_mask(tokens, cond)
        b, length = tokens.shape
        n_resp = response.sum(1).clamp(min=1)  # (B,)
        gen = generator if isinstance(generator, torch.Generator) else None
        denoise = self.precondition(net)
        total = torch.zeros(b, device=tokens.device)
        n = steps or 32
        for _ in range(n):
            key = torch.where(response, torch.rand((b, length), generator=gen), 2.0)
            rank = key.argsort(-1).argsort(-1)  # response positions first, in random order
            k = 1 + (torch.rand(b, generator=gen) * n_resp).long().clamp(max=n_resp - 1)
            masked = rank < k.unsqueeze(-1)
            z = tokens.masked_fill(masked, self.mask_id)
            logp = denoise(z, k.float() / n_resp, None)
            nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            total = total + torch.where(masked, nll, 0.0).sum(1) / k
        return total / n


@dataclass(frozen=True)
class AutoregressiveSFT(Autoregressive):
    """The AR twin trained on responses only: next-token cross-entropy at response positions."""

    def nll(self, net: TokenNet, tokens: Tensor, cond: Tensor | None = None) -> Tensor:
        """-log p(response | prompt) / |response| in nats per response token (B,)."""
        response = response_mask(tokens, cond)
        t = torch.zeros(tokens.shape[0], device=tokens.device)
        logp = net(self.inputs(tokens), t, None).float().log_softmax(-1)
        nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return torch.where(response, nll, 0.0).sum(1) / response.sum(1).clamp(min=1)

    def loss(
        self,
        net: TokenNet,
        tokens: Tensor,
        cond: Tensor | None = None,
        *,
        generator: Generator = None,
    ) -> Tensor:
        return self.nll(net, tokens, cond)
