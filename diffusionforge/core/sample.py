"""`sample()`: noise in, data out, with the recommended sampler and schedule for an NFE budget."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Cond, Denoiser
from diffusionforge.core.sampler_utils import Callback, Generator, randn_like
from diffusionforge.core.samplers import SAMPLER_INFO, SAMPLERS
from diffusionforge.core.schedules import SCHEDULES

# Best (sampler, schedule) per NFE budget, from benchmarks/samplers.py (BENCHMARKS.md); a
# budget between two entries takes the entry at or below it.
RECOMMENDED: dict[int, tuple[str, str]] = {
    1: ("euler", "karras"),  # one evaluation: x = D(x, sigma_max), whatever the sampler
    2: ("unipc_gaussian", "optimized"),
    8: ("unipc", "optimized"),
}


def recommended(nfe: int) -> tuple[str, str]:
    """The (sampler, schedule) pair recommended for `nfe` network evaluations."""
    return RECOMMENDED[max(k for k in RECOMMENDED if k <= max(nfe, 1))]


def sample(
    denoise: Denoiser,
    shape: Sequence[int],
    *,
    nfe: int,
    sampler: str | None = None,
    schedule: str | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    cond: Cond = None,
    generator: Generator = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback = None,
) -> Tensor:
    """Draw shape[0] samples with at most `nfe` denoiser evaluations.

    `generator` may be one torch.Generator or one per sample; with one per sample, each sample
    is the same whatever batch it is drawn in. The initial noise is drawn on the generator's
    device and moved, so a seed gives the same noise on every device.
    """
    rec_sampler, rec_schedule = recommended(nfe)
    sampler, schedule = sampler or rec_sampler, schedule or rec_schedule
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    steps = SAMPLER_INFO[sampler].steps_for(nfe)
    sigmas = SCHEDULES[schedule](steps, sigma_min, sigma_max)
    x = randn_like(torch.empty(tuple(shape), dtype=dtype, device=device), generator) * sigma_max
    return SAMPLERS[sampler](denoise, x, sigmas, cond=cond, generator=generator, callback=callback)
