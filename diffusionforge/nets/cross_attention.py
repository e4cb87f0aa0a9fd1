"""Cross-attention from image features to caption tokens (Rombach et al. 2022, LDM Sec. 3.3;
Saharia et al. 2022, Imagen), shared by the UNet and the DiT.

Queries come from the image positions, keys/values from the per-token text embeddings; padded
tokens are masked out. The output projection starts at zero, so adding cross-attention to a
network leaves it the identity map at initialisation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CrossAttention(nn.Module):
    """x (B, N, C) attends to context (B, T, D) with mask (B, T) bool -> (B, N, C) residual."""

    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.norm_ctx = nn.LayerNorm(context_dim)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        b, n, c = x.shape
        t = context.shape[1]
        q = self.q(self.norm(x)).reshape(b, n, self.heads, -1).transpose(1, 2)  # (B, h, N, c/h)
        k, v = (
            self.kv(self.norm_ctx(context)).reshape(b, t, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return x + self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention2d(CrossAttention):
    """The same on a feature map (B, C, H, W)."""

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        b, c, h, w = x.shape
        out = super().forward(x.flatten(2).transpose(1, 2), context, mask)  # (B, HW, C)
        return out.transpose(1, 2).reshape(b, c, h, w)
