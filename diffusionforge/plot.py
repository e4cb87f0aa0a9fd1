"""Pictures of samples with Pillow only: 2-D scatter panels and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

from diffusionforge.core.spectral import MelSpec

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def label_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, target: int = 5) -> tuple[list[float], float]:
    """Round tick values in [lo, hi] and their step: the smallest step of 1, 2 or 5 times a
    power of ten that cuts the range into at most `target` + 1 intervals (Heckbert 1990,
    "Nice numbers for graph labels")."""
    span = max(hi - lo, 1e-12)
    magnitude = 10.0 ** np.floor(np.log10(span / target))
    step = next(m * magnitude for m in (1, 2, 5, 10) if span / (m * magnitude) <= target + 1)
    first, last = int(np.ceil(lo / step - 1e-9)), int(np.floor(hi / step + 1e-9))
    return [k * step for k in range(first, last + 1)], step


def tick_label(value: float, step: float) -> str:
    """A tick value with as many decimals as its step needs (0.5 -> "0.5", 2 -> "2")."""
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text  # no "-0"


def _axes(draw, canvas, box, lo, hi, font, y_labels: bool) -> None:
    """Ticks and their values along the bottom (and, for the first panel, the left) of a panel
    `box` = (x0, y0, size) showing data coordinates lo..hi (per axis) across `size` pixels."""
    x0, y0, size = box
    grey, black = (120, 120, 120), (40, 40, 40)
    for axis in (0, 1):
        ticks, step = nice_ticks(lo[axis], hi[axis])
        for t in ticks:
            frac = (t - lo[axis]) / (hi[axis] - lo[axis])
            text = tick_label(t, step)
            if axis == 0:
                x = x0 + round(frac * (size - 1))
                draw.line([x, y0 + size - 1, x, y0 + size + 4], fill=grey)
                w = draw.textlength(text, font=font)
                draw.text((x - w / 2, y0 + size + 6), text, fill=black, font=font)
            else:
                y = y0 + size - 1 - round(frac * (size - 1))
                draw.line([x0 - 5, y, x0, y], fill=grey)
                if y_labels:
                    w = draw.textlength(text, font=font)
                    draw.text((x0 - 8 - w, y - 7), text, fill=black, font=font)
    draw.text((x0 + size / 2 - 10, y0 + size + 22), "x[0]", fill=black, font=font)
    if y_labels:  # the vertical axis' name, turned 90 degrees
        tag = Image.new("RGB", (40, 16), "white")
        ImageDraw.Draw(tag).text((2, 0), "x[1]", fill=black, font=font)
        canvas.paste(tag.rotate(90, expand=True), (2, y0 + size // 2 - 20))


def scatter_panels(panels: list[tuple[str, Tensor]], size: int = 420) -> Image.Image:
    """One square panel per (title, points (N, 2)), side by side, on shared axes fitted to the
    first panel (the data), so samples that stray outside it stay visibly outside. Each panel
    has ticks with values along x[0] (the first coordinate) and x[1]; the first one names the
    values of x[1] (the panels share it)."""
    ref = panels[0][1].detach().float().cpu().numpy()
    lo, hi = np.percentile(ref, 0.5, axis=0), np.percentile(ref, 99.5, axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.25 + 1e-6
    pad_top, pad_left, pad_bottom, margin = 34, 64, 42, 16
    width = pad_left + len(panels) * (size + margin)
    canvas = Image.new("RGB", (width, size + pad_top + pad_bottom), "white")
    draw = ImageDraw.Draw(canvas)
    font, small = label_font(18), label_font(13)
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
        colour = np.array(COLOURS[k % len(COLOURS)], dtype=np.float64)
        rgb = (255 * (1 - alpha) + colour * alpha).astype(np.uint8)
        x0 = pad_left + k * (size + margin)
        canvas.paste(Image.fromarray(rgb), (x0, pad_top))
        draw.rectangle([x0, pad_top, x0 + size - 1, pad_top + size - 1], outline=(120, 120, 120))
        draw.text((x0 + 4, 8), f"{title}  (n={len(pts)})", fill=(0, 0, 0), font=font)
        _axes(draw, canvas, (x0, pad_top, size), centre - half, centre + half, small, k == 0)
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
    draw, font, x0 = ImageDraw.Draw(canvas), label_font(14), margin
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


# --- audio: spectrograms -------------------------------------------------------------

# The picture's analysis: finer than the models' (64 bands, 8 ms hop at 8 kHz) so a listener
# can judge formants and pitch by eye.
DISPLAY_HOP_SECONDS = 0.008


def _inferno(v: np.ndarray) -> np.ndarray:
    """A dark-to-bright colour map (black, purple, orange, yellow) for values in [0, 1]."""
    stops = np.array(
        [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
    )
    pos = v.clip(0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    frac = (pos - i)[..., None]
    return (stops[i] * (1 - frac) + stops[i + 1] * frac).astype(np.uint8)


def spectrogram_image(waves: Tensor, rate: int, titles: list[str], cols: int = 5) -> Image.Image:
    """A grid of log-mel spectrograms (time right, frequency up), one per clip, titled."""
    hop = max(1, round(rate * DISPLAY_HOP_SECONDS))
    spec = MelSpec(rate=rate, n_fft=4 * hop, hop=hop, n_mels=64)
    mels = spec.log_mel(waves.float())  # (n, 64, T) in [-1, 1]
    tile_h, tile_w = 2 * mels.shape[1], 2 * mels.shape[2]
    cols = max(1, min(cols, len(waves)))
    rows = (len(waves) + cols - 1) // cols
    pad, title_h = 6, 16
    canvas = Image.new(
        "RGB", (cols * (tile_w + pad) + pad, rows * (tile_h + title_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for k, (mel, title) in enumerate(zip(mels, titles, strict=True)):
        rgb = _inferno((mel.flip(0).numpy() + 1) / 2)
        tile = Image.fromarray(rgb).resize((tile_w, tile_h), Image.NEAREST)
        x = pad + (k % cols) * (tile_w + pad)
        y = pad + (k // cols) * (tile_h + title_h + pad)
        draw.text((x, y), title, fill=(0, 0, 0))
        canvas.paste(tile, (x, y + title_h))
    return canvas


def labelled_panels(panels: list[tuple[str, Image.Image]]) -> Image.Image:
    """Pictures stacked vertically with a heading each."""
    width = max(im.width for _, im in panels)
    height = sum(im.height + 20 for _, im in panels)
    canvas = Image.new("RGB", (width, height), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    for title, im in panels:
        draw.text((6, y + 4), title, fill=(0, 0, 0))
        canvas.paste(im, (0, y + 20))
        y += im.height + 20
    return canvas
