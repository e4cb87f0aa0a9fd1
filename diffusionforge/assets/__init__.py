"""Trained weights shipped with the package, one checkpoint folder per name.

A bundled folder holds ``model.safetensors``, ``ema.safetensors``, ``config.json`` and the
``manifest.json`` that lets ``load_pipeline`` verify them, plus any file the model needs beside
its weights (an autoencoder's ``latent.json``, a latent model's ``autoencoder/``), nothing else
(no optimizer state).
All bundled weights together stay under 20 MB (tests/test_images_bundled.py checks it).
The README names the command that reproduces each one; ``python -m diffusionforge.assets
CHECKPOINT NAME`` copies a trained checkpoint in.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from diffusionforge.train.checkpoint import resolve_checkpoint, write_folder

BUNDLED = ("digits", "grammar", "audio-digits")
BUNDLED_FILES = ("model.safetensors", "ema.safetensors", "config.json")
# Autoencoders for latent diffusion (train.latent.load_autoencoder; data.autoencoder = NAME).
AUTOENCODERS = ("vae-scenes",)


def bundled_path(name: str) -> Path:
    """The folder of bundled model `name` (a checkpoint folder load_pipeline accepts)."""
    if name not in BUNDLED + AUTOENCODERS:
        names = ", ".join(BUNDLED + AUTOENCODERS)
        raise ValueError(f"no bundled model {name!r} (bundled: {names})")
    return Path(str(resources.files("diffusionforge.assets") / name))


def bundle(checkpoint: str | Path, name: str, dest: Path | None = None) -> Path:
    """Copy the weights and config of a checkpoint into the package as bundled model `name`."""

    ckpt = resolve_checkpoint(checkpoint)
    files = {rel: data for rel, data in ckpt.files.items() if not rel.startswith("training_")}
    dest = dest or Path(__file__).parent / name
    return write_folder(dest, files, step=ckpt.step)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m diffusionforge.assets CHECKPOINT NAME", file=sys.stderr)
        return 2
    print(f"bundled {args[0]} as {bundle(args[0], args[1])}")
    return 0
