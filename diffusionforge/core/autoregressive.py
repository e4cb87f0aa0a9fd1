"""The autoregressive baseline as one more objective: next-token cross-entropy.

The same backbone as the masked-diffusion denoiser with a causal attention mask (nets/
transformer.py) is trained by the same engine with this objective, so the two are compared at
equal parameters and compute (as in MDLM, Sahoo et al. 2024, Table 1). The input is the sequence
shifted right by one with a start token in front; the mask id serves as that start token (an AR
model never sees masks otherwise), so both models share one vocabulary and one embedding table.
`loss` and `nll` are the exact -log p(x) / L in nats per token, the quantity whose exp is the
perplexity that masked diffusion's ELBO bound is compared against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.discrete import Generator, TokenNet, uniform
from diffusionforge.core.discrete_samplers import draw, filter_logits


@dataclass(frozen=True)
class Autoregressive:
    """Left-to-right factorisation p(x) = prod_l p(x^l | x^<l); `bos_id` starts every sequence."""

    bos_id: int

    def inputs(self, tokens: Tensor) -> Tensor:
        """(B, L) -> (B, L): [bos, x^0, ..., x^(L-2)], so position l predicts x^l."""
        bos = torch.full_like(tokens[:, :1], self.bos_id)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def nll(self, net: TokenNet, tokens: Tensor, cond: Any = None) -> Tensor:
        """-log p(x) / L in nats per token (B,): exact, one network call."""
        t = torch.zeros(tokens.shape[0], device=tokens.device)
        logp = net(self.inputs(tokens), t, cond).float().log_softmax(-1)  # (B, L, V)
        return -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).mean(1)

    def loss(
        self, net: TokenNet, tokens: Tensor, cond: Any = None, *, generator: Generator = None
    ) -> Tensor:
        """Per-example training loss (B,): the exact NLL per token (no randomness needed)."""
        return self.nll(net, tokens, cond)


def sample_autoregressive(
    net: TokenNet,
    tokens: Tensor,
    *,
    bos_id: int,
    mask_id: int,
    cond: Any = None,
    generator: Generator = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    kv_cache: Callable[[], Any] | None = None,
) -> Tensor:
    """Fill the `mask_id` positions of `tokens` (B, L) left to right, one network call per
    position. Without `kv_cache` each call reruns the whole prefix; `kv_cache()` makes an object
    whose `step(new_tokens (B, n)) -> logits (B, n, V)` runs the network on the next n inputs
    only, keeping the keys and values of earlier ones (nets/kv_cache.KVCache): the same logits,
    so the same samples. Given tokens are kept, so a prompt is a prefix; an AR model cannot use
    text to the right of a hole. Draws one uniform per row and position whatever is given, so
    per-sample generators give batch-independent samples."""
    x = tokens.clone()
    b, length = x.shape
    t = torch.zeros(b, device=x.device)
    cache, fed = (kv_cache() if kv_cache is not None else None), 0
    for pos in range(length):
        u = uniform((b, 1), generator, x.device)
        if not (x[:, pos] == mask_id).any():
            continue
        inp = torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :pos]], dim=1)  # (B, pos + 1)
        if cache is None:
            out = net(inp, t, cond)[:, -1:]
        else:  # feed the inputs not yet seen: the whole prefix at first, then one token
            out, fed = cache.step(inp[:, fed:])[:, -1:], pos + 1
        logits = filter_logits(out, temperature, top_k, top_p)  # (B, 1, V)
        logits[..., mask_id] = -torch.inf  # never emit the start/mask token
        nxt = draw(logits, u, temperature)[:, 0]
        x[:, pos] = torch.where(x[:, pos] == mask_id, nxt, x[:, pos])
    return x
