"""Procedural captioned scenes for text-to-image: 1-4 coloured shapes placed by a relation.

The world is small on purpose, so a small model on a CPU can learn it and a judge network can
score it (eval/judge.py). Its parts, one module each:

- data/scene_specs.py: what a scene is (``SceneSpec``: one or two groups of ``count`` objects of
  one shape, colour and size, and a relation between them), the held-out split (``HELDOUT``,
  ``is_heldout``) and a random scene of a split (``sample_spec``);
- data/scene_drawing.py: where its objects go (``layout``) and its picture (``render``);
- data/scene_captions.py: the caption grammar (``describe``, ``parse_prompt``, ``VOCABULARY``).

This module makes the data sets. ``make_scenes`` names each group's size with probability 1/2,
so prompts without sizes ("two red circles left of a blue square") are in the training
distribution; ``make_scenes(split="train")`` never yields a held-out scene, ``split="heldout"``
only those.

Every random draw of example i comes from ``np.random.default_rng([seed, split, i])``, so a set
is the same on every machine and ``make_scenes(n)`` is a prefix of ``make_scenes(n + k)``.
"""

from __future__ import annotations

import numpy as np

from diffusionforge.data.scene_captions import describe
from diffusionforge.data.scene_drawing import Placed, draw_objects, layout
from diffusionforge.data.scene_specs import SPLITS, SceneSpec, sample_spec


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
