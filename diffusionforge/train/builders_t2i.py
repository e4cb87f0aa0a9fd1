"""Builders for text-to-image: captioned datasets, prompt encoders, the in-network text module.

A captioned dataset is an `ArrayDataset` whose `cond` rows are what the prompt encoder makes of
each caption (word ids, or frozen MiniLM states) and whose `null_cond` is the empty caption:
the trainer drops captions to it with probability `train.label_dropout`, which trains the
unconditional branch of classifier-free guidance.

With `model.text_encoder.kind = "small"` and an empty `model.text_encoder.vocab`, building the
dataset fills the vocabulary in from the captions (sorted words, plus the scene grammar's words
for `scenes`); the trainer writes the resolved config into every checkpoint, so a checkpoint
carries its tokenizer in `config.json` and needs no other file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from diffusionforge.data import captions as cap
from diffusionforge.data import scene_captions, scenes
from diffusionforge.data.arrays import ArrayDataset, to_tensor_images
from diffusionforge.data.layouts import LayoutPrompts
from diffusionforge.data.word_tokenizer import WordTokenizer, words_of
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.nets.layout import LayoutEncoder
from diffusionforge.nets.text_encoder import FrozenFeatures, MiniLMPrompts, SmallTextEncoder
from diffusionforge.train.builders_layout import layout_scenes_dataset, load_planner
from diffusionforge.train.config import Config

if TYPE_CHECKING:
    from diffusionforge.data.layouts import LayoutPrompts

TEXT_ENCODERS = ("small", "minilm", "layout")  # layout: boxes planned from the prompt


def _check_kind(cfg: Config) -> str:
    kind = cfg.model.text_encoder.kind
    if kind not in TEXT_ENCODERS:
        raise ConfigError(
            f"model.text_encoder.kind: expected one of {', '.join(TEXT_ENCODERS)} for captioned "
            f"data, got {kind!r}"
        )
    return kind


def prompt_encoder(cfg: Config, checkpoint=None) -> WordTokenizer | MiniLMPrompts | LayoutPrompts:
    """Strings -> the network's cond tensor, as configured (the vocabulary must be resolved).
    A layout-grounded model's encoder is the planner its ``checkpoint`` carries."""
    t = cfg.model.text_encoder
    if _check_kind(cfg) == "layout":
        if checkpoint is None:
            raise ConfigError("model.text_encoder.kind = layout: the planner needs a checkpoint")
        tok = WordTokenizer(t.vocab, t.max_tokens)
        return LayoutPrompts(load_planner(checkpoint, tok), tok)
    if _check_kind(cfg) == "minilm":
        try:
            return MiniLMPrompts(t.max_tokens)
        except ImportError as e:
            raise ConfigError(f"model.text_encoder.kind = minilm: {e}") from None
    return WordTokenizer(t.vocab, t.max_tokens)


def text_module(cfg: Config) -> nn.Module | None:
    """The network part that turns cond into TextFeatures; None for class/unconditional nets."""
    t = cfg.model.text_encoder
    if not t.kind:
        return None
    if _check_kind(cfg) == "minilm":
        return FrozenFeatures(MiniLMPrompts.dim)
    if not t.vocab:
        raise ConfigError("model.text_encoder.vocab: empty; build the captioned dataset first")
    if t.kind == "layout":
        return LayoutEncoder(len(t.vocab) + 3, t.dim, t.spatial_channels)
    return SmallTextEncoder(len(t.vocab) + 3, t.max_tokens, t.dim, t.depth, t.heads)


def captioned_dataset(cfg: Config, x: Tensor, captions: list[str], extra_words=()) -> ArrayDataset:
    """Images (N, C, H, W) in [-1, 1] + captions -> dataset with cond rows and the null caption.
    Without a text encoder (an autoencoder trained on the images) the captions are dropped."""
    t = cfg.model.text_encoder
    if not t.kind:
        return ArrayDataset(
            x.float().contiguous(),
            seed=cfg.train.seed,
            augment=cfg.data.augment,
            jitter=cfg.data.jitter,
        )
    kind = _check_kind(cfg)
    if kind == "small" and not t.vocab:
        t.vocab = sorted({w for c in captions for w in words_of(c)} | set(extra_words))
    enc = prompt_encoder(cfg)
    cond = enc.encode_batch(captions).cond
    null = enc.encode_batch([""]).cond[0]
    return ArrayDataset(
        x.float().contiguous(),
        seed=cfg.train.seed,
        augment=cfg.data.augment,
        jitter=cfg.data.jitter,
        cond=cond,
        null_cond=null,
    )


def scenes_dataset(cfg: Config) -> ArrayDataset:
    """The procedural captioned scenes (data/scenes.py), training split: data.size scenes at
    data.image_size, drawn from data.seed."""

    d = cfg.data
    d.image_size = d.image_size or 32  # 0 (from the data) means the scenes' default here
    if d.image_size not in (32, 64):
        raise ConfigError(f"data.image_size: scenes render at 32 or 64, got {d.image_size}")
    if cfg.model.text_encoder.kind == "layout":
        return layout_scenes_dataset(cfg)
    images, captions, _ = scenes.make_scenes(d.size, d.image_size, "train", d.seed)
    return captioned_dataset(cfg, to_tensor_images(images), captions, scene_captions.VOCABULARY)


def captions_dataset(cfg: Config) -> ArrayDataset:
    """A user's captioned images (data/captions.py): data.path is a folder with .txt sidecar
    captions, or a CSV/JSONL of (path, caption); resized to data.image_size."""

    if cfg.model.text_encoder.kind == "layout":
        raise ConfigError(
            "model.text_encoder.kind = layout: needs each object's box, which only data.kind = "
            "scenes provides; use small or minilm for captioned images"
        )
    if not cfg.data.path:
        raise DataError("data.path: a captioned folder, .csv or .jsonl is needed (pass --data)")
    cfg.data.image_size = cfg.data.image_size or 32  # 0: the default side, 32
    images, texts = cap.load_captioned(cfg.data.path, cfg.data.image_size, cfg.data.channels)
    if len(texts) < 2:
        raise DataError(f"{cfg.data.path}: {len(texts)} captioned image(s); need at least 2")
    return captioned_dataset(cfg, images, texts)


CAPTIONED_KINDS = {"scenes": scenes_dataset, "captions": captions_dataset}
