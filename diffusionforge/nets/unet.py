"""A UNet in the ADM/EDM family (Dhariwal & Nichol 2021; Karras et al. 2022, ``DhariwalUNet``).

Residual blocks with the noise/class embedding injected by adaptive group norm (scale and shift,
ADM Sec. 3 "AdaGN"), self-attention at chosen resolutions through
``F.scaled_dot_product_attention``, dropout, and zero-initialised last layers so every residual
branch (and the whole network) starts as the identity / zero map. No noise math: the caller
passes ``c_noise`` and interprets the output.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffusionforge.nets.cross_attention import CrossAttention2d
from diffusionforge.nets.embed import ConditionEmbedding, group_count
from diffusionforge.nets.layout import with_layout_map
from diffusionforge.nets.text_encoder import TextFeatures


def _zero(module: nn.Module) -> nn.Module:
    # Zero-init the last layer of each residual branch: the block starts as the identity, which
    # keeps deep stacks trainable without warm-up (ADM, EDM, DiT all do this).
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> AdaGN(emb) -> SiLU -> dropout -> conv, plus a skip; scaled 1/sqrt 2."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(group_count(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)  # per-channel (scale, shift)
        self.norm1 = nn.GroupNorm(group_count(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        # EDM's skip_scale: keeps activation variance constant as blocks accumulate.
        return (h + self.skip(x)) * math.sqrt(0.5)


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, zero-initialised output."""

    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(group_count(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * math.sqrt(0.5)


class Stage(nn.Module):
    """A residual block optionally followed by self-attention and cross-attention to the
    caption tokens: the unit the skips connect."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        dropout: float,
        attn: bool,
        hc: int,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout)
        self.attn = Attention(cout, hc) if attn else None
        heads = max(1, cout // hc)
        self.xattn = CrossAttention2d(cout, context_dim, heads) if context_dim else None

    def forward(self, x: Tensor, emb: Tensor, ctx: TextFeatures | None = None) -> Tensor:
        x = self.res(x, emb)
        x = self.attn(x) if self.attn is not None else x
        if self.xattn is not None and ctx is not None:
            x = self.xattn(x, ctx.tokens, ctx.mask)
        return x


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, ctx: object = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, ctx: object = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """forward(x (B,C,H,W), c_noise (B,), cond (B,) long | None) -> (B,C,H,W).

    H and W must be divisible by 2 ** (len(channel_mult) - 1). ``attn_resolutions`` lists the
    feature-map sizes (e.g. 16 for a 16x16 map) that get self-attention after each block; the
    bottleneck always has one. ``num_classes=0`` builds an unconditional network.

    Text conditioning (off by default, so class models keep their exact weights layout): with
    ``text`` a module mapping ``cond`` to ``TextFeatures`` (nets/text_encoder.py), ``cond`` is
    the caption input, the pooled embedding joins the noise embedding (adaptive norm) and every
    block at ``cross_attn_resolutions`` (and the bottleneck) cross-attends to the tokens.
    """

    # FSDP (train/sharding.py) gives each of these its own unit: one block's weights at a time
    _no_split_modules = ["Stage"]

    def __init__(
        self,
        img_resolution: int,
        in_channels: int = 3,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        num_classes: int = 0,
        head_channels: int = 64,
        gradient_checkpointing: bool = False,
        text: nn.Module | None = None,
        cross_attn_resolutions: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_resolution = img_resolution
        self.gradient_checkpointing = gradient_checkpointing
        emb_dim = channels * 4
        self.embed = ConditionEmbedding(emb_dim, num_classes)
        self.text = text
        ctx_dim = text.dim if text is not None else 0
        self.pooled = nn.Linear(ctx_dim, emb_dim) if text is not None else None
        # a layout-grounded text module (nets/layout.py) adds its painted map as input channels
        spatial = getattr(text, "spatial_channels", 0)
        self.conv_in = nn.Conv2d(in_channels + spatial, channels * channel_mult[0], 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [channels * channel_mult[0]]
        cur, res = skip_channels[0], img_resolution
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                attn = res in attn_resolutions
                xd = ctx_dim if res in cross_attn_resolutions else 0
                self.down.append(
                    Stage(cur, channels * mult, emb_dim, dropout, attn, head_channels, xd)
                )
                cur = channels * mult
                skip_channels.append(cur)
            if level < len(channel_mult) - 1:
                self.down.append(Downsample(cur))
                skip_channels.append(cur)
                res //= 2

        self.mid = nn.ModuleList(
            [
                Stage(cur, cur, emb_dim, dropout, True, head_channels, ctx_dim),
                Stage(cur, cur, emb_dim, dropout, False, head_channels),
            ]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                cin = cur + skip_channels.pop()
                attn = res in attn_resolutions
                xd = ctx_dim if res in cross_attn_resolutions else 0
                self.up.append(
                    Stage(cin, channels * mult, emb_dim, dropout, attn, head_channels, xd)
                )
                cur = channels * mult
            if level > 0:
                self.up.append(Upsample(cur))
                res *= 2

        self.norm_out = nn.GroupNorm(group_count(cur), cur)
        self.conv_out = _zero(nn.Conv2d(cur, in_channels, 3, padding=1))

    def _run(self, block: nn.Module, x: Tensor, emb: Tensor, ctx: TextFeatures | None) -> Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # Recompute activations in backward: trades ~30% more compute for memory that no
            # longer grows with depth. Non-reentrant mode replays dropout with the same RNG.
            return checkpoint(block, x, emb, ctx, use_reentrant=False)
        return block(x, emb, ctx)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        ctx = None
        if self.text is not None:  # cond is the caption input, not a class label
            ctx = self.text(cond)
            emb = self.embed(c_noise, None) + self.pooled(ctx.pooled)
        else:
            emb = self.embed(c_noise, cond)
        emb = F.silu(emb)  # (B, emb_dim)
        x = with_layout_map(x, ctx)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb, ctx)
            skips.append(h)
        for block in self.mid:
            h = self._run(block, h, emb, ctx)
        for block in self.up:
            if isinstance(block, Stage):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run(block, h, emb, ctx)
        return self.conv_out(F.silu(self.norm_out(h)))


# Named sizes; parameter counts measured at 32x32 (64x64 for "large"), 3 channels, 10 classes.
UNET_PRESETS: dict[str, dict] = {
    # 0.30M: CPU tests; runs at 8x8 (8 -> 4 -> 2) as well as 32x32.
    "tiny": {
        "channels": 16,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 1,
        "attn_resolutions": (4,),
    },
    # 1.7M: the digits / glyphs size on a few CPU cores.
    "small": {
        "channels": 32,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 2,
        "attn_resolutions": (4,),
    },
    # 7.0M: larger CPU runs, small GPU runs.
    "medium": {
        "channels": 64,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 2,
        "attn_resolutions": (8,),
    },
    # 38M: DDPM/EDM CIFAR-10 scale (GPU).
    "base": {
        "channels": 128,
        "channel_mult": (1, 2, 2, 2),
        "num_res_blocks": 2,
        "attn_resolutions": (16,),
    },
    # 276M at 64x64: ADM ImageNet-64 scale (GPU; use gradient_checkpointing to save memory).
    "large": {
        "channels": 192,
        "channel_mult": (1, 2, 3, 4),
        "num_res_blocks": 3,
        "attn_resolutions": (32, 16, 8),
        "dropout": 0.1,
    },
}
