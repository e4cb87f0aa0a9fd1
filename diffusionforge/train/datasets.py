"""Turn a Config into its dataset: `build_dataset(cfg)`, by data.kind (`DATASETS`).

Latent diffusion (data.autoencoder = CHECKPOINT) trains on an autoencoder's scaled latents of
the same data (train/latent.py). The modalities' own sets come from their builder modules.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffusionforge.data.arrays import ArrayDataset, load_npy
from diffusionforge.data.builtin import BUILTIN_DATASETS
from diffusionforge.data.images import ArrayImages, ImageFolder
from diffusionforge.data.stream import FolderStream
from diffusionforge.data.toy import TOY_SETS, make_toy
from diffusionforge.errors import ConfigError, DataError
from diffusionforge.train import builders_audio, builders_t2i, builders_text
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
    x = torch.stack([images.load(i) for i in range(len(images))])
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


# data.kind -> builder. A modality adds its kinds here (text, captioned scenes, audio...).
DATASETS = {
    "toy": _toy_dataset,
    "npy": _npy_dataset,
    "digits": _image_dataset,
    "glyphs": _image_dataset,
    "images": _image_dataset,
    **dict.fromkeys(builders_text.TEXT_KINDS, builders_text.text_dataset),
    **builders_t2i.CAPTIONED_KINDS,
    **builders_audio.AUDIO_KINDS,
}
IMAGE_KINDS = ("digits", "glyphs", "images")


def build_dataset(cfg: Config) -> ArrayDataset | FolderStream:
    if cfg.data.kind not in DATASETS:
        raise ConfigError(
            f"data.kind: expected one of {', '.join(DATASETS)}, got {cfg.data.kind!r}"
        )
    dataset = DATASETS[cfg.data.kind](cfg)
    if cfg.data.autoencoder:  # latent diffusion: train on the autoencoder's scaled latents
        dataset = encode_dataset(dataset, cfg)
    return dataset
