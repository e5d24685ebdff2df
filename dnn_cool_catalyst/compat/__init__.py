"""Runtime fixes for Catalyst 22.4 on torch >= 2 and accelerate 0.28-0.33 and 1.x.

Catalyst 22.4 is the last Catalyst release; on today's stack a few of its code paths are broken. Each fix below is a
small named function with a guard, so :func:`apply` can be called any number of times (it changes nothing the second
time) and a fix is skipped where the installed Catalyst does not need it. Nothing is patched on import: the runner
calls :func:`apply` before it builds an engine, and again inside every process that
``DistributedDataParallelEngine.spawn`` starts (``mp.spawn`` children import Catalyst afresh, unpatched; e.g. first
thing in an overridden ``_run_local``). :func:`default_engine` calls it too.

Patches (name -> defect):

``dataparallel_prepare_model``
    ``DataParallelEngine.prepare_model(self, model)`` does not accept the ``device_placement`` keyword that
    ``Accelerator.prepare`` passes to it (``_prepare_one``; seen on accelerate 0.33, reported for 0.28-0.33), so
    ``engine.prepare(model)`` - called by every run - raises ``TypeError``. It also wrapped an already wrapped model
    a second time (``predict_loader`` after ``train``).
``distributed_all_gather``
    ``catalyst.utils.distributed.all_gather`` moves its byte buffers to ``"cuda"`` unconditionally, so every
    loader-based metric (AUC, confusion matrix, precision/recall/F1 statistics, segmentation) crashes under a CPU
    (gloo) process group. Five Catalyst modules imported the name directly; all of them are re-pointed.
``scheduler_recognition``
    ``catalyst.typing.TorchScheduler`` is ``(_LRScheduler, ReduceLROnPlateau)``. Since torch 2.0 the built-in
    schedulers derive from ``LRScheduler`` and ``_LRScheduler`` is only a deprecated subclass, so
    ``SupervisedRunner`` no longer recognises ``StepLR``/``OneCycleLR``/... and never adds a ``SchedulerCallback``:
    the learning rate silently never changes (only a "No ISchedulerCallback" warning is printed).
``engine_xla_enum``
    ``Engine.mean_reduce_ddp_metrics`` reads ``DistributedType.TPU``, deprecated in accelerate 0.27: every
    ``BatchMetricCallback`` (loss, accuracy, ...) emits a ``FutureWarning`` at each loader end (an error under
    ``-W error``), and accelerate 1.x removed the member altogether.
``checkpoint_unpack_wrapped``
    ``unpack_checkpoint`` calls ``load_state_dict`` on ``runner.model`` as it is, i.e. on the ``DataParallel`` /
    ``DistributedDataParallel`` wrapper, while ``pack_checkpoint`` saved the unwrapped module's state, so
    ``CheckpointCallback(resume_runner=...)`` fails with missing ``module.*`` keys under DP and DDP.
``checkpoint_best_copy``
    ``CheckpointCallback`` (with ``minimize`` set, as ``train(valid_metric=..., minimize_valid_metric=...)`` builds
    it) re-saves the *live* ``runner.model`` as ``<mode>.best.pth`` every epoch, so that file always holds the last
    epoch's weights; only ``<mode>.<epoch>.pth`` / ``storage.json`` name the best one. The best epoch's file is
    copied instead. Only callbacks constructed after :func:`apply` get the fix.
``accelerate_lomo_lookup``
    accelerate 0.31+ calls ``is_lomo_available()`` - an ``importlib`` search of ``sys.path`` for the ``lomo_optim``
    package, about a millisecond - in every ``optimizer.step()`` and ``accelerator.backward()``: a few percent of
    a small model's training step. The answer cannot change during a run, so it is looked up once.
``ddp_cpu_processes``
    accelerate 1.x (not 0.28-0.33) only treats a process group as ``MULTI_CPU`` when ``Accelerator(cpu=True)``;
    ``DistributedDataParallelEngine.setup`` builds a plain ``Accelerator()``, so on a machine without CUDA every
    spawned process sees ``num_processes == 1`` and trains on the whole data as if alone. ``cpu=True`` is passed
    when no CUDA device exists (and the caller did not choose).
``loader_wrapper_attributes``
    Catalyst's loader wrappers (``BatchLimitLoaderWrapper``, used by ``train(overfit=True)``) read attributes from
    the wrapped loader's ``__dict__`` only; accelerate >= 0.34's prepared ``DataLoaderShard`` does not keep
    ``batch_sampler``/``batch_size`` there, so ``overfit`` crashed at loader start. Falls back to ``getattr``.
``accelerate_zero_grad_signature``
    ``AcceleratedOptimizer.zero_grad`` builds ``inspect.signature(self.optimizer.zero_grad)`` on every call (every
    training step), ~0.1 ms: 2-3% of a small model's step. The answer (does it take ``set_to_none``?) is kept per
    ``zero_grad`` function; the behaviour is accelerate's.

Accelerate versions: the suite runs on 0.33 (the tested range 0.28-0.33) and on 1.x (1.15 checked); the
``engine_xla_enum``, ``ddp_cpu_processes`` and ``loader_wrapper_attributes`` patches are what 1.x needs, and each
applies only where the installed version needs it.

Not patched, on purpose:

* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. ``catalyst.utils.load_checkpoint`` calls
  ``torch.load(path, map_location=<lambda>)`` without ``weights_only``; the checkpoints Catalyst itself writes (model
  ``state_dict``; runner checkpoints = model/criterion/optimizer/scheduler state dicts + ``epoch_step``/
  ``batch_step``/``sample_step`` ints) contain only tensors, containers and numbers, which the weights-only unpickler
  accepts, so loading works unchanged (verified in tests/test_compat.py for StepLR/OneCycleLR/ReduceLROnPlateau
  state). What would fail is a checkpoint holding arbitrary Python objects (numpy scalars, custom classes): keep
  our artifacts free of them rather than weakening the loader.
* ``Runner.train(resume=...)`` is stored and never read in 22.4: resume with
  ``CheckpointCallback(mode="runner", resume_runner=path)`` instead (a usage rule, not a code defect to patch).
* Without ``engine=``, ``get_available_engine`` builds ``GPUEngine(fp16=...)`` which ``Accelerator.__init__``
  rejects (``TypeError``: no ``fp16`` argument) on a CUDA machine: always pass :func:`default_engine`.
* ``SchedulerCallback`` and ``CheckpointCallback`` both have order 50 and Catalyst sorts stably: list the scheduler
  callback first, or a ``mode="runner"`` checkpoint stores the scheduler before its epoch step and a resumed run
  repeats one learning rate.
* Warnings only, left alone: ``LooseVersion`` ``DeprecationWarning`` on ``import catalyst.callbacks``; torch's
  "Converting a tensor with requires_grad=True to a scalar" from ``FunctionalBatchMetric.update`` (the loss of
  Catalyst's ``CriterionCallback``) and from Catalyst's ``TqdmCallback`` (our runner's progress bar,
  ``callbacks/console.py``, reads detached values and does not warn); accelerate's ``use_fp16`` ``FutureWarning`` from ``AUCCallback``; accelerate's
  "OMP_NUM_THREADS unset" ``UserWarning`` in CPU DDP processes.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pickle
import sys
from typing import Any, Callable, Dict, List, Optional, Set, Union

import torch
import torch.distributed as dist

__all__ = ["apply", "applied", "original", "default_engine", "scheduler_callbacks", "PATCHES"]

# attribute set on every replacement function (its value is the replaced original)
_FLAG = "_dnn_cool_compat_original"
_APPLIED: Set[str] = set()
_ORIGINALS: Dict[str, Any] = {}


def _mark(replacement: Callable, replaced: Any) -> Callable:
    setattr(replacement, _FLAG, replaced)
    return replacement


def _is_ours(obj: Any) -> bool:
    return hasattr(obj, _FLAG)


# ---------------------------------------------------------------------------------------------------------------
# 1. DataParallelEngine.prepare_model rejects device_placement (Catalyst 22.4 + accelerate 0.28-0.33).
#    Accelerator.prepare -> _prepare_one -> self.prepare_model(obj, device_placement=...) -> TypeError.
# ---------------------------------------------------------------------------------------------------------------
def _patch_dataparallel_prepare_model() -> bool:
    from catalyst.engines.torch import DataParallelEngine

    current = DataParallelEngine.__dict__.get("prepare_model")
    if current is None or _is_ours(current):
        return False
    params = inspect.signature(current).parameters
    if "device_placement" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return False  # a fixed Catalyst: nothing to do

    def prepare_model(self, model: torch.nn.Module, *args, **kwargs):
        """Wrap in ``nn.DataParallel`` (once) and hand every accelerate argument through."""
        if not isinstance(model, torch.nn.DataParallel):
            model = torch.nn.DataParallel(model)
        return super(DataParallelEngine, self).prepare_model(model, *args, **kwargs)

    _ORIGINALS["dataparallel_prepare_model"] = current
    DataParallelEngine.prepare_model = _mark(prepare_model, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 2. catalyst.utils.distributed.all_gather hard-codes "cuda" (Catalyst 22.4, any torch): loader metrics crash
#    under a gloo (CPU) process group. The replacement picks the device from the process group's backend.
# ---------------------------------------------------------------------------------------------------------------
_ALL_GATHER_IMPORTERS = (
    "catalyst.utils",
    "catalyst.metrics._auc",
    "catalyst.metrics._classification",
    "catalyst.metrics._confusion_matrix",
    "catalyst.metrics._segmentation",
)


def _collective_device(data: Any) -> torch.device:
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

    device = _collective_device(data)
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
    if _is_ours(current):
        return False
    try:
        source = inspect.getsource(current)
    except (OSError, TypeError):
        source = ""
    if '"cuda"' not in source and "'cuda'" not in source:
        return False  # a fixed Catalyst: nothing to do

    replacement = _mark(all_gather, current)
    _ORIGINALS["distributed_all_gather"] = current
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


# ---------------------------------------------------------------------------------------------------------------
# 3. torch >= 2.0 schedulers are not recognised (catalyst.typing.TorchScheduler uses _LRScheduler), so
#    SupervisedRunner adds no SchedulerCallback and the learning rate never changes.
# ---------------------------------------------------------------------------------------------------------------
def _patch_scheduler_recognition() -> bool:
    import catalyst.runners.supervised as supervised
    import catalyst.typing as catalyst_typing
    from torch.optim import lr_scheduler

    base = getattr(lr_scheduler, "LRScheduler", lr_scheduler._LRScheduler)
    if issubclass(lr_scheduler.StepLR, supervised.TorchScheduler):
        return False
    _ORIGINALS["scheduler_recognition"] = supervised.TorchScheduler
    recognised = (base, lr_scheduler.ReduceLROnPlateau)
    catalyst_typing.TorchScheduler = recognised
    supervised.TorchScheduler = recognised  # the isinstance check in SupervisedRunner.get_callbacks reads this one
    return True


# ---------------------------------------------------------------------------------------------------------------
# 4. Engine.mean_reduce_ddp_metrics reads DistributedType.TPU (deprecated in accelerate 0.27, FutureWarning on every
#    loader end on 0.27-0.33, AttributeError on 1.x). Same logic, reading XLA where it exists.
# ---------------------------------------------------------------------------------------------------------------
def _patch_engine_xla_enum() -> bool:
    from accelerate.state import DistributedType
    from catalyst.core.engine import Engine
    from catalyst.utils.distributed import mean_reduce

    current = Engine.__dict__.get("mean_reduce_ddp_metrics")
    if current is None or _is_ours(current):
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

    _ORIGINALS["engine_xla_enum"] = current
    Engine.mean_reduce_ddp_metrics = _mark(mean_reduce_ddp_metrics, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 5. unpack_checkpoint loads into the DataParallel/DDP wrapper (Catalyst 22.4, any torch): resume_runner fails with
#    missing "module.*" keys under DataParallelEngine/DistributedDataParallelEngine. Unwrap models before loading.
# ---------------------------------------------------------------------------------------------------------------
def _patch_checkpoint_unpack_wrapped() -> bool:
    import catalyst.callbacks.checkpoint as checkpoint_module
    import catalyst.utils as catalyst_utils
    import catalyst.utils.torch as catalyst_torch
    from catalyst.utils.distributed import get_nn_from_ddp_module

    current = catalyst_torch.unpack_checkpoint
    if _is_ours(current):
        return False
    if "get_nn_from_ddp_module" in inspect.getsource(current):
        return False  # a fixed Catalyst: nothing to do

    def unpack_checkpoint(checkpoint: Dict, model=None, criterion=None, optimizer=None, scheduler=None) -> None:
        """Catalyst's ``unpack_checkpoint``, loading model states into the unwrapped module(s)."""
        if isinstance(model, dict):
            model = {key: None if value is None else get_nn_from_ddp_module(value) for key, value in model.items()}
        elif model is not None:
            model = get_nn_from_ddp_module(model)
        current(checkpoint, model=model, criterion=criterion, optimizer=optimizer, scheduler=scheduler)

    replacement = _mark(unpack_checkpoint, current)
    _ORIGINALS["checkpoint_unpack_wrapped"] = current
    for module in (catalyst_torch, catalyst_utils, checkpoint_module):
        if getattr(module, "unpack_checkpoint", None) is current:
            module.unpack_checkpoint = replacement
    return True


