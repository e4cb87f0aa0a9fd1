"""The one seam of diffusionforge, and adapters that bring other parametrisations to it.

A *denoiser* maps a noisy sample and its noise level to an estimate of the clean sample:

    denoise(x, sigma, cond) -> x0_hat,   x = x0 + sigma * n,  sigma a (B,) tensor

(the "variance exploding" notation of Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", EDM). Every other parametrisation is a change of variables:

- variance preserving (DDPM, Ho et al. 2020): x_vp = alpha * x0 + s * n with alpha^2 + s^2 = 1,
  sigma = s / alpha, so x_vp = x / sqrt(1 + sigma^2);
- flow matching / rectified flow (Lipman et al. 2023, Liu et al. 2023): x_t = (1 - t) x0 + t n,
  sigma = t / (1 - t), so x_t = x / (1 + sigma).

The pure conversion functions below relate the network targets (eps, v, x0, flow velocity) at a
given (x, sigma); the adapters wrap a network with one of those outputs into a Denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Cond = Any
Denoiser = Callable[[Tensor, Tensor, Cond], Tensor]
# A network in our convention: net(x_in, c_noise, cond) -> output shaped like x_in.
Net = Callable[[Tensor, Tensor, Cond], Tensor]


def bcast(sigma: Tensor, x: Tensor) -> Tensor:
    """A (B,) tensor reshaped to broadcast against x (B, ...)."""
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


# --- conversions between targets, all at the same (x, sigma) in VE notation ------------------


def eps_to_x0(x: Tensor, sigma: Tensor, eps: Tensor) -> Tensor:
    return x - bcast(sigma, x) * eps


def x0_to_eps(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    return (x - x0) / bcast(sigma, x)


def v_to_x0(x: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    # v = alpha * eps - s * x0 (Salimans & Ho 2022, eq. 9 notation); x_vp = alpha * x0 + s * eps.
    # Then x0 = alpha * x_vp - s * v with x_vp = alpha * x.
    s = bcast(sigma, x)
    alpha2 = 1 / (1 + s**2)
    return alpha2 * x - s * alpha2.sqrt() * v


def x0_to_v(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    s = bcast(sigma, x)
    alpha = (1 + s**2).rsqrt()
    eps = (x - x0) / s
    return alpha * eps - s * alpha * x0


def flow_to_x0(x: Tensor, sigma: Tensor, u: Tensor) -> Tensor:
    # u = n - x0 is the rectified-flow velocity d x_t / dt;
    # x_t = x / (1 + sigma), t = sigma / (1 + sigma).
    s = bcast(sigma, x)
    return (x - s * u) / (1 + s)


def x0_to_flow(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    return (x - x0) / bcast(sigma, x) - x0


# --- time inputs --------------------------------------------------------------------------


def log_sigma_time(sigma: Tensor) -> Tensor:
    """The EDM noise conditioning c_noise = log(sigma) / 4 (Karras et al. 2022, Table 1)."""
    return sigma.log() / 4


def flow_time(sigma: Tensor) -> Tensor:
    """Flow-matching time t = sigma / (1 + sigma) in [0, 1)."""
    return sigma / (1 + sigma)


# --- adapters: network with a given target -> Denoiser ------------------------------------


def from_eps(net: Net, time: Callable[[Tensor], Tensor] = log_sigma_time) -> Denoiser:
    """A network predicting the noise eps from the VP-scaled input x / sqrt(1 + sigma^2)."""

    def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        x_in = x * bcast((1 + sigma**2).rsqrt(), x)
        return eps_to_x0(x, sigma, net(x_in, time(sigma), cond).to(x.dtype))

    return denoise


def from_v(net: Net, time: Callable[[Tensor], Tensor] = log_sigma_time) -> Denoiser:
    """A network predicting v = alpha * eps - s * x0 from the VP-scaled input."""

    def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        x_in = x * bcast((1 + sigma**2).rsqrt(), x)
        return v_to_x0(x, sigma, net(x_in, time(sigma), cond).to(x.dtype))

    return denoise


def from_x0(net: Net, time: Callable[[Tensor], Tensor] = log_sigma_time) -> Denoiser:
    """A network predicting x0 directly from the VP-scaled input."""

    def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        x_in = x * bcast((1 + sigma**2).rsqrt(), x)
        return net(x_in, time(sigma), cond).to(x.dtype)

    return denoise


def from_flow(net: Net, time: Callable[[Tensor], Tensor] = flow_time) -> Denoiser:
    """A network predicting the velocity u = n - x0 from x_t = (1 - t) x0 + t n."""

    def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        x_in = x / bcast(1 + sigma, x)
        return flow_to_x0(x, sigma, net(x_in, time(sigma), cond).to(x.dtype))

    return denoise


ADAPTERS = {"eps": from_eps, "v": from_v, "x0": from_x0, "flow": from_flow}


# --- discrete-time DDPM models ------------------------------------------------------------


def linear_betas(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al. 2020, Sec. 4: betas linear in t."""
    return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)


