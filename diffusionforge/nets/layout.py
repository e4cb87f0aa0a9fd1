"""Layout grounding: a network reads *where* each object goes, not only what the caption says.

Diffusion models conditioned on a caption alone get counts and spatial relations wrong (they
bind words to places poorly). Layout-grounded generation splits the job (Li et al. 2023,
GLIGEN; Lian et al. 2023, LLM-grounded Diffusion): a planner turns the prompt into boxes, each
with a short phrase ("red circle"), and the diffusion network is conditioned on the boxes. The
count is then the number of boxes and the relation is where they are.

`LayoutEncoder` is the in-network half, a drop-in for the text encoders of
nets/text_encoder.py (same `TextFeatures`):

- ``cond`` rows are packed layouts (B, K, 3 + 4) floats, one row per object slot:
  ``[present, word id, word id, x0, y0, x1, y1]`` with the box in [0, 1] canvas units (y down)
  and the phrase as ids of the caption vocabulary (0 = none). An all-zero row is an empty slot;
  an all-zero layout is the null condition of classifier-free guidance.
- Each object becomes a *grounding token*: the phrase embedding (sum of its word embeddings, so
  "red" + "triangle" composes even when that pair was never seen) joined with Fourier features
  of its box by an MLP, as GLIGEN does. A learned token that is always present comes first, so
  cross-attention never sees a row whose keys are all masked; pooled = mean of the tokens.
- ``spatial_channels`` > 0 adds a *layout map*: each box painted with its phrase embedding
  (projected to that many channels) by exact area coverage, plus an occupancy channel; the
  network concatenates it to its input (``paint``), like the extra input channels of
  Stable Diffusion's inpainting and depth models.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusionforge.nets.text_encoder import SmallTextEncoder, TextFeatures, masked_mean

PHRASE_WORDS = 2  # word ids per object slot
SLOT = 1 + PHRASE_WORDS + 4  # present, phrase ids, box


def box_coverage(boxes: Tensor, height: int, width: int) -> Tensor:
    """Fraction of each pixel covered by each box: boxes (B, K, 4) as (x0, y0, x1, y1) in [0, 1]
    -> (B, K, H, W) in [0, 1] (exact area overlap, so a box between pixels paints both)."""

    def overlap(lo: Tensor, hi: Tensor, n: int) -> Tensor:  # (B, K) -> (B, K, n)
        edges = torch.arange(n + 1, device=lo.device, dtype=lo.dtype) / n
        a, b = edges[:-1], edges[1:]
        return ((torch.minimum(hi[..., None], b) - torch.maximum(lo[..., None], a)) * n).clamp(0, 1)

    boxes = boxes.float()
    ox = overlap(boxes[..., 0], boxes[..., 2], width)  # (B, K, W)
    oy = overlap(boxes[..., 1], boxes[..., 3], height)  # (B, K, H)
    return oy[..., :, None] * ox[..., None, :]


class LayoutEncoder(nn.Module):
    """Packed layouts (B, K, SLOT) -> TextFeatures of grounding tokens, + the layout map's parts.

    ``features.spatial`` is ``(boxes (B, K, 4), values (B, K, spatial_channels))``; `paint` turns
    it into the (B, spatial_channels + 1, H, W) map at any resolution.
    """

    def __init__(
        self, vocab_size: int, dim: int = 128, spatial_channels: int = 16, fourier: int = 8
    ) -> None:
        super().__init__()
        self.dim = dim
        self.spatial_channels = spatial_channels + 1 if spatial_channels else 0
        self.words = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.register_buffer("freqs", 2.0 ** torch.arange(fourier) * math.pi, persistent=False)
        self.token = nn.Sequential(
            nn.Linear(dim + 4 * 2 * fourier, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.always = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.to_map = nn.Linear(dim, spatial_channels) if spatial_channels else None

    def forward(self, cond: Tensor) -> TextFeatures:
        cond = cond.float()
        b = cond.shape[0]
        present = cond[..., 0] > 0.5  # (B, K)
        phrase = self.words(cond[..., 1 : 1 + PHRASE_WORDS].round().long()).sum(2)  # (B, K, D)
        boxes = cond[..., 1 + PHRASE_WORDS :]  # (B, K, 4)
        angles = boxes[..., None] * self.freqs  # (B, K, 4, F)
        fourier = torch.cat([angles.sin(), angles.cos()], -1).flatten(2)  # (B, K, 8F)
        tokens = self.token(torch.cat([phrase, fourier], -1)) * present[..., None]
        tokens = self.norm(torch.cat([self.always.expand(b, -1, -1), tokens], 1))
        mask = torch.cat([torch.ones_like(present[:, :1]), present], 1)
        spatial = None
        if self.to_map is not None:
            spatial = (boxes * present[..., None], self.to_map(phrase) * present[..., None])
        return TextFeatures(tokens, mask, masked_mean(tokens, mask), spatial)


def with_layout_map(x: Tensor, ctx: TextFeatures | None) -> Tensor:
    """The network input with the layout map concatenated, when ``ctx`` carries one."""
    if ctx is None or ctx.spatial is None:
        return x
    return torch.cat([x, paint(ctx.spatial, *x.shape[-2:]).to(x.dtype)], 1)


def paint(spatial: tuple[Tensor, Tensor], height: int, width: int) -> Tensor:
    """The layout map: every box painted with its values by area coverage, plus occupancy.
    (boxes (B, K, 4), values (B, K, C)) -> (B, C + 1, H, W)."""
    boxes, values = spatial
    cover = box_coverage(boxes, height, width).to(values.dtype)  # (B, K, H, W)
    painted = torch.einsum("bkhw,bkc->bchw", cover, values)
    return torch.cat([painted, cover.sum(1, keepdim=True).clamp(max=1)], 1)


class LayoutPlanner(nn.Module):
    """Caption word ids (B, T) -> a structured scene, in two parts that generalise differently.

    - ``slots(ids)``: a small transformer encoder (nets/text_encoder.SmallTextEncoder) tags each
      word with the group it describes (0, 1) or none (the words between groups). This needs
      context ("a square *with* two circles on its left" names the located group second).
    - ``attributes(ids, slots)``: each group's attributes from the *bag* of its words' own
      embeddings, through one linear layer per head (``heads``: name -> classes, e.g. count0,
      colour1), and the relation from the bag of the untagged words. No context and no
      nonlinearity: "red" + "triangle" scores red and triangle even if that pair never came up
      together in training, which is what held-out combinations ask of the planner.
    """

    def __init__(
        self, vocab_size: int, max_tokens: int, heads: dict[str, int], dim: int = 64, depth: int = 2
    ) -> None:
        super().__init__()

        self.head_sizes = dict(heads)
        self.encoder = SmallTextEncoder(vocab_size, max_tokens, dim, depth, heads=4)
        self.tagger = nn.Linear(dim, 3)  # none, group 0, group 1
        self.lexicon = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.out = nn.ModuleDict({k: nn.Linear(dim, n) for k, n in self.head_sizes.items()})

    def slots(self, ids: Tensor) -> Tensor:
        """(B, T, 3) logits: the word's group + 1 (0 = between groups)."""
        return self.tagger(self.encoder(ids).tokens)

    def attributes(self, ids: Tensor, slots: Tensor) -> dict[str, Tensor]:
        """Head logits from words tagged ``slots`` (B, T) long (0 none, 1/2 group 0/1)."""
        keep = (ids != 0) & (ids != 2)  # not <pad>, not <cls>
        words = self.lexicon(ids.long()) * keep[..., None]  # (B, T, D)
        bags = [(words * (slots == k)[..., None]).sum(1) for k in range(3)]
        return {
            name: layer(bags[0] if name == "relation" else bags[1 + int(name[-1])])
            for name, layer in self.out.items()
        }
