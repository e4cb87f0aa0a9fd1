"""Latent diffusion assembled: an autoencoder checkpoint -> `Autoencoder` with scaled `encode`
and `decode`, and its reconstruction PSNR.

`load_autoencoder(path)` accepts an autoencoder checkpoint folder (or its run folder, meaning the
newest checkpoint), the name of a bundled one (`vae-scenes`), or the files a latent-diffusion
checkpoint carries under `autoencoder/` (`from_files`). Latents are the posterior means, shifted
and scaled by the checkpoint's `latent.json` to zero mean and unit variance, so every diffusion
formulation and sampler sees data of the spread it was designed for (sigma_data = 0.5 still fits
loosely; LDM trains its EDM-like models on unit-variance latents the same way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diffusionforge.assets import AUTOENCODERS, bundled_path
from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.data.augment import uniforms
from diffusionforge.errors import CheckpointError, ConfigError
from diffusionforge.eval.psnr import psnr
from diffusionforge.nets.autoencoder import KLAutoencoder
from diffusionforge.train.builders import build_model
from diffusionforge.train.builders_latent import AUTOENCODER_DIR, LATENT_FILE
from diffusionforge.train.checkpoint import bytes_to_tensors, resolve_checkpoint
from diffusionforge.train.loading import split_config


@dataclass
class Autoencoder:
    net: KLAutoencoder  # eval mode, no gradients
    shift: float
    scale: float
    image_shape: tuple[int, int, int]  # (C, H, W) it was trained on
    files: dict[str, bytes]  # model.safetensors, config.json, latent.json: enough to reload it
    source: str  # where it was loaded from, for messages

    @property
    def factor(self) -> int:
        return self.net.factor

    def latent_shape(self, image_shape: tuple[int, ...] | None = None) -> tuple[int, int, int]:
        return self.net.latent_shape(tuple(image_shape or self.image_shape))

    @torch.no_grad()
    def encode(self, x: Tensor, batch: int = 256) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] -> scaled latents (B, z, H/f, W/f), deterministic."""
        dev = next(self.net.parameters()).device
        out = [self.net.encode(x[i : i + batch].to(dev))[0].cpu() for i in range(0, len(x), batch)]
        z = torch.cat(out) if out else x.new_zeros((0, *self.latent_shape(tuple(x.shape[1:]))))
        return (z - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, z: Tensor, batch: int = 256) -> Tensor:
        """Scaled latents -> images in [-1, 1] (clamped: the decoder may overshoot a little)."""
        dev = next(self.net.parameters()).device
        out = [
            self.net.decode(z[i : i + batch].to(dev) / self.scale + self.shift).cpu()
            for i in range(0, len(z), batch)
        ]
        return torch.cat(out).clamp(-1, 1)


def reconstruction_psnr(ae: Autoencoder, images: Tensor) -> float:
    """Mean PSNR (dB) of decode(encode(x)) over `images`, the figure BENCHMARKS.md reports."""
    return float(psnr(ae.decode(ae.encode(images)), images.clamp(-1, 1)).mean())


