"""Samplers: pure functions that integrate a denoiser from noise to data.

Signature of every sampler (DESIGN.md, rule 1):

    fn(denoise, x, sigmas, *, cond=None, generator=None, callback=None) -> Tensor

`x` is noise already scaled to sigmas[0]; `sigmas` is a decreasing float64 tensor ending in 0;
the result is the clean sample. Step coefficients are computed in float64 from `sigmas`; the state
x is kept in at least float32 whatever precision the network runs in. All history lives in locals,
so calls are re-entrant. `generator` is a torch.Generator or one per batch element (then a sample
does not depend on the batch it is drawn in). `callback`, if given, receives
{"i", "x", "sigma", "denoised"} after each step; raising from it cancels the run.

Everything is written for the probability-flow ODE in EDM form (Karras et al. 2022, eq. 4):
dx/dsigma = (x - D(x, sigma)) / sigma. Multistep samplers are in multistep.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from diffusionforge.core.multistep import (
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m,
    sample_ipndm,
    sample_unipc,
    sample_unipc_gaussian,
)
from diffusionforge.core.sampler_utils import (
    ancestral_split,
    denoise_at,
    randn_like,
    report,
    working,
)

# --- first-order samplers -----------------------------------------------------------------


def sample_euler(denoise, x, sigmas, *, cond=None, generator=None, callback=None) -> Tensor:
    """Euler's method on the PF-ODE (Karras et al. 2022, Algorithm 1 with first-order steps)."""
    x, s = working(x), sigmas.tolist()
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        x = x + (s[i + 1] - s[i]) * (x - d) / s[i]
        report(callback, i, x, s[i], d)
    return x


def sample_ddim(
    denoise,
    x,
    sigmas,
    *,
    cond=None,
    generator=None,
    callback=None,
    eta: float = 0.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DDIM (Song et al. 2021a, eq. 12): x' = D + sigma_down * eps_hat + sigma_up * z.

    eta = 0 is deterministic (and equals Euler on the PF-ODE in x = x0 + sigma n), eta = 1 is
    ancestral sampling with the DDPM posterior variance. s_noise scales the fresh noise.
    """
    x, s = working(x), sigmas.tolist()
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        down, up = ancestral_split(s[i], s[i + 1], eta)
        x = d + down * (x - d) / s[i]
        if up > 0:
            x = x + up * s_noise * randn_like(x, generator)
        report(callback, i, x, s[i], d)
    return x


def sample_euler_ancestral(
    denoise,
    x,
    sigmas,
    *,
    cond=None,
    generator=None,
    callback=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Euler ancestral (k-diffusion): an Euler step down to sigma_down, then fresh noise up to
    the next level. x + (sigma_down - sigma) (x - D) / sigma = D + sigma_down (x - D) / sigma,
    so this is DDIM with the same eta, and at eta = 1 DDPM's posterior sampling."""
    return sample_ddim(
        denoise,
        x,
        sigmas,
        cond=cond,
        generator=generator,
        callback=callback,
        eta=eta,
        s_noise=s_noise,
    )


def sample_ddpm(denoise, x, sigmas, *, cond=None, generator=None, callback=None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, eqs. 6-7): draw x' ~ q(x' | x, x0 = D(x)).

    In x = x0 + sigma n the posterior of sigma' < sigma is N(x0 + (sigma'/sigma)^2 (x - x0),
    sigma'^2 (sigma^2 - sigma'^2) / sigma^2). On DDPM's own timesteps this is its sampler.
    """
    x, s = working(x), sigmas.tolist()
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        ratio2 = (s[i + 1] / s[i]) ** 2
        x = d + ratio2 * (x - d)
        if s[i + 1] > 0:
            x = x + math.sqrt(s[i + 1] ** 2 * (1 - ratio2)) * randn_like(x, generator)
        report(callback, i, x, s[i], d)
    return x


def sample_heun(
    denoise,
    x,
    sigmas,
    *,
    cond=None,
    generator=None,
    callback=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2); s_churn = 0 is Algorithm 1,
    except that the first step, like the step to sigma = 0 (line 8 of Algorithm 1), is Euler.

    Each step first raises the noise level by gamma (when sigma in [s_tmin, s_tmax]), then takes
    a Heun step. n steps cost 2n - 2 evaluations (n >= 2), so an even budget is spent exactly
    (Algorithm 1's 2n - 1 left one of 16 unused). Why the first step: in x-space Heun's
    correction of a step from s to s' adds (s / s' - 1) / 2 (D(s') - D(s)), which outgrows the
    step itself when s / s' is large, as on the jump down from sigma_max; Euler there is
    x' = D + (s' / s)(x - D), exact while D stays put. On the moons network at 16 NFE this took
    Heun from SW2 0.161 to 0.060 on the same `optimized` placement (BENCHMARKS.md, "Heun's
    evaluations and its default schedule").
    """
    x, s = working(x), sigmas.tolist()
    n = len(s) - 1
    for i in range(n):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s[i] <= s_tmax else 0.0
        s_hat = s[i] * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s[i] ** 2) * s_noise * randn_like(x, generator)
        d = denoise_at(denoise, x, s_hat, cond)
        slope = (x - d) / s_hat
        x_next = x + (s[i + 1] - s_hat) * slope
        if 0 < i and s[i + 1] > 0:
            d2 = denoise_at(denoise, x_next, s[i + 1], cond)
            slope2 = (x_next - d2) / s[i + 1]
            x_next = x + (s[i + 1] - s_hat) * (slope + slope2) / 2
        x = x_next
        report(callback, i, x, s[i], d)
    return x


