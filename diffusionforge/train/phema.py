"""Power-function EMA and post-hoc EMA reconstruction (Karras et al. 2024, "Analyzing and
Improving the Training Dynamics of Diffusion Models", EDM2, section 3 and appendix C).

A power-function EMA at time t averages the past with weights proportional to tau^gamma,
tau in [0, t]. Its relative width sigma_rel (std of the weights divided by t) sets gamma
(eq. 3). Tracking two widths and saving snapshots lets any other width be rebuilt after
training as a linear combination of the snapshots (least squares in function space, eq. 4-6).
Pure math on numbers; no tensors of the model here.
"""

from __future__ import annotations

import numpy as np


def std_to_exp(std: float | np.ndarray) -> np.ndarray:
    """sigma_rel -> gamma: the largest real root of (g+2)^2 (g+3) sigma^2 = g + 1 (eq. 3)."""
    std = np.asarray(std, dtype=np.float64)
    t = std.reshape(-1) ** -2
    exp = [np.roots([1.0, 7.0, 16.0 - ti, 12.0 - ti]).real.max() for ti in t]
    return np.asarray(exp, dtype=np.float64).reshape(std.shape)


def exp_to_std(exp: float | np.ndarray) -> np.ndarray:
    exp = np.asarray(exp, dtype=np.float64)
    return np.sqrt((exp + 1) / (exp + 2) ** 2 / (exp + 3))


def power_beta(std: float, t: int) -> float:
    """Per-step decay so that after step t (1-based) the average has profile tau^gamma:
    beta_t = (1 - 1/t)^(gamma + 1) (EDM2, eq. 2 with unit steps)."""
    return float((1.0 - 1.0 / t) ** (std_to_exp(std) + 1.0))


def _correlation(a_t, a_std, b_t, b_std) -> np.ndarray:
    """Inner product of two normalised power-function profiles ending at a_t and b_t."""
    a_exp, b_exp = std_to_exp(a_std), std_to_exp(b_std)
    ratio = a_t / b_t
    t_exp = np.where(a_t < b_t, b_exp, -a_exp)
    t_max = np.maximum(a_t, b_t)
    num = (a_exp + 1) * (b_exp + 1) * ratio**t_exp
    den = (a_exp + b_exp + 1) * t_max
    return num / den


def solve_coefficients(
    in_t: np.ndarray, in_std: np.ndarray, out_t: float, out_std: float
) -> np.ndarray:
    """Weights x such that sum_i x_i * snapshot_i best matches the profile (out_t, out_std).

    in_t, in_std: (K,) time and width of each stored snapshot. Returns (K,) float64.
    """
    in_t = np.asarray(in_t, dtype=np.float64)
    in_std = np.asarray(in_std, dtype=np.float64)
    a = _correlation(in_t[:, None], in_std[:, None], in_t[None, :], in_std[None, :])  # (K, K)
    b = _correlation(in_t, in_std, np.float64(out_t), np.float64(out_std))  # (K,)
    return np.linalg.lstsq(a, b, rcond=None)[0]
