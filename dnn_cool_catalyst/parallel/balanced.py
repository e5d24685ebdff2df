"""Class-balanced global batches: the epoch's order is drawn from per-row weights (or a negatives ratio) with a
private generator seeded by ``seed + epoch``, the same on every DDP rank, then sliced per rank exactly as
:class:`~dnn_cool_catalyst.parallel.sampler.ShardedBatchSampler` slices a shuffled epoch.

Example:
    >>> draw = NegativesDraw(positives=[0, 1], negatives=[2, 3, 4, 5, 6, 7], others=[8], ratio=2)
    >>> sampler = BalancedBatchSampler(draw, batch_size=4, seed=0)
    >>> len(sampler), draw.epoch_size
    (2, 7)
    >>> order = [i for batch in sampler for i, _ in batch]
    >>> sorted(i for i in order if i < 2), len([i for i in order if 2 <= i < 8]), order.count(8)
    ([0, 1], 4, 1)
"""
from __future__ import annotations

from typing import Sequence

import torch

from .sampler import ShardedBatchSampler

_SALT = 0x5EED  # keeps the balanced draw of an epoch apart from the plain shuffle of the same seed


class WeightedDraw:
    """An epoch of ``len(weights)`` positions drawn with replacement, each with probability proportional to its
    weight."""

    def __init__(self, weights: torch.Tensor):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.epoch_size = int(self.weights.numel())

    def order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, self.epoch_size, replacement=True, generator=generator)


class NegativesDraw:
    """An epoch of every positive, ``ratio`` negatives per positive drawn without replacement (all negatives when
    there are fewer), and every row in ``others`` (unlabelled rows), shuffled."""

    def __init__(self, positives: Sequence[int], negatives: Sequence[int], others: Sequence[int], ratio: float):
        self.positives = torch.as_tensor(list(positives), dtype=torch.long)
        self.negatives = torch.as_tensor(list(negatives), dtype=torch.long)
        self.others = torch.as_tensor(list(others), dtype=torch.long)
        self.num_negatives = min(len(self.negatives), int(round(ratio * len(self.positives))))
        self.epoch_size = len(self.positives) + self.num_negatives + len(self.others)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        chosen = self.negatives[torch.randperm(len(self.negatives), generator=generator)[:self.num_negatives]]
        rows = torch.cat([self.positives, chosen, self.others])
        return rows[torch.randperm(len(rows), generator=generator)]


class BalancedBatchSampler(ShardedBatchSampler):
    """A :class:`ShardedBatchSampler` whose epoch order comes from ``draw`` (:class:`WeightedDraw` or
    :class:`NegativesDraw`) instead of a permutation; positions index the split, as for the plain sampler."""

    def __init__(self, draw, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        super().__init__(draw.epoch_size, batch_size, shuffle=True, seed=seed, rank=rank, world_size=world_size,
                         drop_last=drop_last)
        self.draw = draw

    def shard(self, rank: int, world_size: int) -> "BalancedBatchSampler":
        sampler = BalancedBatchSampler(self.draw, self.global_batch_size, self.seed, rank, world_size,
                                       self.drop_last)
        sampler.epoch = self.epoch
        return sampler

    def epoch_order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed((self.seed + self.epoch) * 65_537 + _SALT)
        return self.draw.order(generator)
