"""Draw, check, draw again: masked-diffusion sampling that verifies its own output.

A masked diffusion model can score any complete sequence it did not write left to right: with
one position masked and every other token given, its prediction there is the conditional
p(x_j | x_-j). The leave-one-out log probabilities of the generated positions are a
pseudo-likelihood (Besag 1975; used to rank masked-LM outputs by Salazar et al. 2020) and
their minimum says how sure the model is of the weakest token it wrote, now that it sees the
whole answer, where it chose that token early with most of the answer still masked.

`sample_verified` runs a sampler once (usually greedy), computes those numbers and, for the
rows whose weakest generated token has a leave-one-out probability below `accept`, draws again
with `retry_temperature`, keeping per row the draw with the highest pseudo-likelihood, until
every row is accepted or `draws` draws have been made. It needs no rules of the task: on
Sudoku (benchmarks/sudoku.py) the model's own check tells solved grids from wrong ones, and
fresh draws for the unsure rows find solutions that greedy decoding missed. Rows already
accepted cost nothing more; each check costs one network call per generated token (batched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.discrete import Generator, TokenDenoiser


@torch.no_grad()
def leave_one_out(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    positions: Tensor,
    *,
    mask_id: int,
    cond: Any = None,
    batch: int = 512,
) -> Tensor:
    """(B, L) float: log p(tokens[b, j] | all other tokens of row b) where positions[b, j], the
    model's log probability of the token with only that position masked; 0 elsewhere. One
    network call per such position, `batch` of them at a time (t = 1 / L: one masked token of
    L). `cond`, if a tensor, holds one row per sequence."""
    b_idx, j_idx = positions.nonzero(as_tuple=True)
    out = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    length = tokens.shape[1]
    for s in range(0, len(b_idx), batch):
        b, j = b_idx[s : s + batch], j_idx[s : s + batch]
        rows = tokens[b].clone()
        k = torch.arange(len(b), device=tokens.device)
        rows[k, j] = mask_id
        t = torch.full((len(b),), 1.0 / length, device=tokens.device)
        logp = denoise_tokens(rows, t, _rows(cond, b)).float().log_softmax(-1)  # normalised anyway
        out[b, j] = logp[k, j].gather(-1, tokens[b, j].unsqueeze(-1)).squeeze(-1)
    return out


def sample_verified(
    denoise_tokens: TokenDenoiser,
    tokens: Tensor,
    steps: int,
    *,
    mask_id: int,
    inner: Callable[..., Tensor],
    draws: int = 8,
    accept: float = 0.9,
    retry_temperature: float = 1.0,
    temperature: float = 0.0,
    generator: Generator = None,
    cond: Any = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **kw: Any,
) -> Tensor:
    """`inner(denoise_tokens, tokens, steps, mask_id=..., temperature=..., generator=..., cond=...,
    **kw)` once, then again at `retry_temperature` for the rows whose weakest generated token
    has a leave-one-out probability below `accept`, at most `draws` draws per row in all; per row
    the draw with the highest pseudo-log-likelihood (the sum of the generated tokens'
    leave-one-out log probabilities) is returned. Tokens that were not `mask_id` are never
    changed. `generator` as in the samplers (one per row keeps a row independent of its batch;
    a row's retries continue its own generator). `callback` gets {"draw", "rows", "accepted",
    "pseudo_loglik", "weakest"} after each draw: rows drawn, rows accepted so far, and per row
    the best sum and the best draw's weakest log probability."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    if not 0.0 < accept <= 1.0:
        raise ValueError(f"accept must be a probability in (0, 1], not {accept}")
    free = tokens == mask_id
    threshold = math.log(accept)

    def run(rows: Tensor, temp: float) -> Tensor:
        return inner(
            denoise_tokens, tokens[rows], steps, mask_id=mask_id, temperature=temp,
            generator=_rows(generator, rows), cond=_rows(cond, rows), **kw,
        )  # fmt: skip

    def check(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        # 0 at given tokens, so the minimum is the weakest generated token's
        lp = leave_one_out(denoise_tokens, x, free[rows], mask_id=mask_id, cond=_rows(cond, rows))
        return lp.sum(1), lp.min(1).values

    def report(d: int, drawn: int) -> None:
        if callback is not None:
            callback({"draw": d, "rows": drawn, "accepted": int((weakest >= threshold).sum()),
                      "pseudo_loglik": score, "weakest": weakest})  # fmt: skip

    everyone = torch.arange(tokens.shape[0], device=tokens.device)
    best = run(everyone, temperature)
    score, weakest = check(best, everyone)
    report(1, len(everyone))
    for d in range(2, draws + 1):
        rows = (weakest < threshold).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        cand = run(rows, retry_temperature)
        s, w = check(cand, rows)
        better = s > score[rows]
        keep = rows[better]
        best[keep], score[keep], weakest[keep] = cand[better], s[better], w[better]
        report(d, len(rows))
    return best


def _rows(per_row: Any, rows: Tensor) -> Any:
    """The entries of `rows` of something given per row (a cond tensor, a list of generators);
    anything else (one generator, a cond shared by the batch, None) as it is."""
    if isinstance(per_row, Tensor):
        return per_row[rows]
    if isinstance(per_row, Sequence):
        return [per_row[int(r)] for r in rows]
    return per_row