def scaled_linear_betas(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
    """Stable Diffusion's schedule: sqrt(beta) linear in t."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2


def cosine_betas(n: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi / 2)."""
    t = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


class DiscreteTimesteps:
    """A table of N training noise levels sigma_0 < ... < sigma_{N-1} of a DDPM model.

    Continuous sigmas map to fractional timesteps by linear interpolation in log sigma, so our
    samplers (which choose their own sigmas) can drive a model trained on integer timesteps.
    interpolation="linear" interpolates sigma itself instead, as diffusers' Euler-family
    schedulers place fractional timesteps (np.interp over the sigma table); both agree on the
    integer timesteps.
    """

    def __init__(self, betas: Tensor, interpolation: str = "log") -> None:
        if interpolation not in ("log", "linear"):
            raise ValueError(f"interpolation must be log or linear, not {interpolation!r}")
        alphas_cumprod = torch.cumprod(1 - betas.double(), 0)
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()  # (N,) increasing
        self.log_sigmas = self.sigmas.log()
        self.interpolation = interpolation

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: Tensor, quantize: bool = False) -> Tensor:
        table = self.log_sigmas if self.interpolation == "log" else self.sigmas
        table = table.to(sigma.device)
        value = sigma.double().log() if self.interpolation == "log" else sigma.double()
        value = value.clamp(table[0], table[-1])
        idx = torch.searchsorted(table, value).clamp(1, len(self.sigmas) - 1)
        lo, hi = table[idx - 1], table[idx]
        t = (idx - 1) + (value - lo) / (hi - lo)
        t = t.round() if quantize else t
        return t.to(sigma.dtype)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        t = t.double().clamp(0, len(self.sigmas) - 1)
        lo = t.floor().long().clamp(max=len(self.sigmas) - 2)
        w = t - lo
        if self.interpolation == "linear":
            s = self.sigmas.to(t.device)
            return (1 - w) * s[lo] + w * s[lo + 1]
        ls = self.log_sigmas.to(t.device)
        return ((1 - w) * ls[lo] + w * ls[lo + 1]).exp()

    def schedule(self, n: int, spacing: str = "trailing") -> Tensor:
        """n sampling sigmas taken from the table, plus a final 0 (Lin et al. 2024, Table 2)."""
        N = len(self.sigmas)
        if spacing == "trailing":
            ts = torch.arange(N, 0, -N / n, dtype=torch.float64).round() - 1
        elif spacing == "leading":
            ts = (torch.arange(n, dtype=torch.float64) * (N // n)).flip(0)
        elif spacing == "linspace":
            ts = torch.linspace(N - 1, 0, n, dtype=torch.float64).round()
        else:
            raise ValueError(f"spacing must be trailing, leading or linspace, not {spacing!r}")
        return torch.cat([self.sigmas[ts.long()], self.sigmas.new_zeros(1)])

    def adapter(
        self, net: Net, prediction: Callable[..., Denoiser] = from_eps, quantize: bool = False
    ) -> Denoiser:
        """Wrap a model net(x_vp, t, cond) trained on integer timesteps t in [0, N).

        `prediction` is one of the adapters above (from_eps, from_v, from_x0).
        """
        return prediction(net, lambda s: self.sigma_to_t(s, quantize))
