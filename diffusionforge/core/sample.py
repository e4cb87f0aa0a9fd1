"""`sample()`: noise in, data out, with the recommended sampler and schedule for an NFE budget.

`sample_sigmas` is the step itself (a sampler function over a sigma tensor, from noise drawn
per generator); `sample` resolves names into a core.plan.Plan first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Cond, Denoiser
from diffusionforge.core.plan import RECOMMENDED, Plan, recommended, start_level
from diffusionforge.core.sampler_utils import Callback, Generator, randn_like

__all__ = ["RECOMMENDED", "Plan", "recommended", "sample", "sample_sigmas"]


def sample(
    denoise: Denoiser,
    shape: Sequence[int],
    *,
    nfe: int,
    sampler: str | None = None,
    schedule: str | Tensor | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    cond: Cond = None,
    generator: Generator = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback = None,
) -> Tensor:
    """Draw shape[0] samples with at most `nfe` denoiser evaluations (names: Plan.resolve)."""
    plan = Plan.resolve(nfe, sampler, schedule)
    sigmas = plan.sigmas(sigma_min, sigma_max)
    return sample_sigmas(
        plan.sample_fn, denoise, shape, sigmas, sigma_max=start_level(sigmas, sigma_max), cond=cond,
        generator=generator, device=device, dtype=dtype, callback=callback,
    )  # fmt: skip


def sample_sigmas(
    sample_fn,
    denoise: Denoiser,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    sigma_max: float | None = None,
    cond: Cond = None,
    generator: Generator = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback = None,
) -> Tensor:
    """Run `sample_fn` over `sigmas` from noise of scale `sigma_max` (default sigmas[0]).

    `generator` may be one torch.Generator or one per sample; with one per sample, each sample
    is the same whatever batch it is drawn in. The initial noise is drawn on the generator's
    device and moved, so a seed gives the same noise on every device.
    """
    scale = float(sigmas[0]) if sigma_max is None else sigma_max
    x = randn_like(torch.empty(tuple(shape), dtype=dtype, device=device), generator) * scale
    return sample_fn(denoise, x, sigmas, cond=cond, generator=generator, callback=callback)
