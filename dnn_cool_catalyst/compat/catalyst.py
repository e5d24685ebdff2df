"""Catalyst 22.4 defects on torch >= 2 and today's accelerate: Catalyst's own code, patched in place.

Patches (name -> defect; the test named fails without the patch):

``dataparallel_prepare_model``
    ``DataParallelEngine.prepare_model(self, model)`` does not accept the ``device_placement`` keyword that
    ``Accelerator.prepare`` passes to it (``_prepare_one``; seen on accelerate 0.33, reported for 0.28-0.33), so
    ``engine.prepare(model)`` - called by every run - raises ``TypeError``. It also wrapped an already wrapped model
    a second time (``predict_loader`` after ``train``).
    Test: ``tests/test_compat.py::test_dataparallel_prepare_model``.
``scheduler_recognition``
    ``catalyst.typing.TorchScheduler`` is ``(_LRScheduler, ReduceLROnPlateau)``. Since torch 2.0 the built-in
    schedulers derive from ``LRScheduler`` and ``_LRScheduler`` is only a deprecated subclass, so
    ``SupervisedRunner`` no longer recognises ``StepLR``/``OneCycleLR``/... and never adds a ``SchedulerCallback``:
    the learning rate silently never changes (only a "No ISchedulerCallback" warning is printed).
    Test: ``tests/test_compat.py::test_default_engine_cpu_trains_and_steps_scheduler`` (the defect itself:
    ``test_torch2_scheduler_not_recognised_without_patch``).
``checkpoint_unpack_wrapped``
    ``unpack_checkpoint`` calls ``load_state_dict`` on ``runner.model`` as it is, i.e. on the ``DataParallel`` /
    ``DistributedDataParallel`` wrapper, while ``pack_checkpoint`` saved the unwrapped module's state, so
    ``CheckpointCallback(resume_runner=...)`` fails with missing ``module.*`` keys under DP and DDP.
    Test: ``tests/test_compat.py::test_unpack_checkpoint_into_wrapped_model`` (and
    ``test_resume_runner_under_dataparallel``).
``checkpoint_best_copy``
    ``CheckpointCallback`` (with ``minimize`` set, as ``train(valid_metric=..., minimize_valid_metric=...)`` builds
    it) re-saves the *live* ``runner.model`` as ``<mode>.best.pth`` every epoch, so that file always holds the last
    epoch's weights; only ``<mode>.<epoch>.pth`` / ``storage.json`` name the best one. The best epoch's file is
    copied instead. Only callbacks constructed after ``compat.apply()`` get the fix.
    Test: ``tests/test_compat.py::test_best_checkpoint_is_the_best_epoch``.
``loader_wrapper_attributes``
    Catalyst's loader wrappers (``BatchLimitLoaderWrapper``, used by ``train(overfit=True)``) read attributes from
    the wrapped loader's ``__dict__`` only; accelerate >= 0.34's prepared ``DataLoaderShard`` does not keep
    ``batch_sampler``/``batch_size`` there, so ``overfit`` crashed at loader start. Falls back to ``getattr``.
    Test: ``tests/test_compat_accelerate.py::test_overfit_runs``.

Each patch imports the Catalyst module it fixes when it runs, so importing this module imports no Catalyst.
"""
from __future__ import annotations

import inspect
from typing import Callable, Dict

import torch

from ._patching import ORIGINALS, is_ours, mark

__all__ = ["PATCHES"]


