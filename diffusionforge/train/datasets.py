"""Turn a Config into its dataset: `build_dataset(cfg, builders)`, by data.kind.

Which builder makes which data.kind is said once, in the modality table (modalities.py, which
passes its `DATASETS` here); the vector and image kinds' builders live in this module
(`VECTOR_DATASETS`, `IMAGE_DATASETS`), the other modalities' in their builder modules.

Latent diffusion (data.autoencoder = CHECKPOINT) trains on an autoencoder's scaled latents of
the same data (train/latent.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from diffusionforge.data.arrays import ArrayDataset, load_npy
from diffusionforge.data.builtin import BUILTIN_DATASETS
from diffusionforge.data.images import ArrayImages, ImageFolder
from diffusionforge.data.stream import FolderStream
from diffusionforge.data.toy import TOY_SETS, make_toy
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.train.config import Config
from diffusionforge.train.latent import encode_dataset


def _load_images(cfg: Config) -> ArrayImages:
    """The image sets: built-in digits/glyphs, a folder (resized, see data.images), a .npy stack."""
    d = cfg.data
    if d.kind in BUILTIN_DATASETS:
        try:
            return BUILTIN_DATASETS[d.kind]()
        except (ImportError, ValueError) as e:
            raise DataError(f"data.kind = {d.kind}: {e}") from None
    if not d.path:
        raise DataError("data.path: an image folder or .npy file is needed (pass --data)")
    path = Path(d.path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    try:
        if path.is_dir():  # headers only: a folder too large to cache is decoded per batch
            return ImageFolder(path, d.image_size, channels=d.channels, check="header")
        images = ArrayImages.from_npy(path, d.labels or None)
    except ValueError as e:
        line = str(e).splitlines()[0]
        raise DataError(line if str(path) in line else f"{path}: {line}") from None
    if d.labels:  # classes of a labelled .npy stack are named by their numbers
        if int(images.labels.min()) < 0:
            raise DataError(f"{d.labels}: labels must be 0 or more")
        images.classes = [str(k) for k in range(int(images.labels.max()) + 1)]
    return images


def _image_dataset(cfg: Config) -> ArrayDataset | FolderStream:
    images = _load_images(cfg)
    if not isinstance(images, ImageFolder):
        return _arrays(cfg, images, images.images, images.labels)
    cfg.data.image_size = images.size  # a side picked from the data goes into config.json
    decoded = len(images) * images.channels * images.size**2 * 4  # float32 bytes in memory
    # latents are encoded from all images at once (train/latent.py): always cached
    if decoded > cfg.data.cache_mb * 2**20 and not cfg.data.autoencoder:
        if len(images) < 2:
            raise DataError(f"data: {len(images)} image(s); training needs at least 2")
        return FolderStream(
            images, seed=cfg.train.seed, augment=cfg.data.augment, jitter=cfg.data.jitter
        )
    images.keep_verified()  # a cached folder: every file verified and decoded in full
    x = torch.empty(len(images), images.channels, images.size, images.size)  # filled in place:
    for i in range(len(images)):  # no second copy (a stack of a list held both, 2x the cache)
        x[i] = images.load(i)
    labels = torch.tensor([lab for _, lab in images.samples], dtype=torch.long)
    return _arrays(cfg, images, x, labels)


def _arrays(cfg: Config, images, x: torch.Tensor, labels: torch.Tensor) -> ArrayDataset:
    if x.shape[0] < 2:
        raise DataError(f"data: {x.shape[0]} image(s); training needs at least 2")
    labelled = images.num_classes > 1
    return ArrayDataset(
        x.float().contiguous(),
        seed=cfg.train.seed,
        augment=cfg.data.augment,
        jitter=cfg.data.jitter,
        labels=labels if labelled else None,
        classes=images.classes if labelled else None,
    )


def _toy_dataset(cfg: Config) -> ArrayDataset:
    d = cfg.data
    if d.name not in TOY_SETS:
        raise ConfigError(
            f"data.name: unknown toy set {d.name!r} (expected one of: {', '.join(TOY_SETS)})"
        )
    data = make_toy(d.name, d.size, d.seed)
    return ArrayDataset(data, seed=cfg.train.seed, augment=d.augment, jitter=d.jitter)


def _npy_dataset(cfg: Config) -> ArrayDataset:
    d = cfg.data
    if not d.path:
        raise DataError("data.path: a .npy file is needed when data.kind = npy (pass --data)")
    data = load_npy(Path(d.path).expanduser())
    return ArrayDataset(data, seed=cfg.train.seed, augment=d.augment, jitter=d.jitter)


# data.kind -> builder, for the vectors and images rows of the modality table
VECTOR_DATASETS = {"toy": _toy_dataset, "npy": _npy_dataset}
IMAGE_DATASETS = dict.fromkeys(("digits", "glyphs", "images"), _image_dataset)


def build_dataset(cfg: Config, builders: Mapping[str, Callable]) -> ArrayDataset | FolderStream:
    """The dataset of cfg.data.kind, made by its builder in `builders` (data.kind -> builder:
    `modalities.DATASETS`)."""
    if cfg.data.kind not in builders:
        raise ConfigError(
            f"data.kind: expected one of {', '.join(builders)}, got {cfg.data.kind!r}"
        )
    dataset = builders[cfg.data.kind](cfg)
    if cfg.data.autoencoder:  # latent diffusion: train on the autoencoder's scaled latents
        dataset = encode_dataset(dataset, cfg)
    return dataset
