"""Which examples each training step reads, and the loader that decodes them ahead of time.

The order is a function of (seed, epoch) only: epoch e is the permutation drawn from
mix_seed(seed, e, 0x5EED), split into global batches of train.batch_size and micro-batches of
`micro` examples (one per process and accumulation step: `shard`). A run resumed at step s
reads exactly what an uninterrupted run reads at step s, and a streaming folder's `BatchLoader`
(data/stream.py) walks the same keys ahead of the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from diffusionforge.data.augment import mix_seed
from diffusionforge.data.stream import BatchLoader


class Order:
    """`indices(step, shard) -> (epoch, indices of micro-batch `shard` of `step`)`."""

    def __init__(self, n: int, batch_size: int, micro: int, seed: int, shuffle: bool) -> None:
        self.n, self.batch_size, self.micro = n, batch_size, micro
        self.seed, self.shuffle = seed, shuffle
        self.batches_per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.arange(0)

    def indices(self, step: int, shard: int) -> tuple[int, Tensor]:
        epoch, b = divmod(step, self.batches_per_epoch)
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5EED))
            self._perm = (
                torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
            )
            self._epoch = epoch
        start = b * self.batch_size + shard * self.micro
        return epoch, self._perm[start : start + self.micro]


def keys(order: Order, start: int, stop: int, shards: list[int]) -> Iterator[tuple]:
    """(step, shard, epoch, indices) for steps start..stop-1 and this process's shards, in the
    order the trainer asks for them (its own Order: the trainer's stays in the main process)."""
    own = Order(order.n, order.batch_size, order.micro, order.seed, order.shuffle)
    for step in range(start, stop):
        for shard in shards:
            epoch, idx = own.indices(step, shard)
            yield step, shard, epoch, idx.tolist()


class Batches:
    """The trainer's source of micro-batches: indexes an in-memory dataset directly; a
    streaming one (it has `decode`) goes through a BatchLoader with data.num_workers
    processes, started at the first step asked for (after a resume: the resumed step)."""

    def __init__(self, dataset, order: Order, shards: list[int], stop: int, workers: int) -> None:
        self.dataset, self.order, self.shards = dataset, order, shards
        self.stop, self.workers = stop, workers
        self.streaming = hasattr(dataset, "decode")
        self._loader: BatchLoader | None = None

    def get(self, step: int, shard: int) -> tuple[Tensor, Tensor]:
        """(examples (micro, ...), their indices) of micro-batch `shard` of `step`."""
        epoch, idx = self.order.indices(step, shard)
        if not self.streaming:
            return self.dataset.batch(idx, epoch), idx
        if self._loader is None:
            stream = keys(self.order, step, self.stop, self.shards)
            self._loader = BatchLoader(self.dataset, stream, self.workers)
        return self._loader.next(step, shard), idx

    def close(self) -> None:
        if self._loader is not None:
            self._loader.close()
            self._loader = None
