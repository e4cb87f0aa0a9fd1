"""Pictures of samples with Pillow only: 2-D scatter panels and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def scatter_panels(panels: list[tuple[str, Tensor]], size: int = 420) -> Image.Image:
    """One square panel per (title, points (N, 2)), side by side, on shared axes fitted to the
    first panel (the data), so samples that stray outside it stay visibly outside."""
    ref = panels[0][1].detach().float().cpu().numpy()
    lo, hi = np.percentile(ref, 0.5, axis=0), np.percentile(ref, 99.5, axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.25 + 1e-6
    pad_top, margin = 34, 10
    width = len(panels) * (size + margin) + margin
    canvas = Image.new("RGB", (width, size + pad_top + margin), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(18)
    for k, (title, pts) in enumerate(panels):
        pts = pts.detach().float().cpu().numpy().reshape(len(pts), -1)[:, :2]
        pix = ((pts - centre) / half * 0.5 + 0.5) * (size - 1)
        pix[:, 1] = size - 1 - pix[:, 1]  # y axis points up
        inside = np.all((pix >= 0) & (pix <= size - 1), axis=1)
        hist = np.zeros((size, size), dtype=np.float64)
        ij = np.round(pix[inside]).astype(int)
        np.add.at(hist, (ij[:, 1], ij[:, 0]), 1.0)
        # Density shading: a pixel with many points saturates, a lone point stays visible.
        level = 1 - np.exp(-hist * max(4.0, 4000.0 / max(len(pts), 1)) / 4.0)
        level_img = Image.fromarray((level * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
        alpha = np.asarray(level_img, dtype=np.float64)[..., None] / 255.0
        colour = np.array(_COLOURS[k % len(_COLOURS)], dtype=np.float64)
        rgb = (255 * (1 - alpha) + colour * alpha).astype(np.uint8)
        x0 = margin + k * (size + margin)
        canvas.paste(Image.fromarray(rgb), (x0, pad_top))
        draw.rectangle([x0, pad_top, x0 + size - 1, pad_top + size - 1], outline=(120, 120, 120))
        draw.text((x0 + 4, 8), f"{title}  (n={len(pts)})", fill=(0, 0, 0), font=font)
    return canvas


def image_grid(
    images: Tensor,
    cols: int | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    min_tile: int = 32,
) -> Image.Image:
    """images: (B, C, H, W) -> one grid image. Values map from `value_range` (clipped), or from
    the batch's own min..max when None; tiles smaller than `min_tile` are enlarged by an integer
    factor with nearest neighbour, so 8x8 digits stay crisp and visible."""
    x = images.detach().float().cpu()
    if value_range is None:
        x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    else:
        lo, hi = value_range
        x = ((x - lo) / (hi - lo)).clamp(0, 1)
    b, c, h, w = x.shape
    zoom = max(1, -(-min_tile // max(h, w)))
    if zoom > 1:
        x = x.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)
        h, w = h * zoom, w * zoom
    cols = cols or int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    grid = np.ones((rows * (h + 2), cols * (w + 2), 3), dtype=np.float64)
    for i in range(b):
        r, q = divmod(i, cols)
        tile = x[i].permute(1, 2, 0).numpy()
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, q * (w + 2) + 1 : q * (w + 2) + 1 + w] = (
            tile if c == 3 else tile[..., :1].repeat(3, axis=2)
        )
    return Image.fromarray(np.rint(grid * 255).astype(np.uint8))


def to_pil(image: Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1] -> an 8-bit L or RGB Pillow image, at its own size."""
    x = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    arr = x.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def image_panels(panels: list[tuple[str, Tensor]], cols: int) -> Image.Image:
    """Titled image grids (values in [-1, 1]) side by side, e.g. data | samples."""
    grids = [(t, image_grid(x, cols, value_range=(-1, 1))) for t, x in panels]
    pad_top, margin = 26, 10
    width = sum(g.width for _, g in grids) + margin * (len(grids) + 1)
    height = max(g.height for _, g in grids) + pad_top + margin
    canvas = Image.new("RGB", (width, height), "white")
    draw, font, x0 = ImageDraw.Draw(canvas), _font(14), margin
    for title, g in grids:
        canvas.paste(g, (x0, pad_top))
        draw.text((x0, 6), title, fill=(0, 0, 0), font=font)
        x0 += g.width + margin
    return canvas


def picture(panels: list[tuple[str, Tensor]]) -> Image.Image | None:
    """The natural picture of data-vs-samples: scatter for vectors, grid for images."""
    x = panels[-1][1]
    if x.dim() == 2 and x.shape[1] >= 2:
        return scatter_panels(panels)
    if x.dim() == 4 and x.shape[1] in (1, 3):
        return image_grid(x[:64], value_range=(-1, 1))
    return None


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path
