"""Gaussian mixtures: data whose denoiser and probability-flow map are known in closed form.

For p(x0) = sum_k w_k N(mu_k, s_k^2 I), the noisy marginal is p_sigma = sum_k w_k N(mu_k,
(s_k^2 + sigma^2) I) and the ideal denoiser (Tweedie; Karras et al. 2022, eq. 3) is

    E[x0 | x] = sum_k r_k(x) * (mu_k + s_k^2 / (s_k^2 + sigma^2) * (x - mu_k)),

with r_k the posterior responsibilities. Samplers, schedules and likelihood are tested and
benchmarked against it, and the optimised schedule is fitted on such proxies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixture:
    means: Tensor  # (K, D)
    stds: Tensor  # (K,) isotropic std per component
    weights: Tensor  # (K,) summing to 1

    @staticmethod
    def random(
        dim: int,
        modes: int,
        *,
        std_range: tuple[float, float] = (0.05, 0.2),
        low: float = -1.0,
        high: float = 1.0,
        seed: int = 0,
    ) -> GaussianMixture:
        """Means uniform in [low, high]^dim, log-uniform widths, Dirichlet(1) weights."""
        g = torch.Generator().manual_seed(seed)
        means = low + (high - low) * torch.rand(modes, dim, generator=g, dtype=torch.float64)
        lo, hi = math.log(std_range[0]), math.log(std_range[1])
        stds = torch.exp(lo + (hi - lo) * torch.rand(modes, generator=g, dtype=torch.float64))
        w = -torch.log(torch.rand(modes, generator=g, dtype=torch.float64))
        return GaussianMixture(means, stds, w / w.sum())

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _log_resp(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        # x (B, D), sigma (B,) -> log N terms (B, K) and total variances (B, K)
        var = self.stds.to(x) ** 2 + sigma.to(x)[:, None] ** 2
        d2 = torch.cdist(x, self.means.to(x)) ** 2
        logp = (
            self.weights.to(x).log()
            - 0.5 * d2 / var
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
        )
        return logp, var

    def denoise(self, x: Tensor, sigma: Tensor, cond: object = None) -> Tensor:
        """Exact E[x0 | x0 + sigma n = x] for x of shape (B, D)."""
        logp, var = self._log_resp(x, sigma)
        r = torch.softmax(logp, dim=1)  # (B, K)
        shrink = self.stds.to(x) ** 2 / var  # (B, K)
        mu = self.means.to(x)
        # sum_k r_k (mu_k + shrink_k (x - mu_k)) = (r * shrink).sum * x + (r * (1 - shrink)) @ mu
        return (r * shrink).sum(1, keepdim=True) * x + (r * (1 - shrink)) @ mu

    def log_prob(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        logp, _ = self._log_resp(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))
        return torch.logsumexp(logp, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z


def exact_flow_map(
    denoise, x: Tensor, sigma_start: float, *, steps: int = 2000, sigma_end: float = 1e-5
) -> Tensor:
    """Solve the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma from sigma_start to 0.

    Classical RK4 in u = log(sigma), where dx/du = x - D is smooth, then a last denoising step
    from sigma_end (its error is O(sigma_end^2 / std^2), negligible for sigma_end = 1e-5).
    Used as the reference every sampler is measured against; run it in float64.
    """
    x = flow_between(denoise, x, sigma_start, sigma_end, steps)
    ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    return denoise(x, ones * sigma_end, None)


def flow_between(denoise, x: Tensor, sigma_a: float, sigma_b: float, steps: int) -> Tensor:
    """The probability-flow ODE's state at sigma_b > 0 from x at sigma_a: ``steps`` classical
    RK4 steps in u = log(sigma), where dx/du = x - D(x, sigma) is smooth."""
    us = torch.linspace(math.log(sigma_a), math.log(sigma_b), steps + 1, dtype=torch.float64)
    ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)

    def f(x: Tensor, u: float) -> Tensor:
        return x - denoise(x, ones * math.exp(u), None)

    for u0, u1 in zip(us[:-1].tolist(), us[1:].tolist(), strict=True):
        h = u1 - u0
        k1 = f(x, u0)
        k2 = f(x + h / 2 * k1, u0 + h / 2)
        k3 = f(x + h / 2 * k2, u0 + h / 2)
        k4 = f(x + h * k3, u1)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x
