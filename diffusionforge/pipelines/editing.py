"""img2img and inpainting for image pipelines, in pixel or latent space (core.editing does the
math): load and check the user's image and mask, move them into the model's space, decode.

Mask convention (as in Stable Diffusion's inpainting): white (1) marks the pixels to generate,
black (0) the pixels to keep. A latent model generates every latent cell that touches a white
pixel (the mask is max-pooled by the autoencoder's factor), then the kept pixels of the init
image are pasted back after decoding, so they come back exactly in both spaces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionforge.errors import UserError

DEFAULT_STRENGTH = 0.6  # img2img without a mask; inpainting defaults to 1 (regenerate fully)


def load_image(path: str | Path, channels: int, what: str = "--init-image") -> Tensor:
    """A PNG/JPEG file -> (1, channels, H, W) in [-1, 1]; one-line UserError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file")
    try:
        with Image.open(path) as im:
            return image_tensor(im, channels)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{what} {path}: not a readable image ({e})") from None


def image_tensor(im, channels: int) -> Tensor:
    """An opened PIL image -> (1, channels, H, W) in [-1, 1]: the one conversion the CLI's
    files and the server's uploads both go through (so both give the same bytes)."""
    array = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    x = torch.from_numpy(array / 127.5 - 1.0)
    return (x[None] if channels == 1 else x.permute(2, 0, 1))[None].contiguous()


def load_mask(path: str | Path, what: str = "--mask") -> Tensor:
    """A mask image -> (1, 1, H, W) of 0 (keep) and 1 (generate): grey level >= 128 is white."""
    return mask_tensor(load_image(path, 1, what))


def mask_tensor(grey: Tensor) -> Tensor:
    """(1, 1, H, W) grey levels in [-1, 1] -> 0 (keep) / 1 (generate): level >= 128 is white."""
    return (grey >= 0).float()


def check_edit(
    image_shape: tuple[int, ...],
    init: Tensor | None,
    mask: Tensor | None,
    strength: float,
    *,
    init_name: str = "--init-image",
    mask_name: str = "--mask",
) -> None:
    """One-line UserErrors for inputs that cannot work with a model making `image_shape`."""
    c, h, w = image_shape
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"--strength: expected a number in [0, 1], got {strength}")
    if mask is not None and init is None:
        raise UserError(f"{mask_name}: inpainting needs an image to keep pixels from ({init_name})")
    if init is not None and tuple(init.shape[-2:]) != (h, w):
        raise UserError(
            f"{init_name}: the image is {init.shape[-1]}x{init.shape[-2]} pixels; this model "
            f"makes {w}x{h} images (resize or crop it first)"
        )
    if init is not None and init.shape[-3] != c:
        raise UserError(f"{init_name}: expected {c} channel(s), got {init.shape[-3]}")
    if mask is None:
        return
    if tuple(mask.shape[-2:]) != (h, w):
        raise UserError(
            f"{mask_name}: the mask is {mask.shape[-1]}x{mask.shape[-2]} pixels; it must match "
            f"the {w}x{h} image"
        )
    if not bool((mask > 0.5).any()):
        raise UserError(
            f"{mask_name}: the mask is all black: nothing to generate (white marks the pixels "
            f"to generate, black the pixels to keep)"
        )
