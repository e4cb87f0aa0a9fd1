"""Helpers shared by the samplers in samplers.py and multistep.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Denoiser

Generator = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[dict[str, Any]], None] | None


def working(x: Tensor) -> Tensor:
    """The sampler state in at least float32 (bf16 state would accumulate rounding error)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def denoise_at(denoise: Denoiser, x: Tensor, sigma: float, cond: Any) -> Tensor:
    return denoise(x, x.new_full((x.shape[0],), sigma), cond).to(x.dtype)


def randn_like(x: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise; with one generator per sample, each row comes from its own."""
    if generator is None or isinstance(generator, torch.Generator):
        dev = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    rows = [
        torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generator
    ]
    return torch.stack(rows).to(x.device)


def report(callback: Callback, i: int, x: Tensor, sigma: float, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})


def ancestral_split(sigma_from: float, sigma_to: float, eta: float) -> tuple[float, float]:
    """Split a step into a deterministic part down to sigma_down and fresh noise sigma_up.

    eta = 1 is the DDPM posterior variance, eta = 0 the deterministic DDIM step (Song et al.
    2021a, eq. 16, rewritten for x = x0 + sigma n). sigma_down^2 + sigma_up^2 = sigma_to^2.
    """
    if sigma_to == 0:
        return 0.0, 0.0
    up = eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)
    up = min(up, sigma_to)
    return math.sqrt(sigma_to**2 - up**2), up
