"""The caption grammar of the procedural scenes (data/scene_specs.py): ``describe`` writes a
caption of a scene in one of several phrasings, ``parse_prompt`` reads every one of them back
(and a few more: digits for counts, "an", either order of size and colour, any punctuation),
``VOCABULARY`` lists every word a caption can hold.
"""

from __future__ import annotations

import re

import numpy as np

from diffusionforge.data.scene_specs import COLOURS, PLURALS, SHAPES, Group, SceneSpec

# Caption words. Counts: "a"/"one" for 1; sizes have synonyms; relations several phrasings.
_NUMBERS = {2: "two", 3: "three", 4: "four"}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_REL_PHRASES = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
# "{anchor} with {located} on its left": the located group is group 0 of the spec.
_WITH_PHRASES = {
    "left of": ("on its left", "to its left"),
    "right of": ("on its right", "to its right"),
    "above": ("above it", "over it"),
    "below": ("below it", "under it", "beneath it"),
}
_PREFIXES = ("", "there {be} ", "an image of ", "a picture of ")


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[rng.integers(len(options))]


def _group_phrase(g: Group, rng: np.random.Generator) -> str:
    count = _pick(("a", "one"), rng) if g.count == 1 else _NUMBERS[g.count]
    size = _pick(_SIZE_WORDS[g.size], rng) if g.size else ""
    noun = g.shape if g.count == 1 else PLURALS[g.shape]
    return " ".join(w for w in (count, size, g.colour, noun) if w)


def describe(spec: SceneSpec, rng: np.random.Generator | int) -> str:
    """A caption of ``spec`` in one of several phrasings; ``parse_prompt`` inverts every one."""
    return " ".join(text for text, _ in describe_pieces(spec, rng))


def describe_tagged(spec: SceneSpec, rng: np.random.Generator | int) -> tuple[str, list[int]]:
    """``describe`` plus, per word, which group of ``spec`` it describes (0 or 1; -1 for the
    words between groups): the annotation the layout planner (data/layouts.py) learns from."""
    pieces = describe_pieces(spec, rng)
    tags = [tag for text, tag in pieces for _ in text.split()]
    return " ".join(text for text, _ in pieces), tags


