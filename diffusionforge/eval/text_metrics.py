"""Metrics of generated text: plain functions over token ids and strings.

- `unigram_entropy`: entropy of each sample's own token histogram (MDLM, Sahoo et al. 2024,
  Sec. 4.2 reports it beside generative perplexity): degenerate repetition ("the the the")
  drives it towards 0 while perplexity under a model can look excellent.
- `longest_copied_span`: the longest substring of a sample that occurs verbatim in the
  training text (a memorization check in characters).
- `grammar_lines`: the complete sentences of a grammar sample (lines strictly inside it) and
  how many parse under the PCFG (data/grammar.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from diffusionforge.data.grammar import parses


def unigram_entropy(ids: Sequence[int]) -> float:
    """Entropy in nats of the empirical distribution of the tokens of one sample."""
    counts = Counter(ids)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values()) if n else 0.0


def longest_copied_span(sample: str, corpus: str) -> int:
    """Length of the longest substring of `sample` found in `corpus` (binary search on the
    length: a copied span of k characters contains one of k - 1)."""
    lo, hi = 0, len(sample)
    while lo < hi:
        k = (lo + hi + 1) // 2
        if any(sample[i : i + k] in corpus for i in range(len(sample) - k + 1)):
            lo = k
        else:
            hi = k - 1
    return lo


def grammar_lines(text: str, *, first_is_whole: bool = False) -> tuple[int, int]:
    """(complete sentences, of which parse) in a window of the one-sentence-per-line corpus.
    The first and last lines may be cut by the window, so only lines between two newlines are
    judged (and the first one too when the window starts a sentence: `first_is_whole`)."""
    lines = text.split("\n")
    inner = lines[:-1] if first_is_whole else lines[1:-1]
    return len(inner), sum(parses(s) for s in inner)