# ---------------------------------------------------------------------------------------------------------------
# dataparallel_prepare_model: DataParallelEngine.prepare_model rejects device_placement (Catalyst 22.4 + accelerate
# 0.28-0.33). Accelerator.prepare -> _prepare_one -> self.prepare_model(obj, device_placement=...) -> TypeError.
# Without it tests/test_compat.py::test_dataparallel_prepare_model fails.
# ---------------------------------------------------------------------------------------------------------------
def _patch_dataparallel_prepare_model() -> bool:
    from catalyst.engines.torch import DataParallelEngine

    current = DataParallelEngine.__dict__.get("prepare_model")
    if current is None or is_ours(current):
        return False
    params = inspect.signature(current).parameters
    if "device_placement" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return False  # a fixed Catalyst: nothing to do

    def prepare_model(self, model: torch.nn.Module, *args, **kwargs):
        """Wrap in ``nn.DataParallel`` (once) and hand every accelerate argument through."""
        if not isinstance(model, torch.nn.DataParallel):
            model = torch.nn.DataParallel(model)
        return super(DataParallelEngine, self).prepare_model(model, *args, **kwargs)

    ORIGINALS["dataparallel_prepare_model"] = current
    DataParallelEngine.prepare_model = mark(prepare_model, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# scheduler_recognition: torch >= 2.0 schedulers are not recognised (catalyst.typing.TorchScheduler uses
# _LRScheduler), so SupervisedRunner adds no SchedulerCallback and the learning rate never changes.
# Without it tests/test_compat.py::test_default_engine_cpu_trains_and_steps_scheduler fails (lr stays 0.1).
# ---------------------------------------------------------------------------------------------------------------
def _patch_scheduler_recognition() -> bool:
    import catalyst.runners.supervised as supervised
    import catalyst.typing as catalyst_typing
    from torch.optim import lr_scheduler

    base = getattr(lr_scheduler, "LRScheduler", lr_scheduler._LRScheduler)
    if issubclass(lr_scheduler.StepLR, supervised.TorchScheduler):
        return False
    ORIGINALS["scheduler_recognition"] = supervised.TorchScheduler
    recognised = (base, lr_scheduler.ReduceLROnPlateau)
    catalyst_typing.TorchScheduler = recognised
    supervised.TorchScheduler = recognised  # the isinstance check in SupervisedRunner.get_callbacks reads this one
    return True




# ---------------------------------------------------------------------------------------------------------------
# checkpoint_unpack_wrapped: unpack_checkpoint loads into the DataParallel/DDP wrapper (Catalyst 22.4, any torch):
# resume_runner fails with missing "module.*" keys under DataParallelEngine/DistributedDataParallelEngine. Unwrap
# models before loading. Without it tests/test_compat.py::test_unpack_checkpoint_into_wrapped_model fails.
# ---------------------------------------------------------------------------------------------------------------
def _patch_checkpoint_unpack_wrapped() -> bool:
    import catalyst.callbacks.checkpoint as checkpoint_module
    import catalyst.utils as catalyst_utils
    import catalyst.utils.torch as catalyst_torch
    from catalyst.utils.distributed import get_nn_from_ddp_module

    current = catalyst_torch.unpack_checkpoint
    if is_ours(current):
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

    replacement = mark(unpack_checkpoint, current)
    ORIGINALS["checkpoint_unpack_wrapped"] = current
    for module in (catalyst_torch, catalyst_utils, checkpoint_module):
        if getattr(module, "unpack_checkpoint", None) is current:
            module.unpack_checkpoint = replacement
    return True


# ---------------------------------------------------------------------------------------------------------------
# checkpoint_best_copy: CheckpointCallback writes "<mode>.best.pth" from the *live* model (Catalyst 22.4, any torch):
# _storage[0].obj is runner.model itself, so the "best" file always holds the last epoch's weights. Copy the best
# epoch's own file. Without it tests/test_compat.py::test_best_checkpoint_is_the_best_epoch fails.
# ---------------------------------------------------------------------------------------------------------------
def _patch_checkpoint_best_copy() -> bool:
    import shutil

    from catalyst.callbacks.checkpoint import CheckpointCallback

    current = CheckpointCallback.__dict__.get("on_epoch_end_best")
    if current is None or is_ours(current):
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

    ORIGINALS["checkpoint_best_copy"] = current
    # CheckpointCallback.__init__ binds self.on_epoch_end = self.on_epoch_end_best: callbacks built from now on use it
    CheckpointCallback.on_epoch_end_best = mark(on_epoch_end_best, current)
    return True


# ---------------------------------------------------------------------------------------------------------------
# loader_wrapper_attributes: ILoaderWrapper (BatchLimitLoaderWrapper: train(overfit=True), limited loaders) looks
# attributes up in the wrapped loader's __dict__ only. accelerate >= 0.34's prepared DataLoaderShard exposes
# batch_sampler/batch_size otherwise, so the wrapper answers None and Catalyst's get_loader_batch_size crashes at
# loader start. Without it tests/test_compat_accelerate.py::test_overfit_runs fails (accelerate >= 0.34).
# ---------------------------------------------------------------------------------------------------------------
def _patch_loader_wrapper_attributes() -> bool:
    from catalyst.data.loader import ILoaderWrapper

    current = ILoaderWrapper.__dict__.get("__getattr__")
    if current is None or is_ours(current):
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

    ORIGINALS["loader_wrapper_attributes"] = current
    ILoaderWrapper.__getattr__ = mark(__getattr__, current)
    return True


PATCHES: Dict[str, Callable[[], bool]] = {
    "dataparallel_prepare_model": _patch_dataparallel_prepare_model,
    "scheduler_recognition": _patch_scheduler_recognition,
    "checkpoint_unpack_wrapped": _patch_checkpoint_unpack_wrapped,
    "checkpoint_best_copy": _patch_checkpoint_best_copy,
    "loader_wrapper_attributes": _patch_loader_wrapper_attributes,
}
