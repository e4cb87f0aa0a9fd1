"""Sampling schedules: functions returning the sigmas a sampler visits.

Every schedule is `fn(n, sigma_min, sigma_max) -> Tensor` of n + 1 float64 sigmas, strictly
decreasing from sigma_max, with sigmas[n - 1] == sigma_min (except "vp_trailing", whose spacing
defines its own smallest level) and a final 0. n is the number of steps, not the NFE: a sampler's
NFE per step is in samplers.SAMPLER_INFO.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusionforge.core.optimized_steps import OPTIMIZED_STEPS

_F64 = torch.float64


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5:
    sigma_i = (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho."""
    ramp = torch.linspace(0, 1, n, dtype=_F64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def log_uniform(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Equal steps in log sigma (the "exponential" schedule; uniform in DPM-Solver's lambda)."""
    return _append_zero(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=_F64).exp()
    )


# The VP-linear SDE of Song et al. 2021 (beta_min = 0.1, beta_d = 19.9), the continuous limit of
# DDPM's linear betas: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (EDM, Table 1).
_VP_BETA_MIN, _VP_BETA_D = 0.1, 19.9


def _vp_sigma(t: Tensor) -> Tensor:
    return torch.expm1(0.5 * _VP_BETA_D * t**2 + _VP_BETA_MIN * t).sqrt()


def _vp_t(sigma: float) -> float:
    b, d = _VP_BETA_MIN, _VP_BETA_D
    return (math.sqrt(b**2 + 2 * d * math.log1p(sigma**2)) - b) / d


def vp_uniform(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """DDPM's timesteps, evenly spaced in t between t(sigma_max) and t(sigma_min)."""
    t = torch.linspace(_vp_t(sigma_max), _vp_t(sigma_min), n, dtype=_F64)
    return _append_zero(_vp_sigma(t))


def vp_trailing(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """DDPM "trailing" spacing (Lin et al. 2024, Table 2): t_i = t_max (n - i) / n.

    Starts at sigma_max and stops at t_max / n; sigma_min is not used.
    """
    t = _vp_t(sigma_max) * torch.arange(n, 0, -1, dtype=_F64) / n
    return _append_zero(_vp_sigma(t))


LEADING_END = 0.2  # leading()'s last level at most; chosen on random mixtures, BENCHMARKS.md


def leading(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """DDPM/DDIM's "leading" timesteps, then one level at sigma 0.2 or below.

    The first n - 1 levels are the VP-linear process at t = (n-1)/n, (n-2)/n, ..., 1/n (the
    leading spacing of n steps without its t = 0 point: sigma 25.1, 6.10, 2.03, 0.72 at n = 5),
    the last is min(0.2, half the level before it) (0.2 up to n = 9, 0.17 at 10, 0.11 at 16):
    the levels the best of diffusers' configurations visit on most mixtures and trained
    networks, with the step into the data made from where the recommended sampler's
    local-Gaussian end step is accurate for data of unit scale. Levels above sigma_max move
    down (t runs from min((n-1)/n, t(sigma_max)) to 1/n); a range whose sigma_min is above the
    last level gets Karras instead. In absolute sigma: made for data of scale ~1, as images in
    [-1, 1] and latents.
    """
    if n <= 2:  # one step from sigma_max, or two: sigma_max then 0.2
        end = max(LEADING_END, sigma_min)
        return (
            log_uniform(n, end, sigma_max)
            if n == 2 and end < sigma_max
            else karras(n, sigma_min, sigma_max)
        )
    t = torch.linspace(min((n - 1) / n, _vp_t(sigma_max)), 1 / n, n - 1, dtype=_F64)
    levels = _vp_sigma(t)
    end = min(LEADING_END, float(levels[-1]) / 2)
    if end <= sigma_min:  # a range these levels do not fit: fall back to Karras
        return karras(n, sigma_min, sigma_max)
    return _append_zero(torch.cat([levels, torch.tensor([end], dtype=_F64)]))


def flow_shift(n: int, sigma_min: float, sigma_max: float, shift: float = 3.0) -> Tensor:
    """Flow-matching time t = sigma / (1 + sigma) uniform after the SD3 shift
    t' = shift t / (1 + (shift - 1) t) (Esser et al. 2024, eq. 23); endpoints are kept."""

    def unshift(t: float) -> float:
        return t / (shift - (shift - 1) * t)

    t_hi, t_lo = unshift(sigma_max / (1 + sigma_max)), unshift(sigma_min / (1 + sigma_min))
    t = torch.linspace(t_hi, t_lo, n, dtype=_F64)
    t = shift * t / (1 + (shift - 1) * t)
    return _append_zero(t / (1 - t))


def flow_linear(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    return flow_shift(n, sigma_min, sigma_max, shift=1.0)


def optimized(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Step placement fitted to minimise the error of the recommended sampler at small budgets.

    OPTIMIZED_STEPS holds, per step count, the positions p_i = log(sigma_i / sigma_min) /
    log(sigma_max / sigma_min) in [0, 1] found by benchmarks/fit_schedule.py on Gaussian-mixture
    proxies (see that script for the objective). Other step counts take the nearest fitted
    profile resampled by monotone linear interpolation over i / (n - 1), as Align Your Steps
    (Sabour et al. 2024, Sec. 3.3) extends its schedules. Other ranges map affinely in log sigma.
    """
    if n == 1:
        return _append_zero(torch.tensor([sigma_max], dtype=_F64))
    if n in OPTIMIZED_STEPS:
        p = torch.tensor(OPTIMIZED_STEPS[n], dtype=_F64)
    else:
        m = min(OPTIMIZED_STEPS, key=lambda k: (abs(k - n), -k))
        ref = torch.tensor(OPTIMIZED_STEPS[m], dtype=_F64)
        x_ref = torch.linspace(0, 1, m, dtype=_F64)
        x_new = torch.linspace(0, 1, n, dtype=_F64)
        idx = torch.searchsorted(x_ref, x_new).clamp(1, m - 1)
        w = (x_new - x_ref[idx - 1]) / (x_ref[idx] - x_ref[idx - 1])
        p = (1 - w) * ref[idx - 1] + w * ref[idx]
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    return _append_zero(torch.exp(lo + p * (hi - lo)))


SCHEDULES = {
    "karras": karras,
    "log_uniform": log_uniform,
    "vp_uniform": vp_uniform,
    "vp_trailing": vp_trailing,
    "flow": flow_linear,
    "flow_shift": flow_shift,
    "optimized": optimized,
    "leading": leading,
}
