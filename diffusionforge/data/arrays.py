"""Datasets held as one tensor: any `.npy` array of shape (N, ...), and the toy sets.

`ArrayDataset.batch(indices, epoch)` returns the examples at `indices` with augmentation drawn
from (seed, epoch, index), so a batch is the same whichever process or worker builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusionforge.data.augment import augment
from diffusionforge.errors import DataError
from diffusionforge.limits import limit


def load_npy(path: str | os.PathLike) -> Tensor:
    """Read a numeric .npy array of shape (N, ...) as float32; one-line DataError otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a .npy file")
    check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a valid .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: expected a single array, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[0] == 0:
        raise DataError(f"{path}: empty array of shape {array.shape}; expected (N, ...), N > 0")
    if array.ndim == 1:
        array = array[:, None]  # N scalars -> (N, 1)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array))


def check_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Read only the header of a .npy file and refuse, in one line, what cannot be loaded:
    not a regular file, not a .npy, object arrays, or a shape whose bytes the file does not
    hold or whose values exceed limits.limit('values'). Returns (shape, dtype)."""

    if not path.is_file():
        raise DataError(f"{path}: not a regular file; expected a .npy file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a valid .npy array ({reason})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: expected a numeric array, got dtype {dtype}")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    size = path.stat().st_size - offset
    if count * dtype.itemsize > size:
        raise DataError(
            f"{path}: header claims shape {tuple(shape)} ({count * dtype.itemsize:,} bytes) but "
            f"the file holds {size:,} bytes of data"
        )
    if count > limit("values"):
        raise DataError(
            f"{path}: shape {tuple(shape)} holds {count:,} values, above the limit of "
            f"{limit('values'):,} (raise with DIFFUSIONFORGE_MAX_VALUES)"
        )
    return tuple(shape), dtype


class ArrayDataset:
    """Examples (N, ...) held in memory, optionally with int class labels (N,).

    Images are (N, C, H, W) in [-1, 1]; `labels` (when given) are what the trainer passes to the
    network as `cond`, and `classes` names them (label k is `classes[k]`). Other conditioning
    (captions...) comes as `cond` (N, ...) with `null_cond` (...), exclusive with labels.
    """

    def __init__(
        self,
        data: Tensor,
        *,
        seed: int = 0,
        augment: str = "none",
        jitter: float = 0.0,
        labels: Tensor | None = None,
        classes: list[str] | None = None,
        cond: Tensor | None = None,
        null_cond: Tensor | None = None,
    ):
        if labels is not None and cond is not None:
            raise ValueError("ArrayDataset: give class labels or a cond tensor, not both")
        if cond is not None and (null_cond is None or null_cond.shape != cond.shape[1:]):
            raise ValueError("ArrayDataset: cond needs a null_cond of shape cond.shape[1:]")
        self.data = data  # (N, ...)
        self.seed = seed
        self.augment = augment
        self.jitter = jitter
        self.labels = labels  # (N,) int64, or None for unlabelled data
        self.classes = list(classes or [])
        # Any other per-example conditioning (caption token ids, embeddings...): (N, ...), and
        # the "no condition" value that conditioning dropout puts in its place (for guidance).
        self.cond = cond
        self.null_cond = null_cond

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.labels is not None else 0

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def batch(self, indices: Tensor, epoch: int) -> Tensor:
        x = self.data[indices]
        return augment(x, indices, epoch, self.seed, kind=self.augment, jitter=self.jitter)


def to_tensor_images(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
