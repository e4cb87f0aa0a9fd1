"""Conditioning embeddings shared by the UNet and the DiT.

The networks receive ``c_noise``, an O(1) float per example (the formulation decides what it is,
for EDM ``log(sigma) / 4``), and an optional integer class label. Both are turned into one
embedding vector that the blocks inject through adaptive normalisation.
"""

import math

import torch
from torch import Tensor, nn


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020; EDM's ``FourierEmbedding``).

    Positional (transformer) frequencies suit integer timesteps in [0, 1000); ``c_noise`` here is
    O(1), so frequencies drawn from N(0, scale^2) resolve it better. They come from a fixed seed
    and live in a persistent buffer, so a checkpoint carries them and two builds agree.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=generator) * scale)

    def forward(self, c: Tensor) -> Tensor:  # (B,) -> (B, dim)
        angle = c.float()[:, None] * (2 * math.pi) * self.freqs[None, :]
        return torch.cat([angle.cos(), angle.sin()], dim=1)


class ConditionEmbedding(nn.Module):
    """Noise-level features + MLP, plus a class embedding; returns (B, dim).

    Index ``num_classes`` is the "null" label: classifier-free guidance trains with labels dropped
    to it and samples the unconditional branch with it. ``cond=None`` means null for all.
    """

    def __init__(self, dim: int, num_classes: int = 0, fourier_dim: int = 256) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fourier = FourierFeatures(fourier_dim)
        self.mlp = nn.Sequential(nn.Linear(fourier_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, c_noise: Tensor, cond: Tensor | None) -> Tensor:
        emb = self.mlp(self.fourier(c_noise))
        if self.label is not None:
            if cond is None:
                cond = torch.full_like(c_noise, self.num_classes, dtype=torch.long)
            emb = emb + self.label(cond.long())
        return emb


def group_count(channels: int, max_groups: int = 32, min_per_group: int = 4) -> int:
    """Largest divisor of ``channels`` up to ``max_groups`` leaving >= ``min_per_group`` each.

    Tiny CPU networks have 16 or 32 channels, where 32 groups of one channel would make group
    norm an instance norm; this keeps groups statistically meaningful at every width.
    """
    for groups in range(min(max_groups, channels // min_per_group), 0, -1):
        if channels % groups == 0:
            return groups
    return 1
