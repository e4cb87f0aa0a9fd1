"""Tokenizers for text diffusion: character-level, and byte-level BPE trained locally.

Both reserve id 0 for padding and id 1 for the mask token of masked diffusion (core/discrete.py),
so `MaskedDiffusion(mask_id=tok.mask_id, ...)` works for either. A tokenizer lives in a folder
(a checkpoint folder) as one JSON file, `tokenizer.json`, {"kind": ..., ...}; loading parses
JSON and never unpickles or runs code (DESIGN.md rule 6).

- `CharTokenizer`: one id per character seen in the corpus, sorted by code point. Text with a
  character outside that set is refused with one line naming the character and its position.
- `BPETokenizer`: byte-level BPE (Radford et al. 2019, GPT-2) trained with Hugging Face's
  `tokenizers` library: every string is encodable and decodes back byte for byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from diffusionforge.errors import CheckpointError, DataError

PAD, MASK = "<pad>", "<mask>"
FILENAME = "tokenizer.json"


class CharTokenizer:
    """Characters -> ids 2.. in code-point order; 0 is padding, 1 the mask."""

    kind = "char"
    pad_id, mask_id = 0, 1

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self._ids = {c: i + 2 for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise DataError("empty corpus: no characters to build a character tokenizer from")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 2

    def encode(self, text: str) -> list[int]:
        ids = []
        for pos, ch in enumerate(text):
            i = self._ids.get(ch)
            if i is None:
                raise DataError(
                    f"unknown character {ch!r} (U+{ord(ch):04X}) at position {pos}: not among"
                    f" the {len(self.chars)} characters of this tokenizer"
                )
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int], *, mask: str = "") -> str:
        """Text of `ids`; padding is dropped and each mask id becomes `mask`."""
        out = []
        for i in ids:
            if i >= 2:
                out.append(self.chars[i - 2])
            elif i == self.mask_id:
                out.append(mask)
        return "".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "specials": [PAD, MASK], "chars": self.chars}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CharTokenizer:
        chars = data["chars"]
        if not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) < len(
            chars
        ):
            raise ValueError("'chars' must be distinct single characters")
        return cls(chars)


class BPETokenizer:
    """Byte-level BPE from the `tokenizers` library, special tokens <pad> = 0 and <mask> = 1."""

    kind = "bpe"
    pad_id, mask_id = 0, 1

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer

    @classmethod
    def train(
        cls, texts: str | Iterable[str], vocab_size: int = 1024, min_frequency: int = 2
    ) -> BPETokenizer:
        """Learn merges from `texts` (a string or an iterable of strings), here, offline.

        Starts from the 256 byte symbols, so no text is ever out of vocabulary."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        chars = 0

        def counted(items: Iterable[str]) -> Iterable[str]:
            nonlocal chars
            for text in items:
                chars += len(text)
                yield text

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD, MASK],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(counted([texts] if isinstance(texts, str) else texts), trainer)
        if not chars:
            raise DataError("empty corpus: no text to train a BPE tokenizer on")
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int], *, mask: str = "") -> str:
        """Text of `ids`; padding is dropped and each mask id becomes `mask`. Runs of ordinary ids
        are decoded together, since one character's bytes may span several tokens."""
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i == self.mask_id:
                parts += [self.tokenizer.decode(run, skip_special_tokens=False), mask]
                run = []
            elif i != self.pad_id:
                run.append(i)
        return "".join(parts) + self.tokenizer.decode(run, skip_special_tokens=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": json.loads(self.tokenizer.to_str())}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BPETokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(json.dumps(data["tokenizer"]))
        if tok.token_to_id(PAD) != cls.pad_id or tok.token_to_id(MASK) != cls.mask_id:
            raise ValueError(f"expected {PAD} = {cls.pad_id} and {MASK} = {cls.mask_id}")
        return cls(tok)


TextTokenizer = CharTokenizer | BPETokenizer


def save_tokenizer(tokenizer: TextTokenizer, folder: str | Path) -> Path:
    """Write folder/tokenizer.json (atomically: a crash leaves the old file or the new one)."""
    path = Path(folder) / FILENAME
    tmp = path.with_suffix(".json.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(tokenizer.to_json(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise CheckpointError(f"{path}: could not write ({e.strerror or e})") from None
    return path


def load_tokenizer(folder: str | Path) -> TextTokenizer:
    path = Path(folder) / FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; expected a saved tokenizer") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON tokenizer ({e})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in TOKENIZERS:
        raise CheckpointError(
            f"{path}: unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZERS)}"
        )
    try:
        return TOKENIZERS[kind].from_json(data)
    except Exception as e:  # a malformed body: say which file, keep it one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: malformed {kind} tokenizer ({msg})") from None


TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}