# Registries (DESIGN.md rule 4) -------------------------------------------------------------


@dataclass(frozen=True)
class SamplerInfo:
    order: int  # order of convergence of the deterministic version (1 for ancestral)
    evals_per_step: int  # network evaluations per step (the step to sigma = 0 may take fewer)
    stochastic: bool
    # evaluations the first and the last step (to sigma = 0) skip; one step is both, and costs 1
    first_step_saves: int = 0
    last_step_saves: int = 0
    # The schedule this sampler runs when none is named and the recommended pair for the NFE is
    # another sampler's (core.plan.default_schedule), chosen per sampler by measurement on the
    # moons network and on Gaussian mixtures none was chosen on (BENCHMARKS.md, "Each sampler's
    # default schedule" and "Heun's evaluations and its default schedule"): `optimized` (its
    # levels for the sampler's own step count), although fitted for UniPC, was the best or near
    # it for every sampler once Heun's first step is Euler.
    schedule: str = "optimized"

    def nfe(self, steps: int) -> int:
        """Network evaluations of `steps` steps (a schedule of steps + 1 sigmas)."""
        saves = self.first_step_saves + self.last_step_saves
        return max(steps, steps * self.evals_per_step - saves)

    def steps_for(self, nfe: int) -> int:
        """The most steps whose evaluations fit in `nfe` (nfe(steps) <= nfe; equal unless the
        sampler's costs skip it, e.g. Heun's 2n - 2 at an odd nfe)."""
        saves = self.first_step_saves + self.last_step_saves
        return max(1, (nfe + saves) // self.evals_per_step)


SAMPLERS = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "unipc": sample_unipc,
    "unipc_gaussian": sample_unipc_gaussian,
    "ipndm": sample_ipndm,
}

SAMPLER_INFO = {
    "euler": SamplerInfo(1, 1, False),
    "euler_ancestral": SamplerInfo(1, 1, True),
    "heun": SamplerInfo(2, 2, False, first_step_saves=1, last_step_saves=1),
    "ddim": SamplerInfo(1, 1, False),
    "ddpm": SamplerInfo(1, 1, True),
    "dpmpp_2m": SamplerInfo(2, 1, False),
    "dpmpp_3m": SamplerInfo(3, 1, False),
    "dpmpp_2m_sde": SamplerInfo(1, 1, True),
    "unipc": SamplerInfo(3, 1, False),
    "unipc_gaussian": SamplerInfo(3, 1, False),
    "ipndm": SamplerInfo(4, 1, False),
}
