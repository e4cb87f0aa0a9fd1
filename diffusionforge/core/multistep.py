"""Multistep samplers: one network evaluation per step, earlier evaluations reused.

The exponential integrators (DPM-Solver++, UniPC) integrate the PF-ODE exactly in its linear
part: with lambda = -log(sigma) and h = lambda_next - lambda,

    x_next = (sigma_next / sigma) x + integral of e^{lambda - lambda_next} D(lambda) d lambda,

and differ in how they extrapolate D. Every step into sigma = 0 is first order (x = D), the
"lower order final" step: polynomial extrapolation over an infinite lambda step diverges.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusionforge.core.sampler_utils import denoise_at, randn_like, report, working


def sample_dpmpp_2m(denoise, x, sigmas, *, cond=None, generator=None, callback=None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), variable step sizes as in k-diffusion."""
    x, s = working(x), sigmas.tolist()
    d_old, h_old = None, None
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        if s[i + 1] == 0:
            x = d
        else:
            h = math.log(s[i] / s[i + 1])
            d_hat = d
            if d_old is not None:
                r = h_old / h
                d_hat = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_old
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * d_hat
            d_old, h_old = d, h
        report(callback, i, x, s[i], d)
    return x


def sample_dpmpp_3m(denoise, x, sigmas, *, cond=None, generator=None, callback=None) -> Tensor:
    """DPM-Solver++(3M): third-order multistep update (Lu et al. 2022b, Appendix B; the
    multistep third-order formula of DPM-Solver, Lu et al. 2022a, Algorithm 4, in data
    prediction). Starts with first- and second-order steps while history is short."""
    x, s = working(x), sigmas.tolist()
    hist: list[tuple[Tensor, float]] = []  # (denoised, lambda) of earlier steps, newest last
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        lam = -math.log(s[i])
        if s[i + 1] == 0:
            x = d
        else:
            h = math.log(s[i] / s[i + 1])
            em1 = math.expm1(-h)
            x_lin = (s[i + 1] / s[i]) * x - em1 * d
            if not hist:
                x = x_lin
            elif len(hist) == 1:
                r0 = (lam - hist[-1][1]) / h
                d1 = (d - hist[-1][0]) / r0
                x = x_lin - 0.5 * em1 * d1  # second-order (midpoint) multistep step
            else:
                (d_1, lam_1), (d_2, lam_2) = hist[-1], hist[-2]
                r0, r1 = (lam - lam_1) / h, (lam_1 - lam_2) / h
                d1_0, d1_1 = (d - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x_lin + (em1 / h + 1) * d1 - ((em1 + h) / h**2 - 0.5) * d2
        hist = (hist + [(d, lam)])[-2:]
        report(callback, i, x, s[i], d)
    return x


def sample_dpmpp_2m_sde(
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
    """DPM-Solver++(2M) SDE (Lu et al. 2022b, Sec. 5, midpoint variant of k-diffusion)."""
    x, s = working(x), sigmas.tolist()
    d_old, h_old = None, None
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        if s[i + 1] == 0:
            x = d
        else:
            h = math.log(s[i] / s[i + 1])
            eta_h = eta * h
            x = (s[i + 1] / s[i]) * math.exp(-eta_h) * x - math.expm1(-h - eta_h) * d
            if d_old is not None:
                r = h_old / h
                x = x - 0.5 * math.expm1(-h - eta_h) * (1 / r) * (d - d_old)
            if eta > 0:
                noise = randn_like(x, generator)
                x = x + noise * s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise
            d_old, h_old = d, h
        report(callback, i, x, s[i], d)
    return x


# --- UniPC ------------------------------------------------------------------------------


def _unipc_coeffs(h: float, rks: list[float], order: int, corrector: bool) -> list[float]:
    """Coefficients rho of UniPC with B(h) = e^h - 1 ("bh2"), Zhao et al. 2023, Algorithm 2/3.

    rks are the relative positions (lambda_k - lambda_0) / h of the earlier evaluations, with
    rks[-1] = 1 for the new evaluation. Solves R rho = b, R_ij = rks_j^i, b_i = phi_{i+1}(h) i! / B.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = math.expm1(hh)
    factorial = 1
    R, b = [], []
    for i in range(1, order + 1):
        R.append([rk ** (i - 1) for rk in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    if corrector:
        if order == 1:
            return [0.5]
        return torch.linalg.solve(
            torch.tensor(R, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        ).tolist()
    if order == 2:
        return [0.5]
    R_, b_ = (
        torch.tensor(R, dtype=torch.float64)[:-1, :-1],
        torch.tensor(b, dtype=torch.float64)[:-1],
    )
    return torch.linalg.solve(R_, b_).tolist()


def sample_unipc(
    denoise,
    x,
    sigmas,
    *,
    cond=None,
    generator=None,
    callback=None,
    order: int = 3,
    gaussian_end: bool = False,
) -> Tensor:
    """UniPC-bh2 (Zhao et al. 2023): UniP predictor + UniC corrector, data prediction.

    The corrector reuses the evaluation at the predicted point for the next predictor, so NFE =
    steps. Order ramps up with the available history; the step into sigma = 0 is first order
    (x = D), or with gaussian_end the local-Gaussian step of `gaussian_end_step`, which also
    keeps the last corrector's work.
    """
    x, s = working(x), sigmas.tolist()
    hist: list[tuple[Tensor, float]] = []  # (denoised, lambda), newest last
    x_prev, used_order = None, 1
    evals: list[tuple[Tensor, Tensor, float]] = []  # (x, D(x), sigma) of the last two evaluations
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        evals = (evals + [(x, d, s[i])])[-2:]
        lam = -math.log(s[i])
        if hist:  # UniC: correct the point the last predictor made, using d evaluated there
            (m0, lam0) = hist[-1]
            h = lam - lam0
            older = hist[-used_order:-1] if used_order > 1 else []
            rks = [(lk - lam0) / h for _, lk in reversed(older)] + [1.0]
            rho = _unipc_coeffs(h, rks, used_order, corrector=True)
            res = rho[-1] * (d - m0)
            for rho_k, (mk, _), rk in zip(rho[:-1], reversed(older), rks[:-1], strict=True):
                res = res + rho_k * (mk - m0) / rk
            x = (s[i] / s[i - 1]) * x_prev - math.expm1(-h) * m0 - math.expm1(-h) * res
        hist = (hist + [(d, lam)])[-order:]
        x_prev = x
        if s[i + 1] == 0:
            x = gaussian_end_step(evals, x) if gaussian_end and len(evals) == 2 else d
        else:  # UniP predictor of order used_order
            used_order = min(order, len(hist))
            h = math.log(s[i] / s[i + 1])
            older = hist[-used_order:-1]
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * d
            if older:
                rks = [(lk - lam) / h for _, lk in reversed(older)] + [1.0]
                rho = _unipc_coeffs(h, rks, used_order, corrector=False)
                res = 0
                for rho_k, (mk, _), rk in zip(rho, reversed(older), rks[:-1], strict=True):
                    res = res + rho_k * (mk - d) / rk
                x = x - math.expm1(-h) * res
        report(callback, i, x, s[i], d)
    return x


def sample_unipc_gaussian(
    denoise, x, sigmas, *, cond=None, generator=None, callback=None, order: int = 3
) -> Tensor:
    """UniPC-bh2 whose step into sigma = 0 is `gaussian_end_step` (same NFE as UniPC)."""
    return sample_unipc(
        denoise, x, sigmas, cond=cond, callback=callback, order=order, gaussian_end=True
    )


def gaussian_end_step(evals: list[tuple[Tensor, Tensor, float]], x: Tensor) -> Tensor:
    """The step from the last level sigma_b into sigma = 0, solved for a locally Gaussian
    posterior instead of the first-order x = D.

    If near the end of its path a sample's data is locally one Gaussian N(m, S I), the denoiser
    is affine, D(x, sigma) = m + S / (S + sigma^2) (x - m), so m = D + S * score with score =
    (D - x) / sigma^2, at any point and level. Two evaluations (x_a, D_a at sigma_a, x_b, D_b
    at sigma_b < sigma_a) then give D_b - D_a = S (score_a - score_b): S per sample by least
    squares over its dimensions (clamped at 0; the points need not lie on the exact path). With
    t = S / sigma_b^2 the PF-ODE's end point from x at sigma_b is x - c (x - D(x)),
    c = 1 - 1 / (1 + sqrt(1 + 1 / t)): c = 1 (x = D) for a point mass, 1/2 for S >> sigma_b^2;
    D at the corrected state x is D_b + S / (S + sigma_b^2) (x - x_b), so the last corrector is
    kept without another evaluation. Each sample uses only its own numbers.
    """
    (xa, da, sa), (xb, db, sb) = evals
    flat = (xa.shape[0], -1)
    dscore = ((da - xa) / sa**2 - (db - xb) / sb**2).reshape(flat)
    S = ((db - da).reshape(flat) * dscore).sum(1) / (dscore * dscore).sum(1).clamp_min(1e-30)
    t = S.clamp_min(0) / sb**2
    a = t / (1 + t)
    c = 1 - 1 / (1 + (1 + 1 / t.clamp_min(1e-12)).sqrt())
    view = (-1,) + (1,) * (x.dim() - 1)
    d_x = db + a.view(view) * (x - xb)
    return x - c.view(view) * (x - d_x)


# --- iPNDM --------------------------------------------------------------------------------

# Adams-Bashforth weights for orders 1-4, newest derivative first.
_AB = [[1.0], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]]


def sample_ipndm(
    denoise, x, sigmas, *, cond=None, generator=None, callback=None, max_order: int = 4
) -> Tensor:
    """Improved PNDM (Zhang & Chen 2023, DEIS, Sec. 4; Zhou et al. 2024): Adams-Bashforth on
    dx/dsigma = (x - D) / sigma, with the order ramping from 1 to max_order as history grows."""
    x, s = working(x), sigmas.tolist()
    slopes: list[Tensor] = []  # newest first
    for i in range(len(s) - 1):
        d = denoise_at(denoise, x, s[i], cond)
        slopes = [(x - d) / s[i]] + slopes[: max_order - 1]
        w = _AB[len(slopes) - 1]
        x = x + (s[i + 1] - s[i]) * sum(wk * sk for wk, sk in zip(w, slopes, strict=True))
        report(callback, i, x, s[i], d)
    return x
