"""Answers from (prompt, response) models: `generate-text CHECKPOINT --prompt "..."`.

A model trained on data.kind "pairs" or "sudoku" (core/sft.py) reads its prompt followed by the
separator (data/pairs.SEP) and writes the response into the rest of its window: masked diffusion
fills all response positions at once in any order (confidence or margin order by default), the
AR twin left to right. The response is cut at the first end-of-sequence token.

For "sudoku" models the prompt is a grid: 81 cells row by row, digits 1-9 and "." (or 0) for a
blank; spaces, newlines and | - + are ignored, so both of these pose the same puzzle:

    53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79
    "530070000 600195000 098000060 800060003 400803001 700020006 060000280 000419005 000080079"

A Sudoku model of data.sudoku.format "grid" (the `sudoku` preset) has no separate response: its
window is the grid itself, the blanks are masked in place and filled, one cell per step in
margin (or confidence) order; the givens are fixed tokens that sampling never changes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusionforge.core.discrete import TokenDenoiser
from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS
from diffusionforge.core.discrete_verify import sample_verified
from diffusionforge.data import sudoku
from diffusionforge.data.pairs import SEP, encode_pair, response_text
from diffusionforge.errors import UserError
from diffusionforge.pipelines.text import DEFAULT_SAMPLER, TextPipeline
from diffusionforge.train.builders_text import PAIR_KINDS, is_sudoku_grid


def is_pairs(pipe: TextPipeline) -> bool:

    return pipe.cfg.data.kind in PAIR_KINDS


def prompt_ids(pipe: TextPipeline, prompt: str) -> Tensor:
    """Token ids (P,) of the prompt and separator; a Sudoku model's grid is normalised first."""

    if pipe.cfg.data.kind == "sudoku":
        try:
            prompt = sudoku.parse_grid(prompt)
        except ValueError as e:
            raise UserError(f"--prompt: {e}") from None
    if SEP in prompt:
        raise UserError("--prompt: U+001E is the prompt/response separator; remove it")
    try:
        ids, _ = encode_pair(pipe.tokenizer, prompt, None, pipe.context)
    except Exception as e:  # unknown characters of a char tokenizer
        raise UserError(f"--prompt: {str(e).splitlines()[0]}") from None
    if len(ids) >= pipe.context:
        raise UserError(
            f"--prompt: {len(ids)} tokens leave no room for a response in the model's context "
            f"of {pipe.context} tokens"
        )
    return torch.tensor(ids, dtype=torch.long)


def prompt_window(pipe: TextPipeline, prompt: str) -> tuple[Tensor, int]:
    """(window (context,) long, start): the window to fill for `prompt`, mask ids where the
    answer goes, and the position where the answer starts (after the prompt and separator; 0
    for a grid-format Sudoku model, whose window is the puzzle with its blanks masked)."""

    if is_sudoku_grid(pipe.cfg):
        try:
            grid = sudoku.parse_grid(prompt)
        except ValueError as e:
            raise UserError(f"--prompt: {e}") from None
        ids = [pipe.mask_id if ch == sudoku.BLANK else pipe.tokenizer.encode(ch)[0] for ch in grid]
        return torch.tensor(ids, dtype=torch.long), 0
    ids = prompt_ids(pipe, prompt)
    x = torch.full((pipe.context,), pipe.mask_id, dtype=torch.long)
    x[: len(ids)] = ids
    return x, len(ids)


@torch.no_grad()
def fill(
    pipe: TextPipeline,
    x: Tensor,
    *,
    nfe: int,
    sampler: str = "confidence",
    seed: int = 0,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    draws: int = 1,
    accept: float = 0.9,
    retry_temperature: float = 1.0,
) -> Tensor:
    """Fill the mask ids of windows x (B, context), each row with its own generator (seed + b),
    so a row does not depend on its batch: the model's sampler, or left to right for AR.

    draws > 1 (masked models): draw again, at `retry_temperature`, the rows whose weakest
    generated token the model itself doubts (leave-one-out probability below `accept`), keeping
    the draw of highest pseudo-likelihood (core/discrete_verify.py). A grid-format Sudoku model
    only ever writes digits into a blank."""

    gens = [torch.Generator().manual_seed(seed + i) for i in range(x.shape[0])]
    shaping = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    if pipe.is_ar:
        return pipe._generate_ar(x, gens, shaping)
    denoise = pipe.objective.precondition(pipe.net)
    if is_sudoku_grid(pipe.cfg):
        denoise = only_tokens(denoise, [pipe.tokenizer.encode(d)[0] for d in sudoku.DIGITS])
    run = dict(mask_id=pipe.mask_id, schedule=pipe.objective.schedule, generator=gens, **shaping)
    if draws <= 1:
        return TOKEN_SAMPLERS[sampler](denoise, x, nfe, **run)
    return sample_verified(
        denoise, x, nfe, inner=TOKEN_SAMPLERS[sampler], draws=draws, accept=accept,
        retry_temperature=retry_temperature, **run,
    )  # fmt: skip


def only_tokens(denoise: TokenDenoiser, allowed: list[int]) -> TokenDenoiser:
    """`denoise` with every token but `allowed` given probability 0 (renormalised)."""

    def restricted(tokens: Tensor, t: Tensor, cond=None) -> Tensor:
        logp = denoise(tokens, t, cond)
        keep = torch.zeros(logp.shape[-1], dtype=torch.bool, device=logp.device)
        keep[allowed] = True
        return logp.masked_fill(~keep, -math.inf).log_softmax(-1)

    return restricted


def answer_defaults(pipe: TextPipeline) -> dict:
    """Sampler settings a prompt is answered with unless told otherwise: Sudoku models fill in
    margin order and verify their grid, up to 24 draws (benchmarks/sudoku.py: 67% -> 92% of
    fresh held-out puzzles); other models one greedy confidence-ordered draw."""
    if pipe.cfg.data.kind == "sudoku":
        return {"sampler": "margin", "draws": 24}
    return {"sampler": DEFAULT_SAMPLER, "draws": 1}


def answer(
    pipe: TextPipeline,
    prompts: list[str],
    *,
    nfe: int | None = None,
    seed: int = 0,
    batch: int = 64,
    sampler: str | None = None,
    draws: int | None = None,
    **kw,
) -> list[str]:
    """The response text to each prompt (prompt i sampled with seed + i, whatever the batch).
    The response fills the rest of the context; nfe defaults to one step per masked token;
    sampler and draws default to `answer_defaults(pipe)`; other keywords go to `fill`."""

    defaults = answer_defaults(pipe)
    kw |= {"sampler": sampler or defaults["sampler"], "draws": draws or defaults["draws"]}
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        rows = [prompt_window(pipe, p) for p in prompts[start : start + batch]]
        x = torch.stack([window for window, _ in rows])
        steps = nfe or int((x == pipe.mask_id).sum(1).max())
        y = fill(pipe, x, nfe=steps, seed=seed + start, **kw)
        out += [response_text(pipe.tokenizer, y[r, s:].tolist()) for r, (_, s) in enumerate(rows)]
    return out


def show_sudoku(puzzle: str, answer_text: str) -> str:
    """The answer as a 9x9 grid and whether it solves the puzzle (givens kept, every unit
    complete)."""

    grid = sudoku.parse_grid(puzzle)
    rows = [answer_text[r * 9 : r * 9 + 9] for r in range(9)]
    ok = sudoku.is_solution(grid, answer_text)
    return "\n".join(rows) + f"\nsolved: {'yes' if ok else 'no'}"
