"""Samplers for masked diffusion: pure functions from partly masked tokens to tokens.

Signature of every sampler here (DESIGN.md rule 1, for the token seam of discrete.py):

    fn(denoise_tokens, tokens, steps, *, mask_id, schedule=None, cond=None, generator=None,
       callback=None, temperature=1.0, top_k=None, top_p=None, cache=True) -> tokens

`tokens` (B, L) holds `mask_id` where text is to be generated and fixed tokens elsewhere, so a
prefix, a suffix or holes anywhere are all just initial tokens; fixed tokens are never changed.
`schedule` is the formulation's alpha(t) (default log-linear); `steps` is the number of time
steps from t = 1 to 0 (at most `steps` network calls). `generator` is a torch.Generator or one per
sample: every step draws the same number of numbers per row whatever happens, so with one
generator per sample a sample does not depend on its batch. `callback`, if given, receives
{"i", "t", "tokens", "logits", "nfe"} after each step; raising from it cancels the run.

`cache=True` skips the network when no token changed since its last call (MDLM Sec. 3.3,
"caching"): exact when the denoiser does not depend on t, which holds for MDLM's SUBS models
trained without time conditioning; pass cache=False for a time-conditioned network.
Temperature, top-k and top-p (Holtzman et al. 2020) shape the distribution each token is drawn
from; temperature 0 takes the most probable token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.discrete import Generator, LogLinear, Schedule, TokenDenoiser, uniform

Callback = Callable[[dict[str, Any]], None] | None


def filter_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """logits / temperature with all but the top_k tokens (ties with the k-th are kept), then
    all outside the smallest set of probability >= top_p (the nucleus, counting the token that
    crosses top_p), set to -inf. Temperature 0 leaves the logits as they are (see `draw`)."""
    logits = logits.float() / (temperature if temperature > 0 else 1.0)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, idx = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def draw(logits: Tensor, u: Tensor, temperature: float) -> Tensor:
    """One token per position from softmax(logits) by inverse CDF with uniforms u (B, L), or the
    argmax when temperature is 0. Logits already carry the temperature (filter_logits)."""
    if temperature <= 0:
        return logits.argmax(-1)
    cdf = logits.softmax(-1).cumsum(-1)  # (B, L, V)
    idx = (cdf <= (u * cdf[..., -1]).unsqueeze(-1)).sum(-1)  # first index with cdf > u * total
    return idx.clamp(max=logits.shape[-1] - 1)


def _times(schedule: Schedule, steps: int) -> tuple[list[float], list[float]]:
    ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return ts.tolist(), schedule.alpha(ts).tolist()


def sample_ancestral(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    steps: int,
    *,
    mask_id: int,
    schedule: Schedule | None = None,
    cond: Any = None,
    generator: Generator = None,
    callback: Callback = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cache: bool = True,
) -> Tensor:
    """Ancestral sampling of the reverse process (MDLM Sec. 3.3, eq. 7 with SUBS): from t to
    s < t each masked token is revealed with probability (alpha_s - alpha_t) / (1 - alpha_t),
    drawn from the denoiser's distribution at its position; revealed tokens stay. The last step
    (alpha_0 = 1) reveals everything. As steps grow, at most one token is revealed per step and
    the samples follow the model's joint distribution exactly (for an exact denoiser, the data)."""
    ts, alphas = _times(schedule or LogLinear(), steps)
    x, seen, logits, nfe = tokens.clone(), None, None, 0
    b, length = x.shape
    for i in range(steps):
        if not cache or seen is None or not torch.equal(x, seen):
            t = torch.full((b,), ts[i], device=x.device)
            logits = filter_logits(denoise_tokens(x, t, cond), temperature, top_k, top_p)
            seen, nfe = x, nfe + 1
        reveal_p = (alphas[i + 1] - alphas[i]) / (1 - alphas[i])
        reveal = uniform((b, length), generator, x.device) < reveal_p  # (B, L)
        proposal = draw(logits, uniform((b, length), generator, x.device), temperature)
        x = torch.where((x == mask_id) & reveal, proposal, x)
        if callback is not None:
            callback({"i": i, "t": ts[i], "tokens": x, "logits": logits, "nfe": nfe})
    return x


