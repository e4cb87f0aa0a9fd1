"""Masked (absorbing-state) diffusion over tokens in continuous time.

MDLM (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models") and MD4 (Shi et
al. 2024, "Simplified and Generalized Masked Diffusion for Discrete Data"). Each token of a clean
sequence x is replaced by the mask token m independently with probability 1 - alpha_t, where
alpha_t falls from alpha_0 = 1 to alpha_1 = 0 (MDLM Sec. 3, the absorbing-state forward process):

    q(z_t | x) = prod_l Cat(z_t^l; alpha_t x^l + (1 - alpha_t) m)

The token seam (DESIGN.md) is

    denoise_tokens(tokens, t, cond) -> logits (B, L, V)   # t a (B,) tensor in [0, 1]

giving, at every position, the log-probabilities of the clean token; V counts the mask id too.
`MaskedDiffusion.precondition(net)` makes one from a network with the SUBS parametrisation (MDLM
Sec. 3.2): the mask token gets probability zero and unmasked positions are carried over.
The continuous-time NELBO (MDLM eq. 10, MD4 eq. 5) is a weighted masked cross-entropy,

    NELBO(x) = int_0^1 alpha'_t / (1 - alpha_t) E_q [ sum_{l: z_t^l = m} log p(x^l | z_t) ] dt,

whose value does not depend on the schedule (substitute alpha for t).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Cond = Any
# denoise_tokens(tokens (B, L) long, t (B,), cond) -> log-probabilities (B, L, V)
TokenDenoiser = Callable[[Tensor, Tensor, Cond], Tensor]
# A network in our convention: net(tokens, c_noise, cond) -> logits (B, L, V); here c_noise = t.
TokenNet = Callable[[Tensor, Tensor, Cond], Tensor]
Generator = torch.Generator | Sequence[torch.Generator] | None


# --- randomness: one generator, or one per sample (then rows do not depend on the batch) ---------


def uniform(
    shape: tuple[int, ...], generator: Generator, device: torch.device | str | None
) -> Tensor:
    """U[0, 1) floats of `shape` (B, ...); with a list of generators row b comes from the b-th."""
    if generator is None or isinstance(generator, torch.Generator):
        dev = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=dev).to(device)
    rows = [torch.rand(shape[1:], generator=g, device=g.device) for g in generator]
    return torch.stack(rows).to(device)


# --- schedules: alpha(t), the probability that a token is still clean at time t ------------------


@dataclass(frozen=True)
class LogLinear:
    """alpha_t = 1 - t: MDLM's default ("log-linear" because the total noise -log alpha_t is),
    and MD4's "linear". The mask rate grows uniformly in t; the NELBO weight is -1 / t."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def dalpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


