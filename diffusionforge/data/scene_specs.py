"""The world of the procedural captioned scenes (data/scenes.py): what a scene is, which
scenes are held out, and how one is drawn at random.

A scene (``SceneSpec``) is one or two object *groups*; a group is ``count`` objects of one shape,
colour and size. With two groups, ``relation`` says where group 0 lies relative to group 1
("two red circles to the left of a blue square"):

- shapes ``circle, square, triangle, cross``; colours ``red, green, blue, yellow, white`` on
  black; sizes ``small, large``; 1-4 objects in all; relations ``left of, right of, above, below``.
- A size the caption does not name is ``None`` in the spec and drawn at random where the scene is
  laid out (data/scene_drawing.py).

Held-out split (``HELDOUT``, ``is_heldout``): a scene is held out when it contains a held-out
colour-shape pair in any group (red triangle, green cross, blue circle, yellow square: each
colour but white and each shape keeps 3-4 seen partners), or a held-out count-relation pair:
in the *canonical* form (``SceneSpec.canonical``: "right of"/"below" rewritten as
"left of"/"above" with the groups swapped, which draws the same picture) a group of three to
the left of another group, or a group of two above another. "a square right of three circles"
is therefore held out too: it is the same picture as "three circles left of a square".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
HELDOUT = {
    "colour_shape": frozenset(
        {("red", "triangle"), ("green", "cross"), ("blue", "circle"), ("yellow", "square")}
    ),
    # (count of group 0, relation) in canonical form: see the module docstring
    "count_relation": frozenset({(3, "left of"), (2, "above")}),
}
SPLITS = {"train": 0, "heldout": 1, "all": 2}


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
