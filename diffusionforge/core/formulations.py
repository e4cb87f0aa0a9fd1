"""Training formulations: how noise levels are drawn, what the network predicts, how the loss
is weighted. Each family is one frozen dataclass with the same four methods (DESIGN.md rule 2):

    sample_noise_level(batch, device=, generator=) -> sigma (B,)
    add_noise(x0, sigma, noise) -> x = x0 + sigma * noise
    precondition(net) -> Denoiser          (the trained network, as our one seam)
    loss(net, x0, cond, generator=) -> per-example loss (B,)

and the sampling range it recommends (sigma_min, sigma_max). All three speak sigma; they differ
only in the network's input scaling, target and weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from diffusionforge.core.denoiser import (
    Cond,
    Denoiser,
    DiscreteTimesteps,
    Net,
    bcast,
    cosine_betas,
    flow_to_x0,
    linear_betas,
    v_to_x0,
)


def _mean_per_example(err: Tensor) -> Tensor:
    return err.flatten(1).mean(1)


def _randn(shape, *, device, generator: torch.Generator | None, dtype=torch.float32) -> Tensor:
    dev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=dev, dtype=dtype).to(device)


def _rand(shape, *, device, generator: torch.Generator | None) -> Tensor:
    dev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=dev).to(device)


@dataclass(frozen=True)
class EDM:
    """Karras et al. 2022 (EDM), Table 1 and Sec. 5: preconditioning, log-normal training sigmas,
    loss weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2."""

    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def sample_noise_level(self, batch: int, *, device=None, generator=None) -> Tensor:
        return (
            self.p_mean + self.p_std * _randn((batch,), device=device, generator=generator)
        ).exp()

    def add_noise(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        return x0 + bcast(sigma, x0) * noise

    def _scalings(self, sigma: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s, sd = bcast(sigma, x), self.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        return c_skip, c_out, c_in

    def precondition(self, net: Net) -> Denoiser:
        def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
            c_skip, c_out, c_in = self._scalings(sigma, x)
            f = net(c_in * x, sigma.log() / 4, cond)
            return c_skip * x + c_out * f.to(x.dtype)

        return denoise

    def loss(self, net: Net, x0: Tensor, cond: Cond = None, *, generator=None) -> Tensor:
        sigma = self.sample_noise_level(x0.shape[0], device=x0.device, generator=generator)
        noise = _randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        x = self.add_noise(x0, sigma, noise)
        # lambda(sigma) * |D - x0|^2 == |F - target|^2 with the effective target below (EDM eq. 8)
        c_skip, c_out, c_in = self._scalings(sigma, x0)
        target = (x0 - c_skip * x) / c_out
        f = net(c_in * x, sigma.log() / 4, cond)
        return _mean_per_example((f.float() - target.float()) ** 2)


@dataclass(frozen=True)
class VP:
    """DDPM (Ho et al. 2020) on N discrete timesteps, in sigma: x_vp = x / sqrt(1 + sigma^2).

    Linear (Ho et al.) or cosine (Nichol & Dhariwal 2021) betas; eps- or v-prediction (Salimans &
    Ho 2022); optional min-SNR-gamma loss weighting (Hang et al. 2023, eq. 10: weight
    min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v). Timesteps are drawn
    uniformly as in DDPM; the network gets c_noise = log(sigma) / 4 like every formulation here.
    """

    schedule: str = "linear"
    prediction: str = "eps"
    min_snr_gamma: float | None = None
    timesteps: int = 1000
    table: DiscreteTimesteps = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "cosine") or self.prediction not in ("eps", "v"):
            raise ValueError(f"VP: schedule linear|cosine and prediction eps|v, got {self!r}")
        betas = (
            linear_betas(self.timesteps)
            if self.schedule == "linear"
            else cosine_betas(self.timesteps)
        )
        object.__setattr__(self, "table", DiscreteTimesteps(betas))

    @property
    def sigma_min(self) -> float:
        return self.table.sigma_min

    @property
    def sigma_max(self) -> float:
        return min(self.table.sigma_max, 1e3)  # cosine's last level is ~1e4: no use sampling there

    def sample_noise_level(self, batch: int, *, device=None, generator=None) -> Tensor:
        dev = generator.device if generator is not None else device
        t = torch.randint(0, self.timesteps, (batch,), generator=generator, device=dev)
        return self.table.sigmas[t.cpu()].float().to(device)

    def add_noise(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        return x0 + bcast(sigma, x0) * noise

    def precondition(self, net: Net) -> Denoiser:
        def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
            x_in = x * bcast((1 + sigma**2).rsqrt(), x)
            out = net(x_in, sigma.log() / 4, cond).to(x.dtype)
            return v_to_x0(x, sigma, out) if self.prediction == "v" else x - bcast(sigma, x) * out

        return denoise

    def loss(self, net: Net, x0: Tensor, cond: Cond = None, *, generator=None) -> Tensor:
        sigma = self.sample_noise_level(x0.shape[0], device=x0.device, generator=generator)
        noise = _randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        s = bcast(sigma, x0)
        alpha = (1 + s**2).rsqrt()
        x_in = alpha * x0 + s * alpha * noise
        target = alpha * noise - s * alpha * x0 if self.prediction == "v" else noise
        err = _mean_per_example((net(x_in, sigma.log() / 4, cond).float() - target.float()) ** 2)
        if self.min_snr_gamma is None:
            return err
        snr = sigma.float() ** -2
        clipped = snr.clamp(max=self.min_snr_gamma)
        return err * (clipped / (snr + 1) if self.prediction == "v" else clipped / snr)


@dataclass(frozen=True)
class Flow:
    """Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) as in SD3 (Esser et
    al. 2024): x_t = (1 - t) x0 + t n, velocity target n - x0, logit-normal t (Sec. 3.1) with
    the resolution shift t' = shift t / (1 + (shift - 1) t) (Sec. 5.3.2). In sigma: sigma =
    t / (1 - t), x_t = x / (1 + sigma). The network gets c_noise = t."""

    shift: float = 1.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    t_min: float = 1e-4
    t_max: float = 1 - 1e-4

    @property
    def sigma_min(self) -> float:
        return 0.002

    @property
    def sigma_max(self) -> float:
        return 80.0

    def _t(self, batch: int, device, generator) -> Tensor:
        u = self.logit_mean + self.logit_std * _randn((batch,), device=device, generator=generator)
        t = torch.sigmoid(u)
        t = self.shift * t / (1 + (self.shift - 1) * t)
        return t.clamp(self.t_min, self.t_max)

    def sample_noise_level(self, batch: int, *, device=None, generator=None) -> Tensor:
        t = self._t(batch, device, generator)
        return t / (1 - t)

    def add_noise(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        return x0 + bcast(sigma, x0) * noise

    def precondition(self, net: Net) -> Denoiser:
        def denoise(x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
            x_t = x / bcast(1 + sigma, x)
            u = net(x_t, sigma / (1 + sigma), cond).to(x.dtype)
            return flow_to_x0(x, sigma, u)

        return denoise

    def loss(self, net: Net, x0: Tensor, cond: Cond = None, *, generator=None) -> Tensor:
        t = self._t(x0.shape[0], x0.device, generator)
        noise = _randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        tt = bcast(t, x0)
        x_t = (1 - tt) * x0 + tt * noise
        return _mean_per_example((net(x_t, t, cond).float() - (noise - x0).float()) ** 2)


FORMULATIONS = {"edm": EDM, "vp": VP, "flow": Flow}