def from_files(files: dict[str, bytes], source: str) -> Autoencoder:
    """An Autoencoder from its three files (a latent model keeps them under autoencoder/)."""

    for rel in ("model.safetensors", "config.json", LATENT_FILE):
        if rel not in files:
            raise CheckpointError(
                f"{source}: not an autoencoder checkpoint (no {rel}; train one with "
                f"formulation.kind = vae, e.g. --preset vae-scenes)"
            )
    try:
        raw = json.loads(files["config.json"])
        stats = json.loads(files[LATENT_FILE])
        shift, scale = float(stats["shift"]), float(stats["scale"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{source}: config.json or {LATENT_FILE} unreadable") from None
    cfg, shape = split_config(raw, source)
    if cfg.model.kind != "autoencoder":
        raise CheckpointError(f"{source}: model.kind is {cfg.model.kind!r}, not an autoencoder")
    net = build_model(cfg, shape, weights=files["model.safetensors"], where=source)
    try:
        net.load_state_dict(bytes_to_tensors(files["model.safetensors"], source), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{source}: weights do not fit the autoencoder ({first})") from None
    net.eval().requires_grad_(False)
    return Autoencoder(net, shift, scale, tuple(shape), dict(files), source)


def load_autoencoder(path: str | Path, *, what: str = "autoencoder") -> Autoencoder:
    """An autoencoder checkpoint, run folder or bundled name -> Autoencoder (EMA weights when
    the checkpoint has them: latent.json was measured on those)."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        if str(path) not in AUTOENCODERS:
            raise CheckpointError(
                f"{what}: {path}: no such checkpoint (or bundled name: {', '.join(AUTOENCODERS)})"
            )
        path = bundled_path(str(path))
    ckpt = resolve_checkpoint(path)
    weights = "ema.safetensors" if ckpt.has("ema.safetensors") else "model.safetensors"
    files = {"model.safetensors": ckpt.files[weights], "config.json": ckpt.files["config.json"]}
    if ckpt.has(LATENT_FILE):
        files[LATENT_FILE] = ckpt.files[LATENT_FILE]
    return from_files(files, f"{what} {ckpt.path}")


def latent_model_autoencoder(checkpoint) -> Autoencoder | None:
    """The autoencoder a latent-diffusion checkpoint carries under autoencoder/, or None."""
    prefix = f"{AUTOENCODER_DIR}/"
    files = {k[len(prefix) :]: v for k, v in checkpoint.files.items() if k.startswith(prefix)}
    return from_files(files, f"{checkpoint.path}/{AUTOENCODER_DIR}") if files else None


# --- latent-diffusion datasets (data.autoencoder = CHECKPOINT) ---------------------------


class LatentDataset(ArrayDataset):
    """Scaled latents of a dataset's images; with data.augment = "flip" the mirrored images are
    encoded too and picked by the same (seed, epoch, index) draw that flips pixels, since a
    mirrored latent is not the latent of the mirrored image."""

    def __init__(self, latents, flipped, autoencoder, *, seed, labels, classes, cond, null_cond):
        super().__init__(
            latents, seed=seed, labels=labels, classes=classes, cond=cond, null_cond=null_cond
        )
        self.flipped = flipped  # (N, z, h, w) latents of the mirrored images, or None
        self.autoencoder = autoencoder  # Autoencoder: previews decode with it
        self.extra_files = {f"{AUTOENCODER_DIR}/{rel}": b for rel, b in autoencoder.files.items()}

    def batch(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        x = self.data[indices]
        if self.flipped is None:
            return x
        flip = uniforms(self.seed, epoch, indices, 1)[:, 0] < 0.5  # as data.augment.augment
        return torch.where(flip.view(-1, 1, 1, 1), self.flipped[indices], x)


def encode_dataset(dataset: ArrayDataset, cfg) -> LatentDataset:
    """data.autoencoder: replace the images of `dataset` by the autoencoder's scaled latents."""
    ae = load_autoencoder(cfg.data.autoencoder, what="data.autoencoder")
    if dataset.data.dim() != 4 or tuple(dataset.shape[:1]) != (ae.net.in_channels,):
        raise ConfigError(
            f"data.autoencoder: {cfg.data.autoencoder} encodes images with "
            f"{ae.net.in_channels} channel(s); this data has examples of shape {dataset.shape}"
        )
    if dataset.augment not in ("none", "flip"):
        raise ConfigError(
            f"data.augment: {dataset.augment} cannot be applied to latents (use none or flip)"
        )
    latents = ae.encode(dataset.data)
    flipped = ae.encode(dataset.data.flip(-1)) if dataset.augment == "flip" else None
    out = LatentDataset(
        latents,
        flipped,
        ae,
        seed=dataset.seed,
        labels=dataset.labels,
        classes=dataset.classes,
        cond=dataset.cond,
        null_cond=dataset.null_cond,
    )
    out.extra_files = {**getattr(dataset, "extra_files", {}), **out.extra_files}  # + tokenizer
    return out
