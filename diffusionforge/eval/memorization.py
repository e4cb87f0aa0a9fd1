"""Memorization report: which generated samples are near-copies of a training image.

Criterion (Carlini et al. 2023, "Extracting Training Data from Diffusion Models", Sec. 4, in
the ratio form used by Yoon et al. 2023 and Gu et al. 2023): a generated sample x is memorized
when its nearest training image is much closer than the second nearest,

    d1(x) < alpha * d2(x),    alpha = 1/3 by default,

with d the Euclidean distance in pixel space (or any feature space the caller chooses). The
ratio makes the test scale-free: a sample that merely sits in a dense region has d1 ~ d2,
while a copy of one image has d1 ~ 0. Exact duplicates inside the training set make d2 ~ 0
for their copies, which hides them: deduplicate the training set first if it has any.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from diffusionforge.plot import label_font

HEAD, TEXT_WIDTH, ROW_MIN = 38, 330, 34  # memorization.png: heading, label column, row pitch


@dataclass(frozen=True)
class MemorizationResult:
    fraction: float  # fraction of generated samples with d1 < alpha * d2
    ratio: Tensor  # (N,) d1 / d2 per generated sample; small = suspicious
    nearest: Tensor  # (N,) index of the nearest training sample
    d1: Tensor  # (N,)
    d2: Tensor  # (N,)
    alpha: float


def memorization(
    generated: Tensor, train: Tensor, alpha: float = 1 / 3, chunk: int = 256
) -> MemorizationResult:
    """Nearest and second-nearest training distances per generated sample; shapes (N, ...)."""
    if len(train) < 2:
        raise ValueError(f"memorization needs at least 2 training samples, got {len(train)}")
    g = generated.reshape(len(generated), -1).double()
    t = train.reshape(len(train), -1).double()
    d1s, d2s, idx = [], [], []
    for i in range(0, len(g), chunk):
        d, j = torch.cdist(g[i : i + chunk], t).topk(2, dim=1, largest=False)  # (n, 2) ascending
        d1s.append(d[:, 0])
        d2s.append(d[:, 1])
        idx.append(j[:, 0])
    d1, d2 = torch.cat(d1s), torch.cat(d2s)
    ratio = d1 / d2.clamp_min(1e-12)
    frac = (d1 < alpha * d2).double().mean().item()
    return MemorizationResult(frac, ratio, torch.cat(idx), d1, d2, alpha)


def _to_uint8(image: Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    arr = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    arr = arr.transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def save_worst_pairs(
    path: str | Path,
    generated: Tensor,
    train: Tensor,
    result: MemorizationResult,
    count: int = 16,
    scale: int = 4,
) -> Path:
    """PNG: one row per pair, generated | nearest training image, smallest d1/d2 first, each
    labelled with the sample's index, its nearest training image's index, the distance d1 and
    the ratio d1/d2 (the criterion's "copy" when below alpha).

    Images are (N, C, H, W) in [-1, 1]; ``scale`` enlarges small images with nearest
    neighbour so 8x8 digits can be inspected. A red bar left of a row marks a pair that meets
    the criterion. Rows are at least ROW_MIN pixels apart, room for two lines of label.
    """
    order = result.ratio.argsort()[:count].tolist()
    h, gap = generated.shape[-2], 2
    strips = []
    for i in order:
        pair = [_to_uint8(generated[i]), _to_uint8(train[result.nearest[i]])]
        flag = np.zeros((h, gap * 2, 3), np.uint8)
        if result.ratio[i] < result.alpha:
            flag[..., 0] = 255
        sep = np.full((h, gap, 3), 128, np.uint8)
        strip = Image.fromarray(np.concatenate([flag, pair[0], sep, pair[1]], axis=1))
        strips.append(strip.resize((strip.width * scale, h * scale), Image.Resampling.NEAREST))
    pitch = max((h + gap) * scale, ROW_MIN)
    width = strips[0].width
    canvas = Image.new("RGB", (width + TEXT_WIDTH, HEAD + len(strips) * pitch), "white")
    draw, black = ImageDraw.Draw(canvas), (0, 0, 0)
    font, bold = label_font(12), label_font(13)
    draw.text((2, 2), "left: generated sample, right: its nearest training image", black, font)
    legend = f"d1: L2 distance of [-1, 1] pixels; copy if d1/d2 < {result.alpha:.3g} (red bar)"
    draw.text((2, 18), legend, black, font)
    for k, (i, strip) in enumerate(zip(order, strips, strict=True)):
        y = HEAD + k * pitch
        canvas.paste(strip, (0, y))
        copy = bool(result.ratio[i] < result.alpha)
        colour = (200, 0, 0) if copy else black
        line1 = f"sample {i} / train {int(result.nearest[i])}"
        line2 = f"d1 {float(result.d1[i]):.3g}  d1/d2 {float(result.ratio[i]):.2f}"
        draw.text((width + 8, y), line1, colour, bold)
        draw.text((width + 8, y + 15), line2 + ("  copy" if copy else ""), colour, font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
