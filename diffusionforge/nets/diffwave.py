"""A DiffWave-style waveform network (Kong et al. 2021, "DiffWave", Sec. 3.2 and Fig. 2).

Residual layers of dilated, non-causal 1-D convolutions (dilation 2^(i mod cycle)), each with
a gated tanh x sigmoid unit, the noise/class embedding added before the dilated convolution,
and a split into a residual path (scaled 1/sqrt 2) and a skip path; the skips are summed,
scaled 1/sqrt(layers) and projected to one channel. The last projection is zero-initialised so
the network starts as the zero map. DiffWave embeds the integer diffusion step; here the
embedding takes ``c_noise`` (an O(1) float from the formulation) through the same Fourier
features as the image networks, plus a label embedding (index ``num_classes`` = null label).
No noise math: the caller passes ``c_noise`` and interprets the output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusionforge.nets.embed import ConditionEmbedding


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, dilation: int, emb_dim: int) -> None:
        super().__init__()
        self.emb = nn.Linear(emb_dim, channels)
        self.dilated = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dilated(x + self.emb(emb)[:, :, None])  # (B, 2C, L)
        gate, filt = h.chunk(2, dim=1)
        h = self.out(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = h.chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class DiffWave(nn.Module):
    """forward(x (B, 1, L), c_noise (B,), cond (B,) labels or None) -> (B, 1, L)."""

    def __init__(
        self, channels: int = 64, layers: int = 12, cycle: int = 12, num_classes: int = 0
    ) -> None:
        super().__init__()
        emb_dim = 4 * channels
        self.embed = ConditionEmbedding(emb_dim, num_classes)
        self.inp = nn.Conv1d(1, channels, 1)
        self.layers = nn.ModuleList(
            ResidualLayer(channels, 2 ** (i % cycle), emb_dim) for i in range(layers)
        )
        self.skip = nn.Conv1d(channels, channels, 1)
        self.proj = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise, cond)  # (B, E)
        h = F.relu(self.inp(x))
        total = torch.zeros_like(h)
        for layer in self.layers:
            h, skip = layer(h, emb)
            total = total + skip
        h = F.relu(self.skip(total / math.sqrt(len(self.layers))))
        return self.proj(h)
