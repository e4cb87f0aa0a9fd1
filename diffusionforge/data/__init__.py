"""Datasets: each item is ``(image float32 (C, H, W) in [-1, 1], label int)``."""

from diffusionforge.data.builtin import BUILTIN_DATASETS, load_digits, load_glyphs
from diffusionforge.data.images import ArrayImages, ImageFolder

__all__ = ["BUILTIN_DATASETS", "ArrayImages", "ImageFolder", "load_digits", "load_glyphs"]
