"""Procedural captioned scenes for text-to-image: 1-4 coloured shapes placed by a relation.

A scene (``SceneSpec``) is one or two object *groups*; a group is ``count`` objects of one shape,
colour and size. With two groups, ``relation`` says where group 0 lies relative to group 1
("two red circles to the left of a blue square"). The world is small on purpose, so a small model
on a CPU can learn it and a judge network can score it (eval/judge.py):

- shapes ``circle, square, triangle, cross``; colours ``red, green, blue, yellow, white`` on
  black; sizes ``small, large``; 1-4 objects in all; relations ``left of, right of, above, below``.
- A size the caption does not name is ``None`` in the spec and drawn at random by ``render``
  (``make_scenes`` names each group's size with probability 1/2), so prompts without sizes
  ("two red circles left of a blue square") are in the training distribution.
- Layout (``layout``): groups sit in disjoint regions split by a vertical (left/right) or a
  horizontal (above/below) line, every object of one group strictly beyond every object of the
  other, and the line joining the two group centroids within 31 degrees of the relation's axis
  (|dy| <= 0.6 dx), so "left of" never also reads as "above". Objects never touch: bounding
  boxes are at least ``GAP`` (1.6 px at 32x32) apart.
- Rendering is 4x supersampled and box-filtered (anti-aliased, crisp), at any size (32, 64...).

Held-out split (``HELDOUT``, ``is_heldout``): a scene is held out when it contains a held-out
colour-shape pair in any group (red triangle, green cross, blue circle, yellow square: each
colour but white and each shape keeps 3-4 seen partners), or a held-out count-relation pair:
in the *canonical* form (``SceneSpec.canonical``: "right of"/"below" rewritten as
"left of"/"above" with the groups swapped, which draws the same picture) a group of three to
the left of another group, or a group of two above another. "a square right of three circles"
is therefore held out too: it is the same picture as "three circles left of a square".
``make_scenes(split="train")`` never yields a held-out scene, ``split="heldout"`` only those.

Every random draw of example i comes from ``np.random.default_rng([seed, split, i])``, so a set
is the same on every machine and ``make_scenes(n)`` is a prefix of ``make_scenes(n + k)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
COLOURS = {
    "red": (230, 35, 35),
    "green": (30, 190, 60),
    "blue": (45, 105, 250),
    "yellow": (245, 215, 35),
    "white": (240, 240, 240),
}
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
MAX_OBJECTS = 4
RADIUS = {"small": 0.085, "large": 0.13}  # half-extent of an object, in canvas units
GAP, MARGIN = 0.05, 0.03  # between object boxes; between objects and the canvas edge

HELDOUT = {
    "colour_shape": frozenset(
        {("red", "triangle"), ("green", "cross"), ("blue", "circle"), ("yellow", "square")}
    ),
    # (count of group 0, relation) in canonical form: see the module docstring
    "count_relation": frozenset({(3, "left of"), (2, "above")}),
}
SPLITS = {"train": 0, "heldout": 1, "all": 2}

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


@dataclass(frozen=True)
class Group:
    """``count`` objects of one shape and colour; ``size`` None = unspecified (drawn at random)."""

    count: int
    shape: str
    colour: str
    size: str | None = None


@dataclass(frozen=True)
class SceneSpec:
    """One group, or two groups with ``relation`` = where groups[0] lies relative to groups[1]."""

    groups: tuple[Group, ...]
    relation: str | None = None

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)

    def canonical(self) -> SceneSpec:
        """The same picture with relation "left of" or "above" (groups swapped if needed)."""
        if self.relation == "right of":
            return SceneSpec((self.groups[1], self.groups[0]), "left of")
        if self.relation == "below":
            return SceneSpec((self.groups[1], self.groups[0]), "above")
        return self

    def problem(self) -> str | None:
        """Why this spec is outside the scene grammar, or None when it is valid."""
        if len(self.groups) not in (1, 2):
            return f"{len(self.groups)} groups; expected 1 or 2"
        if (len(self.groups) == 2) != (self.relation is not None):
            return "a relation is needed exactly when there are two groups"
        if self.relation is not None and self.relation not in RELATIONS:
            return f"unknown relation {self.relation!r}"
        for g in self.groups:
            if g.shape not in SHAPES or g.colour not in COLOURS:
                return f"unknown shape or colour in {g}"
            if g.size is not None and g.size not in SIZES:
                return f"unknown size {g.size!r}"
            if g.count < 1:
                return f"count {g.count} < 1"
        if self.total > MAX_OBJECTS:
            return f"{self.total} objects; at most {MAX_OBJECTS}"
        kinds = [(g.shape, g.colour) for g in self.groups]
        if len(kinds) == 2 and kinds[0] == kinds[1]:
            return "the two groups have the same shape and colour"
        return None

    def to_dict(self) -> dict:
        return {"groups": [g.__dict__.copy() for g in self.groups], "relation": self.relation}

    @classmethod
    def from_dict(cls, d: dict) -> SceneSpec:
        return cls(tuple(Group(**g) for g in d["groups"]), d.get("relation"))


def is_heldout(spec: SceneSpec) -> bool:
    """True when the scene contains a held-out colour-shape or count-relation combination."""
    if any((g.colour, g.shape) in HELDOUT["colour_shape"] for g in spec.groups):
        return True
    c = spec.canonical()
    return c.relation is not None and (c.groups[0].count, c.relation) in HELDOUT["count_relation"]


def sample_spec(
    rng: np.random.Generator, split: str = "all", size_prob: float = 0.5, two_prob: float = 0.75
) -> SceneSpec:
    """A random scene from ``split``; each group names its size with probability ``size_prob``.

    Two groups with probability ``two_prob``, their counts uniform over the six pairs with a
    total of at most 4, the relation uniform; one group: count uniform in 1-4. Shapes and
    colours uniform, the two groups never both alike. Rejection keeps the split exact.
    """
    while True:
        two = rng.random() < two_prob
        if two:
            pairs = [(a, b) for a in range(1, 4) for b in range(1, 4) if a + b <= MAX_OBJECTS]
            counts = pairs[rng.integers(len(pairs))]
        else:
            counts = (int(rng.integers(1, MAX_OBJECTS + 1)),)
        groups: list[Group] = []
        for c in counts:
            while True:
                shape = SHAPES[rng.integers(len(SHAPES))]
                colour = list(COLOURS)[rng.integers(len(COLOURS))]
                if not groups or (shape, colour) != (groups[0].shape, groups[0].colour):
                    break
            size = SIZES[rng.integers(len(SIZES))] if rng.random() < size_prob else None
            groups.append(Group(int(c), shape, colour, size))
        relation = RELATIONS[rng.integers(len(RELATIONS))] if two else None
        spec = SceneSpec(tuple(groups), relation)
        if split == "all" or is_heldout(spec) == (split == "heldout"):
            return spec


# --- layout and rendering ----------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """One object on the canvas: centre (x, y) and half-extent r in [0, 1] units, y downwards."""

    x: float
    y: float
    r: float
    shape: str
    colour: str
    group: int  # index into the canonical spec's groups


_ARRANGEMENTS = {1: ((1, 1),), 2: ((1, 2), (2, 1)), 3: ((1, 3), (3, 1), (2, 2)), 4: ((2, 2),)}


def _place_group(n: int, r: float, box: tuple[float, float, float, float], rng) -> list | None:
    """``n`` centres in a rows x cols grid of cells inside ``box`` (x0, x1, y0, y1), jittered
    within their cells; None when no arrangement fits. Cells are >= 2r + GAP wide, so boxes of
    neighbouring objects stay >= GAP apart."""
    x0, x1, y0, y1 = box
    cell = 2 * r + GAP
    fits = [
        (ro, co) for ro, co in _ARRANGEMENTS[n] if co * cell <= x1 - x0 and ro * cell <= y1 - y0
    ]
    if not fits:
        return None
    rows, cols = fits[rng.integers(len(fits))]
    # The grid spans between its minimum and 1.6x that (compact groups), placed anywhere in box.
    w = rng.uniform(cols * cell, min(x1 - x0, 1.6 * cols * cell))
    h = rng.uniform(rows * cell, min(y1 - y0, 1.6 * rows * cell))
    gx, gy = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
    cw, ch = w / cols, h / rows
    out = []
    for k in rng.permutation(rows * cols)[:n]:
        i, j = divmod(int(k), cols)
        cx = gx + j * cw + rng.uniform(r + GAP / 2, cw - r - GAP / 2)
        cy = gy + i * ch + rng.uniform(r + GAP / 2, ch - r - GAP / 2)
        out.append((float(cx), float(cy)))
    return out


def layout(spec: SceneSpec, rng: np.random.Generator, tries: int = 200) -> list[Placed]:
    """Object positions for ``spec`` (sizes left None are drawn from ``rng``); canonical groups.

    Two groups: the canvas is split at a random line between the groups' minimum extents
    (vertical line for left/right, horizontal for above/below), each group placed in its side,
    then the centroid-angle rule of the module docstring is enforced by redrawing.
    """
    spec = spec.canonical()
    radii = [RADIUS[g.size or SIZES[rng.integers(len(SIZES))]] for g in spec.groups]
    lo, hi = MARGIN, 1 - MARGIN
    for _ in range(tries):
        if spec.relation is None:
            spots = [_place_group(spec.groups[0].count, radii[0], (lo, hi, lo, hi), rng)]
        else:
            # the narrowest extent along the relation's axis that each group can take
            axis = 1 if spec.relation == "left of" else 0  # columns or rows of _ARRANGEMENTS
            need = [
                min(a[axis] for a in _ARRANGEMENTS[g.count]) * (2 * r + GAP)
                for g, r in zip(spec.groups, radii, strict=True)
            ]
            s = rng.uniform(lo + need[0] + GAP / 2, hi - need[1] - GAP / 2)
            a, b = (lo, s - GAP / 2), (s + GAP / 2, hi)
            if spec.relation == "left of":
                boxes = [(*a, lo, hi), (*b, lo, hi)]
            else:
                boxes = [(lo, hi, *a), (lo, hi, *b)]
            spots = [
                _place_group(g.count, r, box, rng)
                for g, r, box in zip(spec.groups, radii, boxes, strict=True)
            ]
        if any(s is None for s in spots):
            continue
        if spec.relation is not None:
            (ax, ay), (bx, by) = (np.mean(np.asarray(s), axis=0) for s in spots)
            along, across = (bx - ax, by - ay) if spec.relation == "left of" else (by - ay, bx - ax)
            if abs(across) > 0.6 * along:
                continue
        return [
            Placed(x, y, radii[k], spec.groups[k].shape, spec.groups[k].colour, k)
            for k, pts in enumerate(spots)
            for x, y in pts
        ]
    raise RuntimeError(f"no layout found for {spec} in {tries} tries")


def _draw(draw: ImageDraw.ImageDraw, p: Placed, scale: float) -> None:
    x, y, r = p.x * scale, p.y * scale, p.r * scale
    fill = COLOURS[p.colour]
    if p.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif p.shape == "square":
        s = 0.88 * r  # about the circle's area
        draw.rectangle([x - s, y - s, x + s, y + s], fill=fill)
    elif p.shape == "triangle":
        draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
    else:  # cross: a plus sign with arms 0.72 r thick
        t = 0.36 * r
        draw.rectangle([x - r, y - t, x + r, y + t], fill=fill)
        draw.rectangle([x - t, y - r, x + t, y + r], fill=fill)


def draw_objects(objects: list[Placed], size: int, supersample: int = 4) -> np.ndarray:
    """Draw placed objects on black: uint8 (size, size, 3), box-filtered from ``supersample``x."""
    big = size * supersample
    im = Image.new("RGB", (big, big), (0, 0, 0))
    d = ImageDraw.Draw(im)
    for p in objects:
        _draw(d, p, big)
    return np.asarray(im.resize((size, size), Image.Resampling.BOX))


def render(spec: SceneSpec, size: int, rng: np.random.Generator | int) -> np.ndarray:
    """A picture of ``spec``: uint8 (size, size, 3); positions and unnamed sizes from ``rng``."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    return draw_objects(layout(spec, rng), size)


# --- captions ------------------------------------------------------------------------------


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


def make_scenes(
    n: int, size: int = 32, split: str = "train", seed: int = 0, size_prob: float = 0.5
) -> tuple[np.ndarray, list[str], list[SceneSpec]]:
    """``n`` scenes of ``split``: uint8 images (n, size, size, 3), captions, specs.

    The spec of example i is the one its caption states (sizes it does not name are None);
    example i depends only on (seed, split, i).
    """
    images, captions, specs, _ = make_scenes_with_layouts(n, size, split, seed, size_prob)
    return images, captions, specs


def make_scenes_with_layouts(
    n: int, size: int = 32, split: str = "train", seed: int = 0, size_prob: float = 0.5
) -> tuple[np.ndarray, list[str], list[SceneSpec], list[list[Placed]]]:
    """``make_scenes`` plus the placed objects each image was drawn from (its boxes)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    captions, specs, placed = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, SPLITS[split], i])
        spec = sample_spec(rng, split, size_prob)
        captions.append(describe(spec, rng))
        objects = layout(spec, rng)  # the draws render() makes, in the same order
        images[i] = draw_objects(objects, size)
        specs.append(spec)
        placed.append(objects)
    return images, captions, specs, placed
