"""The Catalyst engine a fit runs on, the scheduler callback that steps its learning rate, and what a runner asks
of an engine (is it DDP, which rank is this process).

Builders, not patches: they call :func:`dnn_cool_catalyst.compat.apply` and rely on its fixes.

Example:
    >>> scheduler_callbacks(None)
    {}
    >>> is_ddp(None), global_rank(None)
    (False, 0)
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import torch
import torch.distributed as dist
from catalyst.callbacks.scheduler import SchedulerCallback
from catalyst.contrib.schedulers import BatchScheduler
from catalyst.engines.torch import CPUEngine, DistributedDataParallelEngine, GPUEngine
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .. import compat
from ..compat.accelerate import reset_conflicting_state

__all__ = ["default_engine", "scheduler_callbacks", "is_ddp", "global_rank"]


def default_engine(device: Optional[Union[str, torch.device]] = None, **engine_kwargs):
    """An explicit Catalyst engine: ``CPUEngine`` on CPU, ``GPUEngine`` on CUDA.

    Always pass an engine to ``runner.train``: left alone, Catalyst 22.4 builds ``GPUEngine(fp16=...)``, which
    accelerate rejects on every CUDA machine. ``device`` is ``None`` (CUDA when available, else CPU), ``"cpu"``,
    ``"cuda"`` or ``"cuda:N"`` (selects GPU ``N`` as the current device). ``engine_kwargs`` go to
    ``accelerate.Accelerator`` (e.g. ``mixed_precision="bf16"``). Calls :func:`dnn_cool_catalyst.compat.apply`
    first, and resets accelerate's shared (non-distributed) state when an earlier engine left it on another device
    or precision.
    """
    compat.apply()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(device)!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available")
    precision = engine_kwargs.get("mixed_precision") or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    reset_conflicting_state(device.type, str(getattr(precision, "value", precision)).lower())
    if device.type == "cpu":
        return CPUEngine(**engine_kwargs)
    if device.index is not None:
        torch.cuda.set_device(device.index)
    return GPUEngine(**engine_kwargs)


# torch schedulers that are sized in optimizer steps, i.e. meant to be stepped after every batch
_PER_BATCH_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


def scheduler_callbacks(
    scheduler: Any,
    mode: Optional[str] = None,
    loader_key: Optional[str] = None,
    metric_key: Optional[str] = None,
) -> Dict[str, Any]:
    """The ``{"_scheduler": SchedulerCallback}`` entry to add to ``callbacks`` for ``scheduler`` (``{}`` for None).

    ``mode`` defaults to ``"batch"`` for ``OneCycleLR``/``CyclicLR`` and Catalyst's ``BatchScheduler`` s (which
    are sized in optimizer steps) and ``"epoch"`` otherwise. ``ReduceLROnPlateau`` needs ``loader_key`` and
    ``metric_key`` (the value of ``runner.epoch_metrics[loader_key][metric_key]`` is passed to its ``step``);
    other schedulers ignore them, so they are only forwarded for ``ReduceLROnPlateau`` (Catalyst asserts that both
    or neither are given).
    """
    if scheduler is None:
        return {}
    if isinstance(scheduler, dict):
        raise TypeError("pass one scheduler at a time; use SchedulerCallback(scheduler_key=...) for dicts")
    if mode is None:
        per_batch = isinstance(scheduler, (BatchScheduler,) + _PER_BATCH_SCHEDULERS)
        mode = "batch" if per_batch else "epoch"
    if isinstance(scheduler, ReduceLROnPlateau):
        if loader_key is None or metric_key is None:
            raise ValueError("ReduceLROnPlateau needs loader_key and metric_key")
        return {"_scheduler": SchedulerCallback(mode=mode, loader_key=loader_key, metric_key=metric_key)}
    return {"_scheduler": SchedulerCallback(mode=mode)}


def is_ddp(engine) -> bool:
    """Whether ``engine`` runs one process per worker (``DistributedDataParallelEngine``: ``engine.spawn``)."""
    return isinstance(engine, DistributedDataParallelEngine)


def global_rank(engine=None) -> int:
    """This process's rank among all the run's processes: the process group's rank inside one; outside one, the
    rank of the first worker ``engine`` starts on this node (``workers_dist_rank``: 0 on node 0 and for every
    engine that is not DDP), i.e. the rank the launching process stands for."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    # Catalyst keeps workers_dist_rank only in this private attribute of DistributedDataParallelEngine
    return getattr(engine, "_workers_global_rank", 0)
