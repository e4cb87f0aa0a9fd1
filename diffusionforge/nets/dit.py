"""Diffusion Transformer (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers").

Patchify -> transformer blocks with adaLN-Zero conditioning (Sec. 3.2: the condition regresses
per-block shift/scale/gate, the gates start at zero so each block starts as the identity) ->
linear decoder -> unpatchify. Attention goes through ``F.scaled_dot_product_attention``.
Same seam as the UNet: ``forward(x, c_noise, cond)``, no noise math.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffusionforge.nets.cross_attention import CrossAttention
from diffusionforge.nets.embed import ConditionEmbedding
from diffusionforge.nets.layout import with_layout_map
from diffusionforge.nets.text_encoder import TextFeatures


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]  # x (B, N, D), shift/scale (B, D)


def _sincos_2d(dim: int, grid: int) -> Tensor:
    """Fixed 2-D sin-cos position embedding (DiT / MAE): half the channels per axis."""
    pos = torch.arange(grid, dtype=torch.float64)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    out = pos[:, None] * omega[None, :]  # (grid, dim/4)
    emb1d = torch.cat([out.sin(), out.cos()], dim=1)  # (grid, dim/2)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    emb = torch.cat([emb1d[ys.flatten()], emb1d[xs.flatten()]], dim=1)  # (grid*grid, dim)
    return emb.float()


class DiTBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, dropout: float, context_dim: int = 0
    ) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )
        # adaLN-Zero: six (B, D) vectors per block; zero init makes every gate start at 0.
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        # Text: cross-attention between self-attention and the MLP, ungated and zero-initialised
        # (PixArt-alpha, Chen et al. 2023, Sec. 2.3); absent for class models.
        self.xattn = CrossAttention(dim, context_dim, heads) if context_dim else None

    def forward(self, x: Tensor, emb: Tensor, ctx: TextFeatures | None = None) -> Tensor:
        b, n, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(emb).chunk(6, dim=1)
        h = _modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1[:, None, :] * self.proj(h)
        if self.xattn is not None and ctx is not None:
            x = self.xattn(x, ctx.tokens, ctx.mask)
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """forward(x (B,C,H,W), c_noise (B,), cond (B,) long | None) -> (B,C,H,W), H = W = resolution.

    ``img_resolution`` must be divisible by ``patch_size``. ``num_classes=0`` is unconditional;
    label ``num_classes`` (or ``cond=None``) is the null label for classifier-free guidance.
    With ``text`` (a module mapping ``cond`` to ``TextFeatures``) ``cond`` is the caption input:
    its pooled embedding joins the adaLN condition and every block cross-attends to its tokens.
    """

    # FSDP (train/sharding.py) gives each of these its own unit: one block's weights at a time
    _no_split_modules = ["DiTBlock"]

    def __init__(
        self,
        img_resolution: int,
        in_channels: int = 3,
        patch_size: int = 2,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        num_classes: int = 0,
        gradient_checkpointing: bool = False,
        text: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.patch_size = in_channels, patch_size
        self.grid = img_resolution // patch_size
        self.gradient_checkpointing = gradient_checkpointing
        # a layout-grounded text module (nets/layout.py) adds its painted map as input channels
        spatial = getattr(text, "spatial_channels", 0)
        self.patchify = nn.Conv2d(in_channels + spatial, dim, patch_size, stride=patch_size)
        self.register_buffer("pos", _sincos_2d(dim, self.grid)[None], persistent=False)
        self.embed = ConditionEmbedding(dim, num_classes)
        ctx_dim = text.dim if text is not None else 0
        self.blocks = nn.ModuleList(
            DiTBlock(dim, heads, mlp_ratio, dropout, ctx_dim) for _ in range(depth)
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, patch_size * patch_size * in_channels)
        self._init_weights()
        # Registered after the init above: the text modules keep their own initialisation.
        self.text = text
        self.pooled = nn.Linear(ctx_dim, dim) if text is not None else None

    def _init_weights(self) -> None:
        # DiT's initialisation: Xavier for linear layers, patch embedding like a linear layer,
        # and a zero final layer so the untrained network outputs exactly zero.
        for m in self.modules():
            if isinstance(m, nn.Linear) and m not in {b.ada for b in self.blocks}:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patchify.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        zeroed = [self.ada_out, self.out] + [b.xattn.proj for b in self.blocks if b.xattn]
        for layer in zeroed:  # cross-attention starts as the identity too
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        ctx = None
        if self.text is not None:  # cond is the caption input, not a class label
            ctx = self.text(cond)
            emb = self.embed(c_noise, None) + self.pooled(ctx.pooled)
        else:
            emb = self.embed(c_noise, cond)
        emb = F.silu(emb)  # (B, dim)
        x = with_layout_map(x, ctx)
        h = self.patchify(x).flatten(2).transpose(1, 2) + self.pos  # (B, N, dim)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, emb, ctx, use_reentrant=False)
            else:
                h = block(h, emb, ctx)
        shift, scale = self.ada_out(emb).chunk(2, dim=1)
        h = self.out(_modulate(self.norm_out(h), shift, scale))  # (B, N, p*p*C)
        p, g, c = self.patch_size, self.grid, self.in_channels
        h = h.reshape(-1, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return h.reshape(-1, c, g * p, g * p)


# Named sizes after DiT's S/B/L plus a CPU "tiny"; counts at 32x32, 3 channels, 10 classes.
DIT_PRESETS: dict[str, dict] = {
    "tiny": {"dim": 96, "depth": 4, "heads": 3, "patch_size": 2},  # 0.7M: CPU tests, 8x8 to 32x32
    "S": {"dim": 384, "depth": 12, "heads": 6, "patch_size": 2},  # 32M (DiT-S)
    "B": {"dim": 768, "depth": 12, "heads": 12, "patch_size": 2},  # 130M (DiT-B)
    "L": {"dim": 1024, "depth": 24, "heads": 16, "patch_size": 2},  # 457M (DiT-L)
}
