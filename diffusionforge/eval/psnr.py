"""Peak signal-to-noise ratio, the reconstruction figure of autoencoders (BENCHMARKS.md)."""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, 10 log10(range^2 / MSE); images in [-1, 1]
    have range 2. Identical images give +inf."""
    mse = (x.double() - y.double()).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)
