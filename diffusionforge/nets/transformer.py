"""A small pre-norm transformer over tokens: the masked-diffusion denoiser and the AR baseline.

One backbone, two attention masks. `causal=False` is the bidirectional denoiser of masked
diffusion (MDLM, Sahoo et al. 2024, uses a DiT-style bidirectional transformer); `causal=True`
is the same network as a left-to-right language model (nanoGPT's `model.py`, Karpathy), so the
two are compared at equal parameters. Positions enter through rotary embeddings (RoPE, Su et al.
2021) inside attention (`positions="rope"`, the default), or as a learned absolute embedding per
position added to the token embeddings (`positions="learned"`, GPT-2/nanoGPT's `wpe`): RoPE's
frequencies carry no period of the data, so text laid out on a grid (a 9x9 Sudoku: a cell's
column is its offset mod 9) is learned much faster with learned positions, which can encode any
relation between positions; or as learned row and column embeddings of a grid laid out row by
row, `grid_width` cells a row (`positions="grid"`): cells of one row (or column) share a vector
from the start, so the network need not discover the layout (Sudoku: leaves the loss plateau
far sooner than per-position embeddings, BENCHMARKS.md). Either way a window may be any length
up to `length`; attention is PyTorch's fused `scaled_dot_product_attention`.

No time conditioning: for absorbing-state diffusion with the SUBS parametrisation the fraction
of masks in the input already tells the network how noisy it is, and MDLM (Sec. 3.3 and its
ablation) reports that a time-free denoiser matches a time-conditioned one; it also makes the
sampler's caching exact (skip the network when no token changed). `forward` keeps the nets/
signature `(tokens, c_noise, cond)` and ignores c_noise.

Block diffusion (BD3-LM, Arriola et al. 2025; core/block_diffusion.py) uses the bidirectional
network with a third mask, `block=b`: attention is bidirectional inside each block of b tokens
and causal across blocks (a token sees its own block and every earlier one). For training, the
noisy copy of a sequence and its clean copy go through in one pass (`forward(..., clean=x0)`,
BD3-LM Sec. 3.2's vectorised training): noisy block j sees noisy block j and clean blocks < j,
clean tokens see clean blocks <= j, and both copies carry the same positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TRANSFORMER_PRESETS = {
    "tiny": {"dim": 64, "depth": 2, "heads": 4},
    "small": {"dim": 128, "depth": 4, "heads": 4},
    "base": {"dim": 256, "depth": 6, "heads": 8},
}
POSITIONS = ("rope", "learned", "grid")


def rope_tables(length: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos, sin (length, head_dim / 2) of RoPE's rotation angles pos * base^(-2i / head_dim)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(length, dtype=torch.float64)[:, None] * inv[None]
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) of x (B, H, L, d) by each position's angles."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool, dropout: float) -> None:
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor | None, sin: Tensor | None, mask: Tensor | None = None
    ) -> Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if cos is not None:  # RoPE; None: positions are in x already (learned)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, H, L, d)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # fmt: skip
        return self.out(y.transpose(1, 2).reshape(b, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, cos: Tensor | None, sin: Tensor | None, mask: Tensor | None = None
    ) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerLM(nn.Module):
    """tokens (B, L) long -> logits (B, L, vocab_size), L <= length.

    Bidirectional (`causal=False`): logits at l are for the clean token at l given all inputs.
    Causal: logits at l are for the *next* token given inputs 0..l (the AR objective shifts)."""

    # FSDP (train/sharding.py) gives each of these its own unit: one block's weights at a time
    _no_split_modules = ["Block"]

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        causal: bool = False,
        positions: str = "rope",
        grid_width: int = 0,
        block: int = 0,
    ) -> None:
        super().__init__()
        if block and causal:
            raise ValueError("block: block attention is for the bidirectional network")
        if positions not in POSITIONS:
            expected = ", ".join(POSITIONS)
            raise ValueError(f"positions: expected one of {expected}, got {positions!r}")
        self.vocab_size, self.length, self.causal = vocab_size, length, causal
        self.block = block  # 0: full attention (or causal); b: block-causal (block diffusion)
        self.positions = positions
        self.embed = nn.Embedding(vocab_size, dim)
        if positions == "grid" and grid_width < 1:
            raise ValueError(f"grid_width: expected at least 1 cell a row, got {grid_width}")
        self.grid_width = grid_width
        if positions == "learned":  # (length, dim), initialised like the token embeddings
            self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        if positions == "grid":  # (rows, dim) and (grid_width, dim)
            rows = -(-length // grid_width)
            self.row_pos = nn.Parameter(torch.randn(rows, dim) * 0.02)
            self.col_pos = nn.Parameter(torch.randn(grid_width, dim) * 0.02)
        self.blocks = nn.ModuleList(
            Block(dim, heads, causal, mlp_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        cos, sin = rope_tables(length, dim // heads)
        # derived from the shape: not saved, so checkpoints hold weights only
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 depth)
            for p in (block.attn.out.weight, block.mlp[2].weight):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * depth))

    def embed_positions(self, tokens: Tensor, start: int):
        """Embeddings (B, n, D) of tokens (B, n) at positions start.., and the RoPE tables of
        those positions (None, None for learned or grid positions, which are added here)."""
        end = start + tokens.shape[1]
        x = self.embed(tokens)
        if self.positions == "learned":
            return x + self.pos[start:end], None, None
        if self.positions == "grid":
            p = torch.arange(start, end, device=tokens.device)
            return (
                x + self.row_pos[p // self.grid_width] + self.col_pos[p % self.grid_width],
                None,
                None,
            )
        return x, self.cos[start:end], self.sin[start:end]

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(
        self,
        tokens: Tensor,
        c_noise: Tensor | None = None,
        cond=None,
        cache=None,
        clean: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, L, V) of `tokens` (B, L). With `clean` (B, L), a block network's training
        pass: logits of the noisy `tokens`, each block seeing itself and `clean`'s earlier
        blocks (one pass over 2L tokens)."""
        if cache is not None:  # incremental causal decoding: the next tokens only (kv_cache.py)
            return cache.run(self, tokens)
        length, mask = tokens.shape[1], None
        x, cos, sin = self.embed_positions(tokens, 0)  # (B, L, D)
        if clean is not None:
            x2, cos2, sin2 = self.embed_positions(clean, 0)  # the same positions again
            x = torch.cat([x, x2], 1)  # (B, 2L, D)
            if cos is not None:
                cos, sin = torch.cat([cos, cos2]), torch.cat([sin, sin2])
            mask = pair_mask(length, self.block, tokens.device)
        elif self.block:
            mask = block_causal_mask(length, self.block, tokens.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.head(self.norm(x[:, :length]))  # (B, L, V)


def block_causal_mask(length: int, block: int, device=None) -> Tensor:
    """(L, L) bool, True where query i may attend to key j: j's block is not after i's."""
    blk = torch.arange(length, device=device) // block
    return blk[None, :] <= blk[:, None]


def pair_mask(length: int, block: int, device=None) -> Tensor:
    """(2L, 2L) bool mask of [noisy, clean] (BD3-LM Sec. 3.2, Fig. 2): noisy queries see their
    own noisy block and earlier clean blocks, clean queries see clean blocks up to their own."""
    blk = torch.arange(length, device=device) // block
    same = blk[None, :] == blk[:, None]
    before = blk[None, :] < blk[:, None]
    top = torch.cat([same, before], 1)  # noisy queries: (L, 2L)
    bottom = torch.cat([torch.zeros_like(same), same | before], 1)  # clean queries
    return torch.cat([top, bottom], 0)
