"""accelerate defects that Catalyst 22.4 runs into (accelerate 0.28-0.33 and 1.x), and the shared-state reset.

Patches (name -> defect; the test named fails without the patch):

``engine_xla_enum``
    ``Engine.mean_reduce_ddp_metrics`` reads ``DistributedType.TPU``, deprecated in accelerate 0.27: every
    ``BatchMetricCallback`` (loss, accuracy, ...) emits a ``FutureWarning`` at each loader end (an error under
    ``-W error``), and accelerate 1.x removed the member altogether.
    Test: ``tests/test_compat.py::test_engine_mean_reduce_without_future_warning``.
``accelerate_lomo_lookup``
    accelerate 0.31+ calls ``is_lomo_available()`` - an ``importlib`` search of ``sys.path`` for the ``lomo_optim``
    package, about a millisecond - in every ``optimizer.step()`` and ``accelerator.backward()``: a few percent of
    a small model's training step. The answer cannot change during a run, so it is looked up once.
    Test: ``tests/test_datapath.py::test_accelerate_package_lookup_runs_once_per_process``.
``ddp_cpu_processes``
    accelerate 1.x (not 0.28-0.33) only treats a process group as ``MULTI_CPU`` when ``Accelerator(cpu=True)``;
    ``DistributedDataParallelEngine.setup`` builds a plain ``Accelerator()``, so on a machine without CUDA every
    spawned process sees ``num_processes == 1`` and trains on the whole data as if alone. ``cpu=True`` is passed
    when no CUDA device exists (and the caller did not choose).
    Test: ``tests/test_compat_accelerate.py::test_cpu_ddp_processes_see_the_process_group``.
``accelerate_zero_grad_signature``
    ``AcceleratedOptimizer.zero_grad`` builds ``inspect.signature(self.optimizer.zero_grad)`` on every call (every
    training step), ~0.1 ms: 2-3% of a small model's step. The answer (does it take ``set_to_none``?) is kept per
    ``zero_grad`` function; the behaviour is accelerate's.
    Test: ``tests/test_compat_accelerate.py::test_zero_grad_asks_the_signature_once_and_behaves_as_accelerate``.

Not a patch: :func:`reset_conflicting_state` forgets accelerate's process-wide state when it contradicts the engine
about to be built (``training/engine.py``'s ``default_engine`` calls it).
Test: ``tests/test_compat.py::test_default_engine_resets_conflicting_accelerate_state``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

import torch
import torch.distributed as dist

from ._patching import ORIGINALS, is_ours, mark

__all__ = ["reset_conflicting_state", "PATCHES"]


# ---------------------------------------------------------------------------------------------------------------
# engine_xla_enum: Engine.mean_reduce_ddp_metrics reads DistributedType.TPU (deprecated in accelerate 0.27,
# FutureWarning on every loader end on 0.27-0.33, AttributeError on 1.x). Same logic, reading XLA where it exists.
# Without it tests/test_compat.py::test_engine_mean_reduce_without_future_warning fails.
# ---------------------------------------------------------------------------------------------------------------
def _patch_engine_xla_enum() -> bool:
    from accelerate.state import DistributedType
    from catalyst.core.engine import Engine
    from catalyst.utils.distributed import mean_reduce

    current = Engine.__dict__.get("mean_reduce_ddp_metrics")
    if current is None or is_ours(current):
        return False
    if "XLA" not in DistributedType.__members__ or ".TPU" not in inspect.getsource(current):
        return False  # old accelerate (TPU is the real member) or a fixed Catalyst

    def mean_reduce_ddp_metrics(self, metrics: Dict) -> Dict:
        """Syncs ``metrics`` over ``world_size`` in the distributed mode."""
        distributed_type = self.state.distributed_type
        if distributed_type in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
            return {
                key: mean_reduce(torch.as_tensor(value, device=self.device), world_size=self.state.num_processes)
                for key, value in metrics.items()
            }
        if distributed_type == DistributedType.XLA:
            return current(self, metrics)  # unchanged XLA branch (only reachable with torch_xla installed)
        return metrics

    ORIGINALS["engine_xla_enum"] = current
    Engine.mean_reduce_ddp_metrics = mark(mean_reduce_ddp_metrics, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# accelerate_lomo_lookup: accelerate looks for the lomo_optim package on sys.path in every optimizer step and backward
# (0.31+). Without it tests/test_datapath.py::test_accelerate_package_lookup_runs_once_per_process fails.
# ---------------------------------------------------------------------------------------------------------------
def _patch_accelerate_lomo_lookup() -> bool:
    import accelerate.accelerator as accelerator_module
    import accelerate.optimizer as optimizer_module

    current = getattr(optimizer_module, "is_lomo_available", None)
    if current is None or is_ours(current):
        return False
    answer = bool(current())

    def is_lomo_available() -> bool:
        return answer

    replacement = mark(is_lomo_available, current)
    ORIGINALS["accelerate_lomo_lookup"] = current
    for module in (optimizer_module, accelerator_module):
        if getattr(module, "is_lomo_available", None) is current:
            module.is_lomo_available = replacement
    return True


# ---------------------------------------------------------------------------------------------------------------
# ddp_cpu_processes: accelerate >= 1.0 makes a CPU process group MULTI_CPU only for Accelerator(cpu=True): Catalyst's
# DistributedDataParallelEngine.setup builds Accelerator() after init_process_group, so on a machine without CUDA
# every spawned process thinks it is alone (num_processes 1, process_index 0) and trains the whole data.
# Without it tests/test_compat_accelerate.py::test_cpu_ddp_processes_see_the_process_group fails (accelerate 1.x).
# ---------------------------------------------------------------------------------------------------------------
def _cpu_ddp_needs_cpu_flag() -> bool:
    import re

    from accelerate.state import PartialState

    prepare = getattr(PartialState, "_prepare_backend", None)
    try:
        source = inspect.getsource(prepare) if prepare is not None else ""
    except (OSError, TypeError):
        return False
    return re.search(r"distributed_type is None\s+and cpu\b", source) is not None


def _patch_ddp_cpu_processes() -> bool:
    from catalyst.engines.torch import DistributedDataParallelEngine

    current = DistributedDataParallelEngine.__dict__.get("setup")
    if current is None or is_ours(current) or not _cpu_ddp_needs_cpu_flag():
        return False

    def setup(self, local_rank: int, world_size: int):
        """Catalyst's setup, telling accelerate to use the CPU process group when there is no CUDA device."""
        if not torch.cuda.is_available() and "cpu" not in self._kwargs:
            self._kwargs = {**self._kwargs, "cpu": True}
        return current(self, local_rank, world_size)

    ORIGINALS["ddp_cpu_processes"] = current
    DistributedDataParallelEngine.setup = mark(setup, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# accelerate_zero_grad_signature: AcceleratedOptimizer.zero_grad inspects the wrapped optimizer's zero_grad signature
# on every step (0.28-1.x). Without it
# tests/test_compat_accelerate.py::test_zero_grad_asks_the_signature_once_and_behaves_as_accelerate fails.
# ---------------------------------------------------------------------------------------------------------------
_TAKES_SET_TO_NONE: Dict[Any, bool] = {}


def _takes_set_to_none(method: Callable) -> bool:
    key = getattr(method, "__func__", method)  # the function, not a bound method that would keep its optimizer
    known = _TAKES_SET_TO_NONE.get(key)
    if known is None:
        known = _TAKES_SET_TO_NONE[key] = "set_to_none" in inspect.signature(method).parameters
    return known


def _patch_accelerate_zero_grad_signature() -> bool:
    from accelerate.optimizer import AcceleratedOptimizer

    current = AcceleratedOptimizer.__dict__.get("zero_grad")
    if current is None or is_ours(current):
        return False
    try:
        if "inspect.signature(self.optimizer.zero_grad)" not in inspect.getsource(current):
            return False  # an accelerate that does something else: leave it
    except (OSError, TypeError):
        return False

    def zero_grad(self, set_to_none=None):
        """accelerate's zero_grad, with the signature question answered once per optimizer class."""
        if not self.gradient_state.sync_gradients:
            return
        if _takes_set_to_none(self.optimizer.zero_grad):
            self.optimizer.zero_grad(set_to_none=True if set_to_none is None else set_to_none)
        elif set_to_none is not None:
            raise ValueError("`set_to_none` for Optimizer.zero_grad` is not supported by this optimizer.")
        else:
            self.optimizer.zero_grad()

    ORIGINALS["accelerate_zero_grad_signature"] = current
    AcceleratedOptimizer.zero_grad = mark(zero_grad, current)
    return True


PATCHES: Dict[str, Callable[[], bool]] = {
    "engine_xla_enum": _patch_engine_xla_enum,
    "accelerate_lomo_lookup": _patch_accelerate_lomo_lookup,
    "ddp_cpu_processes": _patch_ddp_cpu_processes,
    "accelerate_zero_grad_signature": _patch_accelerate_zero_grad_signature,
}


# ---------------------------------------------------------------------------------------------------------------
# Not a patch: accelerate's process-wide state, reset for the engine about to be built
# ---------------------------------------------------------------------------------------------------------------
def reset_conflicting_state(device_type: str, mixed_precision: str) -> bool:
    """Forget accelerate's process-wide state when it contradicts the engine about to be built.

    Every Catalyst engine is an ``accelerate.Accelerator``, and all of them share one Borg-style state that is set by
    the first one created in the process: afterwards ``Accelerator(cpu=True)`` raises ``ValueError`` when that state
    is on CUDA, a later GPU engine silently stays on the CPU, and a different ``mixed_precision`` raises
    ``ValueError``. A non-distributed state is cheap to rebuild, so it is reset; a distributed one is never touched.
    """
    from accelerate.state import AcceleratorState, DistributedType, PartialState

    shared = PartialState._shared_state
    if not shared:
        return False
    if shared.get("distributed_type", DistributedType.NO) != DistributedType.NO or (
        dist.is_available() and dist.is_initialized()
    ):
        return False
    state_device = shared.get("device")
    state_precision = AcceleratorState._shared_state.get("_mixed_precision")
    conflict = (state_device is not None and torch.device(state_device).type != device_type) or (
        state_precision is not None and str(state_precision) != mixed_precision
    )
    if conflict:
        AcceleratorState._reset_state(reset_partial_state=True)
    return conflict