def describe_pieces(spec: SceneSpec, rng: np.random.Generator | int) -> list[tuple[str, int]]:
    """The caption as (text, group) pieces, group -1 for connecting words; the random draws are
    made in one fixed order, so a seed gives the same caption on every version."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    g0 = spec.groups[0]
    be = "is" if g0.count == 1 else "are"
    if spec.relation is None:
        prefix = _pick(_PREFIXES, rng).format(be=be).strip()
        return [p for p in ((prefix, -1), (_group_phrase(g0, rng), 0)) if p[0]]
    g1 = spec.groups[1]
    form = rng.integers(3)
    if form == 0:  # "two red circles to the left of a blue square"
        first = _group_phrase(g0, rng)
        rel = _pick(_REL_PHRASES[spec.relation], rng)
        second = _group_phrase(g1, rng)
        prefix = _pick(_PREFIXES, rng).format(be=be).strip()
        pieces = [(prefix, -1), (first, 0), (rel, -1), (second, 1)]
    elif form == 1:  # "two red circles are to the left of a blue square"
        rel = _pick(_REL_PHRASES[spec.relation], rng)
        first = _group_phrase(g0, rng)
        second = _group_phrase(g1, rng)
        pieces = [(first, 0), (f"{be} {rel}", -1), (second, 1)]
    else:  # "a blue square with two red circles on its left"
        pos = _pick(_WITH_PHRASES[spec.relation], rng)
        if g1.count > 1:
            pos = pos.replace("its", "their").replace(" it", " them")
        prefix = _pick(_PREFIXES, rng).format(be="is" if g1.count == 1 else "are").strip()
        anchor = _group_phrase(g1, rng)
        located = _group_phrase(g0, rng)
        pieces = [(prefix, -1), (anchor, 1), ("with", -1), (located, 0), (pos, -1)]
    return [p for p in pieces if p[0]]


def _vocabulary() -> tuple[str, ...]:
    words = {"a", "one", "is", "are", "with", "their", "them", *_NUMBERS.values()}
    words |= {*SHAPES, *PLURALS.values(), *COLOURS}
    for table in (_SIZE_WORDS, _REL_PHRASES, _WITH_PHRASES):
        for phrases in table.values():
            for p in phrases:
                words |= set(p.split())
    for p in _PREFIXES:
        words |= set(p.replace("{be}", "").split())
    return tuple(sorted(words))


VOCABULARY = _vocabulary()  # every word describe() can write

# --- parsing -------------------------------------------------------------------------------

_COUNT_OF = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_COUNT_OF |= {"1": 1, "2": 2, "3": 3, "4": 4}
_SHAPE_OF = {s: s for s in SHAPES} | {p: s for s, p in PLURALS.items()}
_SIZE_OF = {w: s for s, words in _SIZE_WORDS.items() for w in words}
_REL_OF = sorted(
    ((tuple(p.split()), r) for r, ps in _REL_PHRASES.items() for p in ps), key=lambda t: -len(t[0])
)
_WITH_OF = sorted(
    (
        (tuple(p.replace("its", poss).replace(" it", obj).split()), r)
        for r, ps in _WITH_PHRASES.items()
        for p in ps
        for poss, obj in (("its", " it"), ("their", " them"))
    ),
    key=lambda t: -len(t[0]),
)
_PREFIX_WORDS = (("there", "is"), ("there", "are"), ("an", "image", "of"), ("a", "picture", "of"))


def _parse_group(words: list[str], i: int) -> tuple[Group, int] | None:
    """count [size] colour shape, size and colour in either order, from words[i]."""
    if i >= len(words) or words[i] not in _COUNT_OF:
        return None
    count, i = _COUNT_OF[words[i]], i + 1
    size = colour = None
    while i < len(words) and (words[i] in _SIZE_OF or words[i] in COLOURS):
        if words[i] in COLOURS:
            if colour:
                return None
            colour = words[i]
        else:
            if size:
                return None
            size = _SIZE_OF[words[i]]
        i += 1
    if colour is None or i >= len(words) or words[i] not in _SHAPE_OF:
        return None
    return Group(count, _SHAPE_OF[words[i]], colour, size), i + 1


def _match(words: list[str], i: int, table: list) -> tuple[str, int] | None:
    for phrase, rel in table:
        if tuple(words[i : i + len(phrase)]) == phrase:
            return rel, i + len(phrase)
    return None


def parse_prompt(text: str) -> SceneSpec | None:
    """The scene a prompt asks for, or None when the prompt is outside the scene grammar.

    Accepts every phrasing ``describe`` writes, plus digits for counts, "an", either order of
    size and colour, and any punctuation; case-insensitive.
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    for prefix in _PREFIX_WORDS:
        if tuple(words[: len(prefix)]) == prefix:
            words = words[len(prefix) :]
            break
    first = _parse_group(words, 0)
    if first is None:
        return None
    g_a, i = first
    if i == len(words):
        spec = SceneSpec((g_a,))
    elif words[i] == "with":  # "{anchor} with {located} on its left"
        second = _parse_group(words, i + 1)
        if second is None:
            return None
        g_b, j = second
        rel = _match(words, j, _WITH_OF)
        if rel is None or rel[1] != len(words):
            return None
        spec = SceneSpec((g_b, g_a), rel[0])
    else:
        if words[i] in ("is", "are"):
            i += 1
        rel = _match(words, i, _REL_OF)
        if rel is None:
            return None
        second = _parse_group(words, rel[1])
        if second is None or second[1] != len(words):
            return None
        spec = SceneSpec((g_a, second[0]), rel[0])
    return spec if spec.problem() is None else None
