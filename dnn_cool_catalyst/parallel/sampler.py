"""Global batches, sliced per process, with the padding marked.

Distributed training is only equivalent to a single-process run when every *global* batch holds the same samples
as the single-process batch of the same step. :class:`ShardedBatchSampler` draws the global batch order itself
(one seeded permutation per epoch, the same on every rank) and gives each rank its contiguous slice of every
global batch. Slices are padded to equal length (every rank must run the same number of forward/backward passes
with batches of the same size) and the padding is *marked*: :class:`PaddingMarkedSubset` turns a padding key into
an item whose labels are all unavailable and whose ``"valid"`` flag is False, so losses, metrics and gathers
exclude it without any special case.

Example:
    >>> sampler = ShardedBatchSampler(5, batch_size=4)
    >>> [[i for i, _ in batch] for batch in sampler]
    [[0, 1, 2, 3], [4]]
    >>> [batch for batch in sampler.shard(rank=1, world_size=2)]
    [[(2, True), (3, True)], [(4, False)]]
"""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler, Subset
from torch.utils.data._utils.collate import default_collate

from ..tasks.base import broadcast_to_elements

Key = Tuple[int, bool]  # (position in the dataset, whether it is a real sample rather than padding)


def epoch_order(num_samples: int, seed: int) -> torch.Tensor:
    """The order (a LongTensor) ``DataLoader(shuffle=True)`` yields right after ``torch.manual_seed(seed)``, drawn from a
    private generator.

    Catalyst seeds the global RNG with ``seed + epoch`` before each loader (``seed + rank + epoch`` under DDP), and
    a shuffling DataLoader then draws two numbers from it: its workers' base seed, then its sampler's seed. Drawing
    the same two numbers from a private generator keeps single-process runs exactly as they were before this
    sampler existed, while every DDP rank agrees on the order and the global RNG is left alone.
    """
    generator = torch.Generator().manual_seed(int(seed))
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the loader iterator's base seed
    sampler_seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator))
    return torch.randperm(num_samples, generator=torch.Generator().manual_seed(sampler_seed))


def epoch_permutation(num_samples: int, seed: int) -> List[int]:
    """:func:`epoch_order` as a list of ints."""
    return epoch_order(num_samples, seed).tolist()


