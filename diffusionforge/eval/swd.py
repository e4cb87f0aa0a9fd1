"""Sliced Wasserstein distance between two point sets (Rabin et al. 2011; Bonneel et al. 2015).

SW_2(P, Q)^2 = E_theta[ W_2(theta.P, theta.Q)^2 ] over unit directions theta. Each 1-D W_2 is
the L2 distance between quantile functions, estimated here on a common grid of quantiles, so the
two sets may differ in size. Directions come from a fixed seed: the same inputs give the same
number.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sliced_wasserstein(a: Tensor, b: Tensor, *, projections: int = 512, seed: int = 0) -> float:
    """a: (N, D), b: (M, D) -> SW_2 distance (same units as the data)."""
    a, b = a.detach().double().flatten(1).cpu(), b.detach().double().flatten(1).cpu()
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)  # (D, P) unit directions
    q = torch.linspace(0.0005, 0.9995, 1000, dtype=torch.float64)  # quantile grid
    pa = torch.quantile(a @ theta, q, dim=0)  # (Q, P)
    pb = torch.quantile(b @ theta, q, dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())
