"""Augmentation whose randomness is a pure function of (seed, epoch, sample index).

Random numbers come from a counter-based hash (SplitMix64, Steele et al. 2014), so the
augmentation of example i in epoch e is the same in any process, worker or batch size, and a
resumed run needs no RNG state to reproduce it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser: a bijection of uint64 with good avalanche.
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: int, indices: Tensor, count: int) -> Tensor:
    """(B, count) float64 uniforms in (0, 1), a function of (seed, epoch, index, j) only."""
    key = _mix(np.array([seed & (2**64 - 1)], dtype=np.uint64))
    key = _mix(key ^ np.uint64(epoch))
    idx = indices.cpu().numpy().astype(np.uint64)[:, None]  # (B, 1)
    j = np.arange(count, dtype=np.uint64)[None, :]  # (1, count)
    bits = _mix(_mix(key ^ idx) ^ j)  # (B, count)
    u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return torch.from_numpy(u)


def augment(
    x: Tensor, indices: Tensor, epoch: int, seed: int, *, kind: str, jitter: float = 0.0
) -> Tensor:
    """x: (B, ...) examples at `indices` (B,); returns augmented copies."""
    if kind == "none":
        return x
    if kind == "flip":  # mirror the last axis (image width; reverses a vector)
        flip = uniforms(seed, epoch, indices, 1)[:, 0] < 0.5  # (B,)
        mask = flip.view(-1, *[1] * (x.dim() - 1)).to(x.device)
        return torch.where(mask, x.flip(-1), x)
    if kind == "jitter":  # additive Gaussian noise, Box-Muller from two uniforms per value
        d = x[0].numel()
        u = uniforms(seed, epoch, indices, 2 * d)
        z = torch.sqrt(-2 * torch.log(u[:, :d])) * torch.cos(2 * torch.pi * u[:, d:])
        return x + jitter * z.to(x.dtype).view_as(x).to(x.device)
    raise ValueError(f"unknown augmentation {kind!r}")


def mix_seed(*values: int) -> int:
    """Hash integers (seed, step, shard, ...) into one 63-bit seed for a torch.Generator."""
    key = np.array([0], dtype=np.uint64)
    for v in values:
        key = _mix(key ^ np.uint64(v & (2**64 - 1)))
    return int(key[0] >> np.uint64(1))
