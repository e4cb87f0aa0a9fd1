"""Guidance as denoiser wrappers (DESIGN.md rule 3): never inside a network or a sampler."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffusionforge.core.denoiser import Cond, Denoiser


def _cat(a: Any, b: Any) -> Any:
    """Batch two conds together when they are tensors (or dicts of tensors) of equal shapes."""
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape:
        return torch.cat([a, b])
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        parts = {k: _cat(a[k], b[k]) for k in a}
        return parts if all(v is not None for v in parts.values()) else None
    return None


def cfg(
    denoise: Denoiser,
    scale: float,
    uncond: Cond,
    *,
    interval: tuple[float, float] | None = None,
    rescale: float = 0.0,
) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022): D = D_u + scale (D_c - D_u).

    interval=(sigma_lo, sigma_hi): guide only for sigma in (sigma_lo, sigma_hi] and use the
    conditional denoiser elsewhere (Kynkäänniemi et al. 2024, "Applying guidance in a limited
    interval improves sample and distribution quality"); outside it one evaluation suffices.
    rescale=phi: match the guided prediction's per-sample std to the conditional one and blend,
    D = phi * D_cfg * std(D_c) / std(D_cfg) + (1 - phi) * D_cfg (Lin et al. 2024, eqs. 15-16),
    applied here to the x0 prediction.
    `uncond` is the cond that means "no condition" (a null label, an empty prompt's embedding);
    it must match cond's batch size.
    """

    def guided(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        if scale == 1.0 or (
            interval is not None
            and not bool(((sigma > interval[0]) & (sigma <= interval[1])).all())
        ):
            return denoise(x, sigma, cond)
        both = _cat(cond, uncond)
        if both is not None:
            d_c, d_u = denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), both).chunk(2)
        else:
            d_c, d_u = denoise(x, sigma, cond), denoise(x, sigma, uncond)
        out = d_u + scale * (d_c - d_u)
        if rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = d_c.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True).clamp_min(
                1e-8
            )
            out = rescale * out * ratio + (1 - rescale) * out
        return out

    return guided


def dynamic_threshold(
    denoise: Denoiser, percentile: float = 0.995, max_value: float = 1.0
) -> Denoiser:
    """Dynamic thresholding for pixel-space models (Saharia et al. 2022, Imagen, Sec. 2.3):
    s = max(quantile(|x0_hat|, p), max_value) per sample;
    x0_hat <- clip(x0_hat, -s, s) * max_value / s.
    Keeps strongly guided predictions inside the data range without flattening them."""

    def thresholded(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        d = denoise(x, sigma, cond)
        flat = d.detach().abs().flatten(1).float()
        s = torch.quantile(flat, percentile, dim=1).clamp_min(max_value)
        s = s.reshape(-1, *([1] * (d.ndim - 1))).to(d.dtype)
        return torch.maximum(torch.minimum(d, s), -s) * (max_value / s)

    return thresholded
