"""torch.distributed collectives that Catalyst 22.4 gets wrong, and the device our own collectives run on.

Patches (name -> defect):

``distributed_all_gather``
    ``catalyst.utils.distributed.all_gather`` moves its byte buffers to ``"cuda"`` unconditionally, so every
    loader-based metric (AUC, confusion matrix, precision/recall/F1 statistics, segmentation) crashes under a CPU
    (gloo) process group. Five Catalyst modules imported the name directly; all of them are re-pointed.
    Fails without it: ``tests/test_compat.py::test_all_gather_under_cpu_ddp``.

:func:`collective_device` is public: ``parallel/distributed.py`` runs its own collectives on it.

Example (one process, no process group: every collective is the identity):
    >>> all_gather({"a": 1})
    [{'a': 1}]
"""
from __future__ import annotations

import importlib
import inspect
import pickle
import sys
from typing import Any, Callable, Dict, List

import torch
import torch.distributed as dist

from ._patching import ORIGINALS, is_ours, mark

__all__ = ["all_gather", "collective_device", "PATCHES"]


# ---------------------------------------------------------------------------------------------------------------
# distributed_all_gather: catalyst.utils.distributed.all_gather hard-codes "cuda" (Catalyst 22.4, any torch): loader
# metrics crash under a gloo (CPU) process group. The replacement picks the device from the process group's backend.
# Without it tests/test_compat.py::test_all_gather_under_cpu_ddp fails (the AUC of a CPU DDP run raises).
# ---------------------------------------------------------------------------------------------------------------
_ALL_GATHER_IMPORTERS = (
    "catalyst.utils",
    "catalyst.metrics._auc",
    "catalyst.metrics._classification",
    "catalyst.metrics._confusion_matrix",
    "catalyst.metrics._segmentation",
)


def collective_device(data: Any) -> torch.device:
    """The device on which the default process group can run collectives.

    CPU whenever the backend supports it (gloo, mpi, ucc, mixed "cpu:gloo,cuda:nccl"); otherwise the data's own device
    when the backend accepts it, else the backend's device type on the current device index (nccl -> cuda:N).
    """
    backend = str(dist.get_backend()).lower()
    capabilities = getattr(dist.Backend, "backend_capability", {})
    if backend in capabilities:
        devices = list(capabilities[backend])
    elif ":" in backend:  # "cpu:gloo,cuda:nccl"
        devices = [part.split(":", 1)[0].strip() for part in backend.split(",")]
    else:
        devices = ["cpu"]
    if "cpu" in devices:
        return torch.device("cpu")
    if torch.is_tensor(data) and data.device.type in devices:
        return data.device
    device_type = devices[0]
    module = getattr(torch, device_type, None)
    if module is not None and hasattr(module, "current_device"):
        return torch.device(device_type, module.current_device())
    return torch.device(device_type)


def all_gather(data: Any) -> List[Any]:
    """Gather any picklable object from every process; returns the list ordered by rank.

    Drop-in replacement for ``catalyst.utils.distributed.all_gather``. Tensors come back on the device they were
    pickled from (as in Catalyst's version).
    """
    if not dist.is_available() or not dist.is_initialized():
        return [data]
    world_size = dist.get_world_size()
    if world_size == 1:
        return [data]

    device = collective_device(data)
    payload = torch.frombuffer(bytearray(pickle.dumps(data)), dtype=torch.uint8).to(device)
    local_size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(size.item()) for size in sizes]
    max_size = max(sizes)
    # all_gather needs equal shapes: pad every buffer to the longest one
    if payload.numel() < max_size:
        padding = torch.zeros(max_size - payload.numel(), dtype=torch.uint8, device=device)
        payload = torch.cat([payload, padding])
    buffers = [torch.empty(max_size, dtype=torch.uint8, device=device) for _ in range(world_size)]
    dist.all_gather(buffers, payload)
    return [pickle.loads(buffer[:size].cpu().numpy().tobytes()) for buffer, size in zip(buffers, sizes)]


def _patch_distributed_all_gather() -> bool:
    import catalyst.utils.distributed as catalyst_dist

    current = catalyst_dist.all_gather
    if is_ours(current):
        return False
    try:
        source = inspect.getsource(current)
    except (OSError, TypeError):
        source = ""
    if '"cuda"' not in source and "'cuda'" not in source:
        return False  # a fixed Catalyst: nothing to do

    replacement = mark(all_gather, current)
    ORIGINALS["distributed_all_gather"] = current
    catalyst_dist.all_gather = replacement  # also serves ddp_reduce(..., mode="all"), a global lookup
    for name in _ALL_GATHER_IMPORTERS:
        try:
            importlib.import_module(name)
        except ImportError:  # optional extras
            continue
    for name, module in list(sys.modules.items()):
        if name.startswith("catalyst") and module is not None and getattr(module, "all_gather", None) is current:
            module.all_gather = replacement
    return True


PATCHES: Dict[str, Callable[[], bool]] = {
    "distributed_all_gather": _patch_distributed_all_gather,
}
