"""A small English probabilistic context-free grammar whose validity is exactly checkable.

Sentences such as "the old cat near the dogs sleeps." with subject-verb number agreement that
must hold across prepositional phrases ("the cat near the dogs sleeps", never "... sleep"),
adjective and PP recursion, and transitive verbs with singular or plural objects. A sentence is
lower-case words separated by single spaces, ending in "." right after the last word.

`sample_sentences` draws from the PCFG; `parses` decides membership exactly with an Earley
recognizer (Earley 1970) over the same rules, so "fraction of generated sentences that parse"
is a measurement, not a heuristic. The corpus is one sentence per line.
"""

from __future__ import annotations

import random
from functools import lru_cache

Rules = dict[str, list[tuple[tuple[str, ...], float]]]

_NOUNS = "cat dog bird child teacher farmer robot king mat house garden tree".split()
_PLURAL = {"child": "children"}
_V_INTR = "sleep run sing wait laugh".split()
_V_TR = "see like follow find chase".split()


def _words(words: list[str]) -> list[tuple[tuple[str, ...], float]]:
    return [((w,), 1.0) for w in words]


def _third_person(verb: str) -> str:
    return verb + ("es" if verb.endswith(("sh", "ch", "s")) else "s")


GRAMMAR: Rules = {
    "S": [(("NP_sg", "VP_sg"), 1.0), (("NP_pl", "VP_pl"), 1.0)],
    "NP_sg": [(("Det_sg", "Nom_sg"), 3.0), (("Det_sg", "Nom_sg", "PP"), 1.0)],
    "NP_pl": [(("Det_pl", "Nom_pl"), 3.0), (("Det_pl", "Nom_pl", "PP"), 1.0)],
    "Nom_sg": [(("N_sg",), 3.0), (("Adj", "Nom_sg"), 1.0)],
    "Nom_pl": [(("N_pl",), 3.0), (("Adj", "Nom_pl"), 1.0)],
    "PP": [(("P", "NP_sg"), 1.0), (("P", "NP_pl"), 1.0)],
    "VP_sg": [
        (("Vi_sg",), 2.0),
        (("Vi_sg", "Adv"), 1.0),
        (("Vi_sg", "PP"), 1.0),
        (("Vt_sg", "NP_sg"), 1.5),
        (("Vt_sg", "NP_pl"), 1.5),
    ],
    "VP_pl": [
        (("Vi_pl",), 2.0),
        (("Vi_pl", "Adv"), 1.0),
        (("Vi_pl", "PP"), 1.0),
        (("Vt_pl", "NP_sg"), 1.5),
        (("Vt_pl", "NP_pl"), 1.5),
    ],
    "Det_sg": _words(["the", "a", "every", "this"]),
    "Det_pl": _words(["the", "some", "many", "these"]),
    "N_sg": _words(_NOUNS),
    "N_pl": _words([_PLURAL.get(n, n + "s") for n in _NOUNS]),
    "Adj": _words("small old happy red quiet clever".split()),
    "P": _words("on near with behind under".split()),
    "Adv": _words("quickly slowly today again".split()),
    "Vi_sg": _words([_third_person(v) for v in _V_INTR]),
    "Vi_pl": _words(_V_INTR),
    "Vt_sg": _words([_third_person(v) for v in _V_TR]),
    "Vt_pl": _words(_V_TR),
}
START = "S"


def _expand(symbol: str, rng: random.Random, out: list[str], depth: int) -> None:
    if symbol not in GRAMMAR:
        out.append(symbol)
        return
    rules = GRAMMAR[symbol]
    if depth > 12:  # past this depth take the first (non-recursive) rule: sentences stay finite
        rhs = rules[0][0]
    else:
        rhs = rng.choices([r for r, _ in rules], weights=[w for _, w in rules])[0]
    for s in rhs:
        _expand(s, rng, out, depth + 1)


def sample_sentences(n: int, seed: int, max_chars: int = 100) -> list[str]:
    """n sentences drawn from the PCFG (those longer than max_chars are redrawn)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        words: list[str] = []
        _expand(START, rng, words, 0)
        sentence = " ".join(words) + "."
        if len(sentence) <= max_chars:
            out.append(sentence)
    return out


@lru_cache(maxsize=1)
def _rules() -> dict[str, list[tuple[str, ...]]]:
    return {lhs: [rhs for rhs, _ in alts] for lhs, alts in GRAMMAR.items()}


def parses(sentence: str) -> bool:
    """True when `sentence` is exactly a sentence of GRAMMAR (words, single spaces, final '.')."""
    if not sentence.endswith(".") or sentence.endswith(" ."):
        return False
    words = sentence[:-1].split(" ")
    if not all(words):  # empty words: double, leading or trailing spaces
        return False
    return recognize(words)


def recognize(words: list[str], start: str = START) -> bool:
    """Earley recognition of `words` from `start` (the grammar has no empty rules)."""
    rules = _rules()
    n = len(words)
    chart: list[set[tuple[str, tuple[str, ...], int, int]]] = [set() for _ in range(n + 1)]
    chart[0] = {(start, rhs, 0, 0) for rhs in rules[start]}
    for i in range(n + 1):
        agenda = list(chart[i])
        while agenda:
            lhs, rhs, dot, origin = agenda.pop()
            if dot < len(rhs):
                nxt = rhs[dot]
                if nxt in rules:  # predict
                    for r in rules[nxt]:
                        item = (nxt, r, 0, i)
                        if item not in chart[i]:
                            chart[i].add(item)
                            agenda.append(item)
                elif i < n and words[i] == nxt:  # scan
                    chart[i + 1].add((lhs, rhs, dot + 1, origin))
            else:  # complete
                for plhs, prhs, pdot, porigin in list(chart[origin]):
                    if pdot < len(prhs) and prhs[pdot] == lhs:
                        item = (plhs, prhs, pdot + 1, porigin)
                        if item not in chart[i]:
                            chart[i].add(item)
                            agenda.append(item)
    return any(lhs == start and dot == len(rhs) and o == 0 for lhs, rhs, dot, o in chart[n])


def corpus(
    train: int, heldout: int, seed: int = 0, max_chars: int = 60
) -> tuple[list[str], list[str]]:
    """(train, held-out) sentence lists; no held-out sentence occurs in the training list."""
    train_s = sample_sentences(train, seed, max_chars)
    seen = set(train_s)
    held: list[str] = []
    extra = seed + 1_000_003
    while len(held) < heldout:
        held += [s for s in sample_sentences(heldout, extra, max_chars) if s not in seen]
        extra += 1
    return train_s, held[:heldout]
