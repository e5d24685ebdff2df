"""Small helpers over ``torch.distributed`` that are no-ops in a single process.

Every function works without a process group (one process: rank 0 of a world of 1), so callers never branch on
"is this distributed?" themselves. Collectives run on the device the process group supports (CPU tensors for gloo,
CUDA for nccl; see :func:`dnn_cool_catalyst.compat.distributed.collective_device`) and results come back on the
caller's device.

Example:
    >>> import torch
    >>> world()
    (0, 1)
    >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    >>> gather_samples({"x": torch.tensor([5.0, 6.0, 7.0])}, key=torch.tensor([2, 0, 1]))["x"]
    tensor([6., 7., 5.])
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist

from ..compat.distributed import all_gather, collective_device


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def world_size() -> int:
    return world()[1]


def is_rank_zero() -> bool:
    """Whether this process should write files (logs, checkpoints, artifacts): rank 0, or no process group."""
    return world()[0] == 0


def _all_reduce(tensor: torch.Tensor, op) -> torch.Tensor:
    if world_size() == 1:
        return tensor
    buffer = tensor.detach().to(collective_device(tensor), copy=True)
    dist.all_reduce(buffer, op=op)
    return buffer.to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over all processes, returned on ``tensor``'s device (``tensor`` itself is not changed)."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over all processes, on ``tensor``'s device."""
    return _all_reduce(tensor, dist.ReduceOp.MAX)


def gather_samples(fields: Dict[str, torch.Tensor], key: torch.Tensor,
                   valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Every process's samples, in ``key`` order, each sample once; the same result on every rank.

    ``fields`` hold one row per local sample (dim 0), ``key`` a global position per row (e.g. the position in
    the split) and ``valid`` marks real rows: padding rows are dropped, and a key seen twice (a sampler that pads
    with duplicates without marking them, like accelerate's ``even_batches``) is kept once, from the lowest rank.
    Returned tensors are on the CPU. Meant for loader or inference ends, not for the training step.
    """
    keep = torch.ones_like(key, dtype=torch.bool) if valid is None else valid.bool()
    local = {name: value.detach()[keep.to(value.device)].cpu() for name, value in fields.items()}
    local_key = key[keep.to(key.device)].cpu()
    parts = all_gather((local_key, local)) if world_size() > 1 else [(local_key, local)]
    keys = torch.cat([part[0] for part in parts])
    # A stable sort over rank-ordered rows: among duplicates of a key the lowest rank's row comes first.
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    order = order[first]
    return {name: torch.cat([part[1][name] for part in parts])[order] for name in fields}