# ---------------------------------------------------------------------------------------------------------------
# 6. CheckpointCallback writes "<mode>.best.pth" from the *live* model (Catalyst 22.4, any torch): _storage[0].obj is
#    runner.model itself, so the "best" file always holds the last epoch's weights. Copy the best epoch's own file.
# ---------------------------------------------------------------------------------------------------------------
def _patch_checkpoint_best_copy() -> bool:
    import shutil

    from catalyst.callbacks.checkpoint import CheckpointCallback

    current = CheckpointCallback.__dict__.get("on_epoch_end_best")
    if current is None or _is_ours(current):
        return False
    if "self._storage[0].obj" not in inspect.getsource(current):
        return False  # a fixed Catalyst: nothing to do

    def on_epoch_end_best(self, runner) -> None:
        """Save this epoch's checkpoint, then copy the best epoch's file to ``<mode>.best.pth``."""
        if self.loader_key is not None:
            score = runner.epoch_metrics[self.loader_key][self.metric_key]
        else:
            score = runner.epoch_metrics[self.metric_key]
        self._handle_epoch(runner=runner, score=score)
        if self.save_best:
            runner.engine.wait_for_everyone()
            if runner.engine.is_main_process:  # accelerate's save writes on the main process only
                best_logpath = f"{self.logdir}/{self.mode}.best.pth"
                shutil.copyfile(self._storage[0].logpath, best_logpath)

    _ORIGINALS["checkpoint_best_copy"] = current
    # CheckpointCallback.__init__ binds self.on_epoch_end = self.on_epoch_end_best: callbacks built from now on use it
    CheckpointCallback.on_epoch_end_best = _mark(on_epoch_end_best, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 7. accelerate looks for the lomo_optim package on sys.path in every optimizer step and backward (0.31+).
# ---------------------------------------------------------------------------------------------------------------
def _patch_accelerate_lomo_lookup() -> bool:
    import accelerate.accelerator as accelerator_module
    import accelerate.optimizer as optimizer_module

    current = getattr(optimizer_module, "is_lomo_available", None)
    if current is None or _is_ours(current):
        return False
    answer = bool(current())

    def is_lomo_available() -> bool:
        return answer

    replacement = _mark(is_lomo_available, current)
    _ORIGINALS["accelerate_lomo_lookup"] = current
    for module in (optimizer_module, accelerator_module):
        if getattr(module, "is_lomo_available", None) is current:
            module.is_lomo_available = replacement
    return True


# ---------------------------------------------------------------------------------------------------------------
# 8. accelerate >= 1.0 makes a CPU process group MULTI_CPU only for Accelerator(cpu=True): Catalyst's
#    DistributedDataParallelEngine.setup builds Accelerator() after init_process_group, so on a machine without CUDA
#    every spawned process thinks it is alone (num_processes 1, process_index 0) and trains the whole data.
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
    if current is None or _is_ours(current) or not _cpu_ddp_needs_cpu_flag():
        return False

    def setup(self, local_rank: int, world_size: int):
        """Catalyst's setup, telling accelerate to use the CPU process group when there is no CUDA device."""
        if not torch.cuda.is_available() and "cpu" not in self._kwargs:
            self._kwargs = {**self._kwargs, "cpu": True}
        return current(self, local_rank, world_size)

    _ORIGINALS["ddp_cpu_processes"] = current
    DistributedDataParallelEngine.setup = _mark(setup, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 9. ILoaderWrapper (BatchLimitLoaderWrapper: train(overfit=True), limited loaders) looks attributes up in the wrapped
#    loader's __dict__ only. accelerate >= 0.34's prepared DataLoaderShard exposes batch_sampler/batch_size otherwise,
#    so the wrapper answers None and Catalyst's get_loader_batch_size crashes at loader start.
# ---------------------------------------------------------------------------------------------------------------
def _patch_loader_wrapper_attributes() -> bool:
    from catalyst.data.loader import ILoaderWrapper

    current = ILoaderWrapper.__dict__.get("__getattr__")
    if current is None or _is_ours(current):
        return False
    try:
        if "origin.__dict__.get" not in inspect.getsource(current):
            return False  # a fixed Catalyst: nothing to do
    except (OSError, TypeError):
        return False

    def __getattr__(self, key):
        """Catalyst's lookup, then an ordinary attribute lookup on the wrapped loader (properties included)."""
        value = current(self, key)
        origin = self.__dict__.get("origin")
        if value is None and origin is not None:
            return getattr(origin, key, None)
        return value

    _ORIGINALS["loader_wrapper_attributes"] = current
    ILoaderWrapper.__getattr__ = _mark(__getattr__, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 10. AcceleratedOptimizer.zero_grad inspects the wrapped optimizer's zero_grad signature on every step (0.28-1.x).
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
    if current is None or _is_ours(current):
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

    _ORIGINALS["accelerate_zero_grad_signature"] = current
    AcceleratedOptimizer.zero_grad = _mark(zero_grad, current)
    return True


PATCHES: Dict[str, Callable[[], bool]] = {
    "dataparallel_prepare_model": _patch_dataparallel_prepare_model,
    "distributed_all_gather": _patch_distributed_all_gather,
    "scheduler_recognition": _patch_scheduler_recognition,
    "engine_xla_enum": _patch_engine_xla_enum,
    "checkpoint_unpack_wrapped": _patch_checkpoint_unpack_wrapped,
    "checkpoint_best_copy": _patch_checkpoint_best_copy,
    "accelerate_lomo_lookup": _patch_accelerate_lomo_lookup,
    "ddp_cpu_processes": _patch_ddp_cpu_processes,
    "loader_wrapper_attributes": _patch_loader_wrapper_attributes,
    "accelerate_zero_grad_signature": _patch_accelerate_zero_grad_signature,
}


def apply() -> List[str]:
    """Apply every needed patch; returns the names patched by this call (empty when nothing was left to do)."""
    done = []
    for name, patch in PATCHES.items():
        if patch():
            _APPLIED.add(name)
            done.append(name)
    return done


def applied() -> Set[str]:
    """Names of the patches applied so far in this process."""
    return set(_APPLIED)


def original(name: str) -> Any:
    """The object a patch replaced (``None`` if that patch has not been applied in this process)."""
    return _ORIGINALS.get(name)


# ---------------------------------------------------------------------------------------------------------------
# Helpers for the runner
# ---------------------------------------------------------------------------------------------------------------
def _reset_conflicting_accelerate_state(device_type: str, mixed_precision: str) -> bool:
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


def default_engine(device: Optional[Union[str, torch.device]] = None, **engine_kwargs):
    """An explicit Catalyst engine: ``CPUEngine`` on CPU, ``GPUEngine`` on CUDA.

    Always pass an engine to ``runner.train``: left alone, Catalyst 22.4 builds ``GPUEngine(fp16=...)``, which
    accelerate rejects on every CUDA machine. ``device`` is ``None`` (CUDA when available, else CPU), ``"cpu"``,
    ``"cuda"`` or ``"cuda:N"`` (selects GPU ``N`` as the current device). ``engine_kwargs`` go to
    ``accelerate.Accelerator`` (e.g. ``mixed_precision="bf16"``). Calls :func:`apply` first, and resets accelerate's
    shared (non-distributed) state when an earlier engine left it on another device or precision.
    """
    from catalyst.engines.torch import CPUEngine, GPUEngine

    apply()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(device)!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available")
    precision = engine_kwargs.get("mixed_precision") or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    _reset_conflicting_accelerate_state(device.type, str(getattr(precision, "value", precision)).lower())
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
    from catalyst.callbacks.scheduler import SchedulerCallback
    from catalyst.contrib.schedulers import BatchScheduler
    from torch.optim.lr_scheduler import ReduceLROnPlateau

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

