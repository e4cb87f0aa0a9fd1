"""Pictures of samples with Pillow only: 2-D scatter panels and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def image_grid(images: Tensor, cols: int | None = None) -> Image.Image:
    """images: (B, C, H, W), any range (scaled to its own min..max) -> one grid image."""
    x = images.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    b, c, h, w = x.shape
    cols = cols or int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    grid = np.ones((rows * (h + 2), cols * (w + 2), 3), dtype=np.float64)
    for i in range(b):
        r, q = divmod(i, cols)
        tile = x[i].permute(1, 2, 0).numpy()
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, q * (w + 2) + 1 : q * (w + 2) + 1 + w] = (
            tile if c == 3 else tile[..., :1].repeat(3, axis=2)
        )
    return Image.fromarray((grid * 255).astype(np.uint8))


def picture(panels: list[tuple[str, Tensor]]) -> Image.Image | None:
    """The natural picture of data-vs-samples: scatter for vectors, grid for images."""
    x = panels[-1][1]
    if x.dim() == 2 and x.shape[1] >= 2:
        return scatter_panels(panels)
    if x.dim() == 4 and x.shape[1] in (1, 3):
        return image_grid(x[:64])
    return None


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path