@dataclass(frozen=True)
class Cosine:
    """alpha_t = 1 - cos(pi/2 (1 - t)), MD4's cosine schedule: few masks early, many late."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - torch.cos(math.pi / 2 * (1 - t))

    def dalpha(self, t: Tensor) -> Tensor:
        return -math.pi / 2 * torch.sin(math.pi / 2 * (1 - t))


@dataclass(frozen=True)
class Linear:
    """Total noise linear in t: alpha_t = exp(-sigma_max t) (MDLM's "linear" noise). alpha_1 =
    exp(-sigma_max) is not exactly 0; with the default 10 a token survives with p = 4.5e-5."""

    sigma_max: float = 10.0

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-self.sigma_max * t)

    def dalpha(self, t: Tensor) -> Tensor:
        return -self.sigma_max * torch.exp(-self.sigma_max * t)


Schedule = LogLinear | Cosine | Linear


# --- the formulation ---------------------------------------------------------------------------


def subs(logits: Tensor, tokens: Tensor, mask_id: int) -> Tensor:
    """SUBS parametrisation (MDLM Sec. 3.2): zero probability for the mask token ("zero masking
    probabilities") and the given token, with certainty, wherever the input is unmasked ("carry-over
    unmasking"). Returns log-probabilities (B, L, V) in float32."""
    is_mask = torch.arange(logits.shape[-1], device=logits.device) == mask_id  # (V,)
    logp = logits.float().masked_fill(is_mask, -math.inf).log_softmax(-1)
    carried = torch.full_like(logp, -math.inf).scatter_(-1, tokens.unsqueeze(-1), 0.0)
    return torch.where((tokens == mask_id).unsqueeze(-1), logp, carried)


@dataclass(frozen=True)
class MaskedDiffusion:
    """The masked-diffusion formulation (DESIGN.md rule 2): sample_noise_level draws t, add_noise
    masks, precondition makes the token seam, loss is the NELBO; elbo_nll evaluates it.

    `t_min` keeps training times off t = 0, where the weight alpha' / (1 - alpha) diverges while
    no token is masked. Training times are low-discrepancy as in MDLM (after VDM, Kingma et al.
    2021: t_b = (u + b) / B mod 1 for one uniform u), which lowers the variance of the batch-mean
    loss without biasing it. With one generator per sample each t is drawn on its own, so no
    sample depends on its batch.
    """

    mask_id: int
    schedule: Schedule = field(default_factory=LogLinear)
    t_min: float = 1e-5
    low_discrepancy: bool = True

    def sample_noise_level(
        self, batch: int, *, device: torch.device | str | None = None, generator: Generator = None
    ) -> Tensor:
        """Training times t in [t_min, 1] (B,): the noise level of this family."""
        u = uniform((batch,), generator, device)
        if self.low_discrepancy and (generator is None or isinstance(generator, torch.Generator)):
            u = (u[:1] + torch.arange(batch, device=u.device) / batch) % 1
        return self.t_min + (1 - self.t_min) * u

    def add_noise(self, tokens: Tensor, t: Tensor, generator: Generator = None) -> Tensor:
        """z_t: each token becomes the mask id independently with probability 1 - alpha_t."""
        keep = self.schedule.alpha(t.double()).float().unsqueeze(-1)  # (B, 1)
        masked = uniform(tuple(tokens.shape), generator, tokens.device) >= keep
        return tokens.masked_fill(masked, self.mask_id)

    def precondition(self, net: TokenNet) -> TokenDenoiser:
        def denoise_tokens(tokens: Tensor, t: Tensor, cond: Cond = None) -> Tensor:
            return subs(net(tokens, t, cond), tokens, self.mask_id)

        return denoise_tokens

    def weight(self, t: Tensor) -> Tensor:
        """-alpha'_t / (1 - alpha_t) >= 0, the NELBO weight of the masked cross-entropy."""
        t = t.double()
        return (-self.schedule.dalpha(t) / (1 - self.schedule.alpha(t))).float()

    def loss(
        self, net: TokenNet, tokens: Tensor, cond: Cond = None, *, generator: Generator = None
    ) -> Tensor:
        """One-sample Monte Carlo NELBO (MDLM eq. 10 / MD4 eq. 5), per example, in nats per
        token (the sequence NELBO divided by L): an unbiased estimate of `elbo_nll`."""
        t = self.sample_noise_level(tokens.shape[0], device=tokens.device, generator=generator)
        z = self.add_noise(tokens, t, generator)
        logp = self.precondition(net)(z, t, cond)  # (B, L, V)
        nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)
        nll = torch.where(z == self.mask_id, nll, 0.0)  # carried-over positions cost nothing
        return self.weight(t) * nll.sum(1) / tokens.shape[1]

    def elbo_nll(
        self,
        net: TokenNet,
        tokens: Tensor,
        cond: Cond = None,
        *,
        steps: int | None = None,
        generator: Generator = None,
    ) -> Tensor:
        """An unbiased estimate of the NELBO in nats per token (B,), which bounds the model's
        -log p(x) / L from above (its exp bounds the perplexity). The time integral is done
        exactly; only which positions are masked is sampled.

        Substituting m = 1 - alpha_t in the NELBO and integrating the binomial law of the number
        of masks k gives int_0^1 m^(k-1) (1-m)^(L-k) dm * C(L, k) = 1 / k, so

            NELBO = sum_{k=1}^{L} E_{|M| = k} [ mean_{l in M} -log p(x^l | x with M masked) ],

        whatever the schedule: the any-order autoregressive form (Hoogeboom et al. 2022, ARDM;
        Ou et al. 2024, RADD). `steps=None` takes every k = 1..L (L network calls); `steps=n`
        takes one k from each of n equal strata of 1..L, weighted by the stratum size: unbiased,
        n calls. The masks of one example are nested (the first k of one random permutation).
        """
        b, length = tokens.shape
        n = length if steps is None else min(steps, length)
        order = uniform((b, length), generator, tokens.device).argsort(-1)  # random permutation
        rank = order.argsort(-1)  # rank[b, l]: the position of l in the permutation
        edges = [round(j * length / n) for j in range(n + 1)]  # strata of k: (edges[j], edges[j+1]]
        pick = uniform((b, n), generator, tokens.device)
        denoise = self.precondition(net)
        total = torch.zeros(b, device=tokens.device)
        for j in range(n):
            lo, size = edges[j], edges[j + 1] - edges[j]
            k = lo + 1 + (pick[:, j] * size).long().clamp(max=size - 1)  # (B,) in (lo, lo + size]
            masked = rank < k.unsqueeze(-1)  # (B, L), exactly k masks per row
            z = tokens.masked_fill(masked, self.mask_id)
            # the time whose expected unmasked fraction alpha_t is (L - k) / L, for a net that
            # is time-conditioned (it does not enter the weights)
            t = _time_at(self.schedule, 1 - k.double() / length)
            logp = denoise(z, t, cond)
            nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            nll = torch.where(masked, nll, 0.0).sum(1) / k
            total = total + size * nll
        return total / length


def _time_at(schedule: Schedule, alpha: Tensor) -> Tensor:
    """The t at which schedule.alpha(t) = alpha (alpha is monotone): 40 bisection steps, float64."""
    alpha = alpha.double()
    lo, hi = torch.zeros_like(alpha), torch.ones_like(alpha)
    for _ in range(40):
        mid = (lo + hi) / 2
        above = schedule.alpha(mid) > alpha
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return ((lo + hi) / 2).float()


SCHEDULES = {"loglinear": LogLinear, "cosine": Cosine, "linear": Linear}
