"""An image folder decoded per batch: memory holds the file list, never the pixels.

`FolderStream` has `ArrayDataset`'s face (`batch(indices, epoch)`, `labels`, `classes`, `shape`,
`data[...]`), so the trainer draws the same indices and the same augmentation (a pure function
of (seed, epoch, index), data/augment.py) from it as from the folder decoded into memory; the
tensors are those of `ImageFolder.load`, bit for bit. `BatchLoader` decodes the batches of the
coming steps in DataLoader worker processes, in order, so any worker count gives the same
batches.

A file that no longer decodes (changed on disk after the scan) is reported once (per process)
and replaced by the next readable file of the folder, as `ImageFolder.__getitem__` does:
deterministic, never a crash in a worker.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from diffusionforge.data.augment import augment
from diffusionforge.data.images import ImageFolder


class _Rows:
    """`dataset.data` of a streaming set: decodes the rows asked for (previews read a few)."""

    def __init__(self, stream: FolderStream) -> None:
        self.stream = stream
        self.shape = (len(stream), *stream.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> Tensor:
        if isinstance(key, Tensor) and key.dim() == 0:
            key = int(key)
        if isinstance(key, int):
            return self.stream.decode(key)
        rows = range(len(self))[key] if isinstance(key, slice) else [int(i) for i in key]
        return torch.stack([self.stream.decode(i) for i in rows])


class FolderStream:
    """Images of an `ImageFolder` (scanned, not decoded), decoded when a batch asks for them."""

    def __init__(
        self, folder: ImageFolder, *, seed: int = 0, augment: str = "none", jitter: float = 0.0
    ) -> None:
        self.folder = folder
        self.seed, self.augment, self.jitter = seed, augment, jitter
        labelled = folder.num_classes > 1
        # one int64 per file: the only per-example memory besides the folder's list of paths
        self.labels = (
            torch.tensor(folder.samples.labels().tolist(), dtype=torch.long) if labelled else None
        )
        self.classes = list(folder.classes) if labelled else []
        self.cond = self.null_cond = None
        self.shape = (folder.channels, folder.size, folder.size)
        self.data = _Rows(self)
        self._broken: set[int] = set()  # indices that failed to decode (reported once)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.labels is not None else 0

    def __len__(self) -> int:
        return len(self.folder)

    def decode(self, index: int) -> Tensor:
        """Image `index` (C, H, W) in [-1, 1], or the next readable one if it fails to decode."""
        n = len(self.folder)
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                return self.folder.load(i)
            except Exception as e:  # changed on disk since the scan: report, take the next
                if i not in self._broken:  # once per process, not once per epoch
                    self._broken.add(i)
                    self.folder._skip(self.folder.samples[i][0], f"failed at load time ({e})")
        raise ValueError(f"{self.folder.root}: no image could be read any more")

    def batch(self, indices: Tensor, epoch: int) -> Tensor:
        x = torch.stack([self.decode(int(i)) for i in indices])  # (B, C, H, W)
        return augment(x, indices, epoch, self.seed, kind=self.augment, jitter=self.jitter)


class _Keyed:
    """Map-style view for DataLoader: key (step, shard, epoch, indices) -> (key, batch)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key):
        step, shard, epoch, indices = key
        return key[:2], self.dataset.batch(torch.as_tensor(indices), epoch)


def _ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C and SIGTERM reach the whole process group: the trainer saves a checkpoint and
    stops between steps, which needs its workers alive until it closes the loader."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class BatchLoader:
    """Batches of the coming (step, shard) keys, decoded ahead by `workers` processes.

    `keys` yields (step, shard, epoch, indices) in the order the trainer asks for them; with
    workers = 0 each batch is decoded when asked (no process, no read-ahead)."""

    def __init__(self, dataset, keys: Iterable, workers: int, prefetch: int = 2) -> None:
        self.dataset, self.workers = dataset, workers
        self._keys = iter(keys)
        self._it: Iterator | None = None
        if workers > 0:
            loader = DataLoader(
                _Keyed(dataset),
                batch_size=None,
                sampler=self._keys,
                num_workers=workers,
                prefetch_factor=prefetch,
                worker_init_fn=_ignore_stop_signals,
            )
            self._it = iter(loader)

    def next(self, step: int, shard: int) -> Tensor:
        if self._it is None:
            key = next(self._keys)
            got, x = key[:2], self.dataset.batch(torch.as_tensor(key[3]), key[2])
        else:
            got, x = next(self._it)
            got = tuple(int(v) for v in got)
        if got != (step, shard):  # the trainer and the key order disagree: a bug, say so
            raise RuntimeError(f"batch loader: expected step {step} shard {shard}, got {got}")
        return x

    def close(self) -> None:
        self._it = None  # DataLoader's iterator shuts its workers down when collected