def sample_confidence(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    steps: int,
    *,
    mask_id: int,
    schedule: Schedule | None = None,
    cond: Any = None,
    generator: Generator = None,
    callback: Callback = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cache: bool = True,
    margin: bool = False,
) -> Tensor:
    """Low-confidence remasking (LLaDA, Nie et al. 2025, Sec. 2.4 and the low-confidence
    remasking algorithm of its appendix): at each step draw a token for every masked position,
    then keep only the k drawn with the highest model probability and remask the rest. k is set
    so that a fraction 1 - alpha_s of each row's initially masked tokens is still masked at time
    s. Not an exact sampler of the model (it prefers confident tokens), but usually better at
    few steps. `margin=True` ranks positions by the gap between their two most probable tokens
    instead (top-probability margin, Kim et al. 2025, "Train for the Worst, Plan for the Best":
    an adaptive order that helps on puzzles such as Sudoku)."""
    ts, alphas = _times(schedule or LogLinear(), steps)
    x, seen, logits, nfe = tokens.clone(), None, None, 0
    b, length = x.shape
    masked0 = (x == mask_id).sum(1).double()  # (B,)
    for i in range(steps):
        if not cache or seen is None or not torch.equal(x, seen):
            t = torch.full((b,), ts[i], device=x.device)
            raw = denoise_tokens(x, t, cond).float()
            logits = filter_logits(raw, temperature, top_k, top_p)
            prob = raw.softmax(-1)  # the model's own probabilities, before shaping
            seen, nfe = x, nfe + 1
        proposal = draw(logits, uniform((b, length), generator, x.device), temperature)
        masked = x == mask_id
        if margin:
            top2 = prob.topk(2, dim=-1).values
            conf = (top2[..., 0] - top2[..., 1]).masked_fill(~masked, -1.0)
        else:
            conf = prob.gather(-1, proposal.unsqueeze(-1)).squeeze(-1).masked_fill(~masked, -1.0)
        remain = (masked0 * (1 - alphas[i + 1])).round().long()  # masks left after this step
        k = (masked.sum(1) - remain).clamp(min=0)  # (B,) tokens to reveal now
        rank = conf.argsort(dim=-1, descending=True, stable=True).argsort(-1)  # 0 = most confident
        x = torch.where(masked & (rank < k.unsqueeze(-1)), proposal, x)
        if callback is not None:
            callback({"i": i, "t": ts[i], "tokens": x, "logits": logits, "nfe": nfe})
    return x


def sample_semi_ar(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    steps: int,
    *,
    mask_id: int,
    schedule: Schedule | None = None,
    cond: Any = None,
    generator: Generator = None,
    callback: Callback = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cache: bool = True,
    window: int | None = None,
    block: int | None = None,
    inner: Callable[..., Tensor] = sample_confidence,
) -> Tensor:
    """Semi-autoregressive generation of sequences longer than the model's length `window`
    (in the manner of LLaDA's semi-autoregressive remasking, Sec. 2.4, and SSD-LM's blocks).

    The first `window` positions are generated together by `inner`; then, left to right, each
    next `block` of positions (default window // 2) is generated by `inner` in a window that ends
    with the block and holds the window - block tokens before it as context. Text after a block
    is not seen while it is generated. `steps` is shared among the chunks in proportion to
    their lengths; with window=None (or >= L) this is `inner` on the whole sequence."""
    length = tokens.shape[1]
    window = min(window or length, length)
    block = min(block or max(1, window // 2), window)
    chunks = [(0, window)] + [(s, min(s + block, length)) for s in range(window, length, block)]
    x = tokens.clone()
    for j, (start, end) in enumerate(chunks):
        if not (x[:, start:end] == mask_id).any():
            continue
        lo = max(0, end - window)
        inner_steps = max(1, round(steps * (end - start) / length))
        report = None if callback is None else lambda info, j=j: callback({"block": j, **info})
        x[:, lo:end] = inner(
            denoise_tokens,
            x[:, lo:end],
            inner_steps,
            mask_id=mask_id,
            schedule=schedule,
            cond=cond,
            generator=generator,
            callback=report,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            cache=cache,
        )
    return x


def sample_margin(denoise_tokens: TokenDenoiser, tokens: Tensor, steps: int, **kw) -> Tensor:
    """sample_confidence ordered by the top-2 probability margin (adaptive order)."""
    return sample_confidence(denoise_tokens, tokens, steps, margin=True, **kw)


TOKEN_SAMPLERS = {
    "ancestral": sample_ancestral,
    "confidence": sample_confidence,
    "margin": sample_margin,
    "semi_ar": sample_semi_ar,
}
