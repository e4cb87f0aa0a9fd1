"""Sizes a run on one's own images from the data, in one place (the `images` preset uses them).

- data.image_size = 0: the side comes from the folder (data.images.auto_side: the short side of
  the most common image size, rounded down to 8, 16, 32 or 64), said in one line.
- train.batch_size = 0: the batch for that side from `BATCH_BY_SIDE` (fewer, larger images per
  step: one thread runs the 0.3M "tiny" U-Net at about 0.15 CPU-s a step at 16x16, 0.5 at
  64x64; BENCHMARKS.md), said in one line.
- after a few timed steps every run states the CPU and wall time the rest will take.
"""

from __future__ import annotations

from collections.abc import Callable

from diffusionforge.errors import ConfigError

# image side -> global batch (a multiple of 8: splits over 1, 2, 4 or 8 processes)
BATCH_BY_SIDE = {8: 128, 16: 64, 32: 32, 64: 16}
TIMED_STEPS = 3  # steps timed after the first (warm-up) one for the expected-time line


def batch_size(cfg, shape: tuple[int, ...], n: int, world: int, log: Callable[[str], None]) -> None:
    """Fill in train.batch_size = 0 from the examples' shape (C, H, W), at most the `n`
    examples there are; other values stay."""
    if cfg.train.batch_size:
        return
    if len(shape) != 3:
        raise ConfigError(
            f"train.batch_size: 0 (by image side) needs images; these examples are {shape}"
        )
    side = shape[-1]
    size = next((b for s, b in sorted(BATCH_BY_SIDE.items()) if side <= s), 8)
    capped = f" (capped at the {n} examples)" if n < size else ""
    size = max(min(size, n), world * cfg.train.grad_accum)
    cfg.train.batch_size = size - size % (world * cfg.train.grad_accum)
    log(
        f"batch size {cfg.train.batch_size} for {side}x{side} images{capped} - "
        "set train.batch_size to change"
    )


def expected_line(seconds_cpu: float, seconds_wall: float, timed: int, left: int) -> str:
    """'expected: ...' from `timed` steps that took these CPU and wall seconds."""
    cpu, wall = seconds_cpu / timed * left, seconds_wall / timed * left
    return (
        f"expected: {left} more steps take about {_minutes(cpu)} CPU time, "
        f"{_minutes(wall)} wall clock ({seconds_cpu / timed:.2f} CPU-s/step over {timed} steps)"
        " - set train.steps to change"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
