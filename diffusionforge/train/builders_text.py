"""Builders for text models: corpora -> token windows, the transformer, the two objectives.

Entries of the registries in train/builders.py: data kinds "text", "fortunes", "grammar", and
the (prompt, response) kinds "pairs" (a JSONL file) and "sudoku" (generated puzzles),
model kind "transformer", formulation kinds "masked" (masked diffusion, core/discrete.py),
"block" (block diffusion, core/block_diffusion.py) and "ar" (the causal baseline,
core/autoregressive.py). The tokenizer is fitted on the corpus when
the dataset is built and travels with the dataset (`TextDataset.extra_files`) into every
checkpoint folder as tokenizer.json; pipelines and eval load it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusionforge.core.autoregressive import Autoregressive
from diffusionforge.core.block_diffusion import BlockDiffusion
from diffusionforge.core.discrete import SCHEDULES, MaskedDiffusion
from diffusionforge.core.sft import AutoregressiveSFT, MaskedSFT
from diffusionforge.data import grammar, pairs, sudoku, text
from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.data.pairs import SEP, pack_pairs
from diffusionforge.data.text import pack
from diffusionforge.data.tokenizers import (
    FILENAME,
    BPETokenizer,
    CharTokenizer,
    TextTokenizer,
)
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.nets.transformer import POSITIONS, TRANSFORMER_PRESETS, TransformerLM
from diffusionforge.train.config import Config

SUDOKU_FORMATS = ("pairs", "grid")  # data.sudoku.format
PAIR_KINDS = ("pairs", "sudoku")  # (prompt, response) windows, trained on the response (SFT)
TEXT_KINDS = ("text", "fortunes", "grammar", *PAIR_KINDS)
TOKEN_OBJECTIVES = ("masked", "block", "ar")
GRAMMAR_HELDOUT = 2000  # held-out grammar sentences (none of them in the training set)


@dataclass
class Corpus:
    train: list[str]  # documents
    heldout: list[str]
    sep: str  # joins documents in the token stream


def load_corpus(cfg: Config) -> Corpus:
    """The documents of data.kind, split into training and held-out parts."""

    d, t = cfg.data, cfg.data.text
    if not 0 <= t.heldout < 1:
        raise ConfigError(f"data.text.heldout: expected a fraction in [0, 1), got {t.heldout}")
    if not 0 < t.subset <= 1:
        raise ConfigError(f"data.text.subset: expected a fraction in (0, 1], got {t.subset}")
    if d.kind == "grammar":
        train, held = grammar.corpus(t.sentences, GRAMMAR_HELDOUT, seed=d.seed)
        return Corpus(train, held, "\n")
    if d.kind == "fortunes":
        docs = text.fortunes(d.path or text.FORTUNES_DIR)
        sep = "\n%\n"
    else:
        if not d.path:
            raise DataError("data.path: a UTF-8 text file or folder is needed (pass --data)")
        docs, sep = text.read_text(d.path), "\n\n"
    train, held = text.split_documents(docs, t.heldout)
    if not train:
        raise DataError(f"data.path {d.path}: every document fell into the held-out part")
    if t.subset < 1:
        train = text.slice_documents(train, t.subset)
        if not train:
            raise DataError(
                f"data.text.subset {t.subset}: no training document falls into the slice; "
                "take a larger fraction"
            )
    return Corpus(train, held, sep)


def fit_tokenizer(cfg: Config, corpus: Corpus) -> TextTokenizer:
    """Characters of the whole corpus (so held-out text is encodable), or BPE merges learned
    from the training part only."""
    t = cfg.data.text
    if t.tokenizer == "char":
        return CharTokenizer.from_text(corpus.sep.join(corpus.train + corpus.heldout) + corpus.sep)
    if t.tokenizer == "bpe":
        return BPETokenizer.train(corpus.train, vocab_size=t.vocab_size)
    raise ConfigError(f"data.text.tokenizer: expected char or bpe, got {t.tokenizer!r}")


def windows(tokenizer: TextTokenizer, docs: list[str], sep: str, length: int):

    return pack([tokenizer.encode(doc) for doc in docs], length, tokenizer.encode(sep))


class TextDataset(ArrayDataset):
    """Token windows (N, length) long, with the tokenizer that made them."""

    def __init__(self, data, tokenizer: TextTokenizer, seed: int) -> None:
        import json

        super().__init__(data, seed=seed)
        self.tokenizer = tokenizer
        # written into every checkpoint folder by the trainer
        self.extra_files = {
            FILENAME: json.dumps(tokenizer.to_json(), ensure_ascii=False).encode("utf-8")
        }


def text_dataset(cfg: Config) -> TextDataset:
    """Windows of the training documents. Resolves model.transformer.vocab_size (0: the
    tokenizer's), as model.num_classes = -1 is resolved from image labels."""
    t = cfg.data.text
    if t.length < 2:
        raise ConfigError(f"data.text.length: expected at least 2 tokens, got {t.length}")
    if is_sudoku_grid(cfg):
        return sudoku_grid_dataset(cfg)
    if cfg.data.kind in PAIR_KINDS:
        return pairs_dataset(cfg)
    corpus = load_corpus(cfg)
    tok = fit_tokenizer(cfg, corpus)
    data = windows(tok, corpus.train, corpus.sep, t.length)
    if data.shape[0] < 2:
        raise DataError(
            f"data: the training text makes {data.shape[0]} window(s) of {t.length} tokens; "
            "training needs at least 2 (more text, or a smaller data.text.length)"
        )
    _set_vocab(cfg, tok)
    return TextDataset(data, tok, cfg.train.seed)


def _set_vocab(cfg: Config, tok: TextTokenizer) -> None:
    tr = cfg.model.transformer
    if tr.vocab_size == 0:
        tr.vocab_size = tok.vocab_size
    elif tr.vocab_size < tok.vocab_size:
        raise ConfigError(
            f"model.transformer.vocab_size: {tr.vocab_size} is fewer than the tokenizer's "
            f"{tok.vocab_size} tokens"
        )


def is_sudoku_grid(cfg: Config) -> bool:
    """Sudoku in the infilling format: windows are solution grids (81 tokens), masked diffusion
    learns them whole, and a puzzle is a grid with its blanks masked (givens fixed)."""
    if cfg.data.kind != "sudoku":
        return False
    fmt = cfg.data.sudoku.format
    if fmt not in SUDOKU_FORMATS:
        raise ConfigError(
            f"data.sudoku.format: expected one of {', '.join(SUDOKU_FORMATS)}, got {fmt!r}"
        )
    return fmt == "grid"


def sudoku_grid_dataset(cfg: Config) -> TextDataset:
    """Solution grids (N, 81): data.sudoku.bases random grids x variants symmetric forms. The
    tokenizer is the pairs format's (".", the separator and the digits), so both formats have
    the same vocabulary; data.text.length is set to 81."""

    if cfg.formulation.kind != "masked":
        raise ConfigError(
            "data.sudoku.format: grid trains masked diffusion (an infilling model); the AR twin "
            "needs the puzzle as a prompt (--set data.sudoku.format=pairs)"
        )
    s, t = cfg.data.sudoku, cfg.data.text
    t.length = 81
    if t.tokenizer != "char":
        raise ConfigError("data.text.tokenizer: Sudoku grids use the char tokenizer")
    tok = CharTokenizer(sorted(SEP + sudoku.BLANK + sudoku.DIGITS))
    rows = [tok.encode(g) for g in sudoku.grids(s.bases, s.variants, cfg.data.seed)]
    _set_vocab(cfg, tok)
    return TextDataset(torch.tensor(rows, dtype=torch.long), tok, cfg.train.seed)


def load_pairs(cfg: Config) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) (prompt, response) pairs of data.kind "pairs" (data.path, JSONL) or
    "sudoku" (generated; its held-out puzzles are made by benchmarks/sudoku.py from other seeds)."""

    d = cfg.data
    if d.kind == "sudoku":
        s = d.sudoku
        try:
            train = sudoku.puzzles(s.bases, s.variants, d.seed, s.min_givens, s.max_givens)
        except ValueError as e:
            raise ConfigError(f"data.sudoku: {e}") from None
        return train, []
    if not d.path:
        raise DataError(
            "data.path: a JSONL file of prompt/response pairs is needed (--set data.path=F)"
        )
    train, held = pairs.split_pairs(pairs.read_pairs(d.path), d.text.heldout)
    if not train:
        raise DataError(f"data.path {d.path}: every pair fell into the held-out part")
    return train, held


def pair_tokenizer(cfg: Config, train, held) -> TextTokenizer:

    t = cfg.data.text
    texts = [p + SEP + r for p, r in train]
    if t.tokenizer == "char":
        return CharTokenizer.from_text("".join(texts + [p + SEP + r for p, r in held]))
    if t.tokenizer == "bpe":
        return BPETokenizer.train(texts, vocab_size=t.vocab_size)
    raise ConfigError(f"data.text.tokenizer: expected char or bpe, got {t.tokenizer!r}")


class PairDataset(TextDataset):
    """(prompt, response) windows (N, length) with the prompt lengths (N,) as `cond`, which the
    SFT objectives (core/sft.py) read; the network is not given it."""

    def __init__(self, data, prompt_len, tokenizer: TextTokenizer, seed: int) -> None:
        import torch

        super().__init__(data, tokenizer, seed)
        self.cond = prompt_len
        self.null_cond = torch.zeros((), dtype=torch.long)


def pairs_dataset(cfg: Config) -> PairDataset:

    train, held = load_pairs(cfg)
    if cfg.data.kind == "sudoku":  # puzzle, separator, solution
        cfg.data.text.length = 2 * 81 + 1
    tok = pair_tokenizer(cfg, train, held)
    data, plen = pack_pairs(tok, train, cfg.data.text.length)
    if data.shape[0] < 2:
        raise DataError("data: training needs at least 2 prompt/response pairs")
    _set_vocab(cfg, tok)
    return PairDataset(data, plen, tok, cfg.train.seed)


def build_transformer(cfg: Config, shape: tuple[int, ...]) -> nn.Module:

    tr = cfg.model.transformer
    if len(shape) != 1:
        raise ConfigError(f"model.kind: transformer needs token sequences (L,), got {shape}")
    if tr.preset not in TRANSFORMER_PRESETS:
        raise ConfigError(
            f"model.transformer.preset: expected one of {', '.join(TRANSFORMER_PRESETS)}, "
            f"got {tr.preset!r}"
        )
    kw = dict(TRANSFORMER_PRESETS[tr.preset])
    kw.update({k: getattr(tr, k) for k in ("dim", "depth", "heads") if getattr(tr, k)})
    if kw["dim"] % kw["heads"] or (kw["dim"] // kw["heads"]) % 2:
        raise ConfigError(
            f"model.transformer: dim {kw['dim']} must split into {kw['heads']} heads of even width"
        )
    if tr.positions not in POSITIONS:
        raise ConfigError(
            f"model.transformer.positions: expected one of {', '.join(POSITIONS)}, "
            f"got {tr.positions!r}"
        )
    if tr.positions == "grid" and tr.grid_width < 1:
        raise ConfigError(
            f"model.transformer.grid_width: positions grid needs at least 1 cell a row, "
            f"got {tr.grid_width}"
        )
    if tr.vocab_size < 3:
        raise ConfigError("model.transformer.vocab_size: unset; train on text data (data.kind)")
    if cfg.formulation.kind not in TOKEN_OBJECTIVES:
        raise ConfigError(
            f"formulation.kind: a transformer over tokens trains with one of "
            f"{', '.join(TOKEN_OBJECTIVES)}, got {cfg.formulation.kind!r}"
        )
    return TransformerLM(
        tr.vocab_size,
        shape[0],
        mlp_ratio=tr.mlp_ratio,
        dropout=tr.dropout,
        causal=cfg.formulation.kind == "ar",
        positions=tr.positions,
        grid_width=tr.grid_width,
        block=cfg.formulation.block_size if cfg.formulation.kind == "block" else 0,
        **kw,
    )


def mask_schedule(cfg: Config):
    name = cfg.formulation.mask_schedule
    if name not in SCHEDULES:
        raise ConfigError(
            f"formulation.mask_schedule: expected one of {', '.join(SCHEDULES)}, got {name!r}"
        )
    return SCHEDULES[name]()


def masked_objective(cfg: Config):

    if cfg.data.kind in PAIR_KINDS and not is_sudoku_grid(cfg):  # LLaDA SFT: response only
        return MaskedSFT(mask_id=CharTokenizer.mask_id, schedule=mask_schedule(cfg))
    return MaskedDiffusion(mask_id=CharTokenizer.mask_id, schedule=mask_schedule(cfg))


def block_objective(cfg: Config):

    if cfg.data.kind in PAIR_KINDS:
        raise ConfigError(
            f"formulation.kind: block diffusion trains on plain text; data.kind {cfg.data.kind!r} "
            "(prompt/response pairs) trains with masked or ar"
        )
    b, length = cfg.formulation.block_size, cfg.data.text.length
    if b < 1 or length % b:
        raise ConfigError(
            f"formulation.block_size: expected a positive divisor of data.text.length "
            f"({length}), got {b}"
        )
    return BlockDiffusion(mask_id=CharTokenizer.mask_id, block=b, schedule=mask_schedule(cfg))


def ar_objective(cfg: Config):

    if cfg.data.kind in PAIR_KINDS:  # the AR twin of SFT: next-token loss on the response
        return AutoregressiveSFT(bos_id=CharTokenizer.mask_id)
    return Autoregressive(bos_id=CharTokenizer.mask_id)  # the mask id starts every sequence
