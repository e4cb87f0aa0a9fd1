"""Word-level tokenizer for captions: the small trainable text encoder's own vocabulary.

Captions of a procedural set (or a user's captioned images) use a few hundred words, so one id
per word is both the simplest and the most learnable tokenization: "red" is always the same
token whatever phrase it sits in, which is what lets cross-attention bind colours to shapes.

Ids: 0 `<pad>`, 1 `<unk>`, 2 `<cls>` (always first: the empty caption is `[<cls>]`, so attention
never sees a row with every key masked), then the words in sorted order. Text is lower-cased
and split into runs of letters/digits; punctuation is dropped.

Documented behaviour for bad input (tested in tests/test_t2i_text.py):
- an unknown word becomes `<unk>`; `encode_batch` returns the unknown words so the caller can
  warn (the `generate` CLI prints one warning line naming them);
- a caption longer than `max_tokens` (counting `<cls>`) is cut to that length; `encode_batch`
  reports which captions were cut;
- the empty caption is the unconditional prompt (classifier-free guidance's null condition),
  the `generate` CLI refuses it in one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
SPECIALS = (PAD, UNK, CLS)
_WORD = re.compile(r"[a-z0-9]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class Encoded:
    cond: Tensor  # what the network takes as cond: here ids (B, max_tokens) long, 0-padded
    unknown: list[list[str]] = field(default_factory=list)  # unknown words, per caption
    truncated: list[int] = field(default_factory=list)  # indices of captions that were cut


class WordTokenizer:
    pad_id, unk_id, cls_id = 0, 1, 2

    def __init__(self, words: Sequence[str], max_tokens: int = 24) -> None:
        self.words = list(words)
        self.max_tokens = max_tokens
        self._ids = {w: i + len(SPECIALS) for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Iterable[str], max_tokens: int = 24) -> WordTokenizer:
        vocab = sorted({w for c in captions for w in words_of(c)})
        return cls(vocab, max_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.words) + len(SPECIALS)

    def encode(self, text: str) -> list[int]:
        """Ids of one caption, `<cls>` first, not padded or cut."""
        return [self.cls_id] + [self._ids.get(w, self.unk_id) for w in words_of(text)]

    def encode_batch(self, texts: Sequence[str]) -> Encoded:
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        out = Encoded(ids)  # filled in place below
        for i, text in enumerate(texts):
            row = self.encode(text)
            out.unknown.append([w for w in words_of(text) if w not in self._ids])
            if len(row) > self.max_tokens:
                out.truncated.append(i)
                row = row[: self.max_tokens]
            ids[i, : len(row)] = torch.tensor(row)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(
            self.words[i - len(SPECIALS)] if i >= len(SPECIALS) else UNK
            for i in ids
            if i not in (self.pad_id, self.cls_id)
        )
