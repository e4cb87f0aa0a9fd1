"""The demo's Sudoku section: the bundled masked-diffusion Sudoku model solves held-out puzzles."""

from __future__ import annotations

import time
from pathlib import Path

from diffusionforge.demo.section import Section


def sudoku_section(out: Path, quick: bool):
    """Held-out puzzles (25-30 givens, from seeds training never used) answered by the bundled
    `sudoku` model as `generate-text sudoku --prompt ...` answers them (margin order, then
    self-verification: core/discrete_verify.py); the rules only judge the answers."""
    import torch

    # deferred: loaded only when the section runs, so importing the demo stays light
    from diffusionforge.data import sudoku
    from diffusionforge.pipelines.text import load_text_pipeline
    from diffusionforge.pipelines.text_pairs import answer, show_sudoku

    torch.set_num_threads(1)
    pipe = load_text_pipeline("sudoku")
    n = 3 if quick else 5
    puzzles = sudoku.puzzles(n, 1, pipe.cfg.data.seed, 25, 30, heldout=True)
    t0 = time.monotonic()
    answers = answer(pipe, [p for p, _ in puzzles])
    seconds = time.monotonic() - t0
    solved = [sudoku.is_solution(p, a) for (p, _), a in zip(puzzles, answers, strict=True)]
    path = out / "sudoku.txt"
    path.write_text(
        "\n\n".join(f"{p}\n{show_sudoku(p, a)}" for (p, _), a in zip(puzzles, answers, strict=True))
        + "\n",
        encoding="utf-8",
    )
    params = sum(p.numel() for p in pipe.net.parameters())
    return Section(
        title="sudoku: masked diffusion fills and checks a grid (bundled model)",
        lines=[
            f"transformer, {params:,} parameters, trained 30 CPU-minutes on random full grids",
            f"{sum(solved)}/{n} held-out puzzles (25-30 givens) solved in {seconds:.1f}s "
            "(BENCHMARKS.md: 185/200; its AR twin 0/200)",
            f"first: {puzzles[0][0]}",
            f"    -> {answers[0]} [{'solved' if solved[0] else 'NOT solved'}]",
            'more: diffusionforge generate-text sudoku --prompt "53..7.... 6..195... ..."',
        ],
        files=[path],
    )
