"""A small residual MLP denoiser for vector data (2-D toys, flattened arrays).

forward(x, c_noise, cond) -> tensor shaped like x. It knows nothing of noise schedules: the
formulation's preconditioning decides what `c_noise` means and what the output predicts.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from diffusionforge.nets.embed import FourierFeatures


class Block(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h) + emb)))


class MLPDenoiser(nn.Module):
    def __init__(
        self, shape: tuple[int, ...], hidden: int = 256, depth: int = 4, emb_dim: int = 64
    ):
        super().__init__()
        self.shape = tuple(shape)  # shape of one example, e.g. (2,)
        dim = math.prod(self.shape)
        self.embed = FourierFeatures(emb_dim)
        self.emb_proj = nn.Sequential(
            nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(Block(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)  # start as the identity-free denoiser: F(x) = 0
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: object = None) -> Tensor:
        b = x.shape[0]
        emb = self.emb_proj(self.embed(c_noise)).to(x.dtype)  # (B, hidden)
        h = self.inp(x.reshape(b, -1))  # (B, hidden)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.out_norm(h))).reshape(x.shape)
