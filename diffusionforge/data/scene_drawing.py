"""Where the objects of a procedural scene go (``layout``) and how they are drawn
(``draw_objects``, ``render``); the scenes themselves are in data/scene_specs.py.

- Layout: groups sit in disjoint regions split by a vertical (left/right) or a horizontal
  (above/below) line, every object of one group strictly beyond every object of the other, and
  the line joining the two group centroids within 31 degrees of the relation's axis
  (|dy| <= 0.6 dx), so "left of" never also reads as "above". Objects never touch: bounding
  boxes are at least ``GAP`` (1.6 px at 32x32) apart.
- Rendering is 4x supersampled and box-filtered (anti-aliased, crisp), at any size (32, 64...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from diffusionforge.data.scene_specs import COLOURS, SIZES, SceneSpec

RADIUS = {"small": 0.085, "large": 0.13}  # half-extent of an object, in canvas units
GAP, MARGIN = 0.05, 0.03  # between object boxes; between objects and the canvas edge


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
