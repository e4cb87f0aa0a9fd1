"""Built-in 2-D toy distributions: two moons, swiss roll, ring of Gaussians, checkerboard.

Each generator is a pure function of (n, generator) returning float32 points of shape (n, 2),
scaled to roughly unit spread so one noise-level distribution (EDM, sigma_data = 1) suits all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def moons(n: int, generator: torch.Generator, noise: float = 0.05) -> Tensor:
    # The two interleaved half circles of scikit-learn's make_moons, centred.
    t = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1)  # (n, 2)
    pts = pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return pts.float()


def swissroll(n: int, generator: torch.Generator, noise: float = 0.05) -> Tensor:
    # 2-D swiss roll: radius grows with angle, 1.5 turns.
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=torch.float64))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 7.0
    pts = pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return pts.float()


def ring(n: int, generator: torch.Generator, modes: int = 8, radius: float = 1.5) -> Tensor:
    # Mixture of `modes` equal Gaussians (std 0.08) evenly spaced on a circle.
    k = torch.randint(modes, (n,), generator=generator).double()
    angle = 2 * math.pi * k / modes
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return (centres + 0.08 * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()


def checkerboard(n: int, generator: torch.Generator, cells: int = 4) -> Tensor:
    # Uniform on the black squares of a cells x cells board covering [-2, 2]^2.
    col = torch.randint(cells, (n,), generator=generator)
    row = torch.randint(cells // 2, (n,), generator=generator) * 2 + (col % 2)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    size = 4.0 / cells
    pts = torch.stack([col + u[:, 0], row + u[:, 1]], dim=1) * size - 2.0
    return pts.float()


TOY_SETS = {"moons": moons, "swissroll": swissroll, "ring": ring, "checkerboard": checkerboard}


def make_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """Points of the named toy set; the same (name, n, seed) always gives the same bytes."""
    return TOY_SETS[name](n, torch.Generator().manual_seed(seed))
