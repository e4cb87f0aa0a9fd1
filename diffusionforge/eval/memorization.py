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
from PIL import Image
from torch import Tensor


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
    """PNG: one row per pair, generated | nearest training image, smallest d1/d2 first.

    Images are (N, C, H, W) in [-1, 1]; ``scale`` enlarges small images with nearest
    neighbour so 8x8 digits can be inspected. A red bar left of a row marks a pair that meets
    the criterion.
    """
    order = result.ratio.argsort()[:count]
    h = generated.shape[-2]
    gap = 2
    rows = []
    for i in order.tolist():
        pair = [_to_uint8(generated[i]), _to_uint8(train[result.nearest[i]])]
        flag = np.zeros((h, gap * 2, 3), np.uint8)
        if result.ratio[i] < result.alpha:
            flag[..., 0] = 255
        sep = np.full((h, gap, 3), 128, np.uint8)
        rows.append(np.concatenate([flag, pair[0], sep, pair[1]], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 128, np.uint8))
    grid = np.concatenate(rows[:-1], axis=0)
    im = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