class ShardedBatchSampler(Sampler[List[Key]]):
    """Yields this rank's slice of every global batch of ``batch_size`` positions in ``range(num_samples)``.

    A global batch of ``n`` samples gives each of the ``world_size`` ranks ``ceil(n / world_size)`` keys: rank
    ``r`` takes positions ``[r*k, (r+1)*k)`` of the global batch, topped up with padding keys
    ``(first position, False)``. With ``shuffle``, the global order is :func:`epoch_permutation` of
    ``seed + epoch`` (call :meth:`set_epoch` before each epoch, as the runner does).
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside the world of {world_size} processes")
        self.num_samples, self.global_batch_size = int(num_samples), int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        """Keys per rank in a full global batch (what Catalyst reads as the loader's batch size)."""
        return math.ceil(self.global_batch_size / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> "ShardedBatchSampler":
        """The same global batches, sliced for ``rank`` of ``world_size``."""
        sampler = ShardedBatchSampler(self.num_samples, self.global_batch_size, self.shuffle, self.seed, rank,
                                      world_size, self.drop_last)
        sampler.epoch = self.epoch
        return sampler

    def epoch_order(self) -> torch.Tensor:
        """This epoch's global order of positions (a LongTensor): a seeded permutation, or ``0..n-1``."""
        if self.shuffle:
            return epoch_order(self.num_samples, self.seed + self.epoch)
        return torch.arange(self.num_samples)

    def _global_slices(self, order) -> Iterator:
        for start in range(0, len(order), self.global_batch_size):
            batch = order[start:start + self.global_batch_size]
            if self.drop_last and len(batch) < self.global_batch_size:
                return
            yield batch

    def global_batches(self) -> Iterator[List[int]]:
        return self._global_slices(self.epoch_order().tolist())

    def __iter__(self) -> Iterator[List[Key]]:
        for batch in self.global_batches():
            k = math.ceil(len(batch) / self.world_size)
            part = batch[self.rank * k:(self.rank + 1) * k]
            yield [(i, True) for i in part] + [(batch[0], False)] * (k - len(part))

    def index_batches(self) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The batches of iterating the sampler as ``(positions, valid)``: a LongTensor of positions and, where a
        batch holds padding, a BoolTensor marking its real samples (None when all are real). Same batches, same
        order, without a Python tuple per sample (what gathering whole batches from tensors wants).

        Example:
            >>> [(p.tolist(), v if v is None else v.tolist())
            ...  for p, v in ShardedBatchSampler(5, batch_size=4).shard(rank=1, world_size=2).index_batches()]
            [([2, 3], None), ([4], [False])]
        """
        for batch in self._global_slices(self.epoch_order()):
            k = math.ceil(len(batch) / self.world_size)
            part = batch[self.rank * k:(self.rank + 1) * k]
            real = len(part)
            if real == k:
                yield part, None
            else:  # padded with the global batch's first position, marked not real
                yield torch.cat([part, batch[:1].expand(k - real)]), torch.arange(k) < real

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class PaddingMarkedSubset(Subset):
    """A ``Subset`` of a dataset of flow items (``{"inputs", "targets", "available", "index"}``) whose items
    also carry ``"valid"``.

    ``subset[(i, False)]`` is item ``i`` as padding: ``valid`` False and every label unavailable, so it has no
    weight anywhere. Plain integer keys and ``(i, True)`` are real samples. Being a ``Subset``, code that unwraps
    subsets to reach the underlying dataset (``batch["index"]`` indexes that one) keeps working.
    """

    def __getitem__(self, key) -> dict:
        position, real = key if isinstance(key, tuple) else (key, True)
        item = dict(self.dataset[self.indices[position]])
        item["valid"] = torch.tensor(bool(real))
        if not real:
            item["available"] = {name: torch.zeros_like(mask) for name, mask in item["available"].items()}
        return item

    def __getitems__(self, keys) -> list:
        return [self[key] for key in keys]


class BatchedSubset(PaddingMarkedSubset):
    """A :class:`PaddingMarkedSubset` that fetches a whole batch of keys at once: ``__getitems__`` returns the
    collated batch dict (through the dataset's ``batch(positions)`` when it has one, e.g.
    :class:`~dnn_cool_catalyst.data.FlowDataset`; item by item otherwise). Load it with
    ``collate_fn=collate_batch``, which passes that dict through.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> from dnn_cool_catalyst.data import Converters, FlowDataset
        >>> import pandas as pd
        >>> data = Converters().build(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 0, 1]}), "x", "y")
        >>> subset = BatchedSubset(FlowDataset(data), [2, 0, 1])
        >>> batch = subset.__getitems__([(0, True), (1, True), (0, False)])
        >>> batch["index"].tolist(), batch["valid"].tolist(), batch["available"]["y"].tolist()
        ([2, 0, 2], [True, True, False], [True, True, False])
    """

    def __getitems__(self, keys) -> dict:
        positions, real = split_keys(keys)
        indices = self.indices
        # A split's int64 array (the runner's splits) gives its positions as Python ints, as a list would.
        positions = indices[positions].tolist() if isinstance(indices, np.ndarray) else [indices[p] for p in positions]
        fetch = getattr(self.dataset, "batch", None)
        if callable(fetch):
            batch = dict(fetch(positions))
        else:
            batch = dict(default_collate([self.dataset[i] for i in positions]))
        batch["valid"] = torch.tensor(real, dtype=torch.bool)
        return mark_padding(batch, real)


def split_keys(keys) -> Tuple[List[int], List[bool]]:
    """Sampler keys (``(position, real)`` or plain positions) -> ``(positions, real)``."""
    if keys and all(type(key) is tuple for key in keys):  # the samplers' own keys: unzipped in C
        positions, real = zip(*keys)
        return list(positions), list(real)
    positions, real = [], []
    for key in keys:
        position, is_real = key if isinstance(key, tuple) else (key, True)
        positions.append(int(position))
        real.append(bool(is_real))
    return positions, real


def mark_padding(batch: dict, real: List[bool]) -> dict:
    """Padding rows (DDP only) have no label anywhere: ``available`` is cleared where ``batch["valid"]`` is
    False. A batch without padding is returned as it is."""
    if not all(real):
        valid = batch["valid"]
        batch["available"] = {name: mask & broadcast_to_elements(valid, mask)
                              for name, mask in batch["available"].items()}
    return batch


def to_device(batch, device, non_blocking: bool = False):
    """``batch`` (nested dicts of tensors) with every tensor on ``device``; other values as they are."""
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch.to(device, non_blocking=non_blocking) if isinstance(batch, torch.Tensor) else batch


def collate_batch(batch):
    """The collate function of loaders over :class:`BatchedSubset`: its batches are already collated."""
    return batch if isinstance(batch, dict) else default_collate(batch)


def reshard_loader(loader, rank: int, world_size: int):
    """A copy of a loader built on :class:`ShardedBatchSampler` that yields ``rank``'s slices; ``None`` when
    ``loader`` is not built that way."""
    from torch.utils.data import DataLoader

    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, ShardedBatchSampler):
        return None
    return DataLoader(loader.dataset, batch_sampler=sampler.shard(rank, world_size), num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
