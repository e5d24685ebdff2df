"""Runtime fixes for Catalyst 22.4 on torch >= 2 and accelerate 0.28-0.33 and 1.x.

Catalyst 22.4 is the last Catalyst release; on today's stack a few of its code paths are broken. Each fix is a
small named function with a guard, so :func:`apply` can be called any number of times (it changes nothing the second
time) and a fix is skipped where the installed Catalyst does not need it. Nothing is patched on import: the runner
calls :func:`apply` before it builds an engine, and again inside every process that
``DistributedDataParallelEngine.spawn`` starts (``mp.spawn`` children import Catalyst afresh, unpatched; e.g. first
thing in an overridden ``_run_local``). ``dnn_cool_catalyst.training.engine.default_engine`` calls it too.

One module per upstream, each with its ``PATCHES`` and the notes on its defects (and the test each patch makes pass):

``catalyst.py``
    ``dataparallel_prepare_model``, ``scheduler_recognition``, ``checkpoint_unpack_wrapped``,
    ``checkpoint_best_copy``, ``loader_wrapper_attributes``: Catalyst's own code.
``accelerate.py``
    ``engine_xla_enum``, ``accelerate_lomo_lookup``, ``ddp_cpu_processes``, ``accelerate_zero_grad_signature``:
    what accelerate changed under Catalyst; also the reset of accelerate's shared state for a new engine.
``distributed.py``
    ``distributed_all_gather``; ``collective_device``, the device our own collectives run on.

:data:`PATCHES` is their union, in the order :func:`apply` runs them; ``_patching.py`` holds what the three share
(the mark on every replacement, the replaced originals that :func:`original` returns).

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
  rejects (``TypeError``: no ``fp16`` argument) on a CUDA machine: always pass
  ``dnn_cool_catalyst.training.engine.default_engine()``.
* ``SchedulerCallback`` and ``CheckpointCallback`` both have order 50 and Catalyst sorts stably: list the scheduler
  callback first, or a ``mode="runner"`` checkpoint stores the scheduler before its epoch step and a resumed run
  repeats one learning rate.
* Warnings only, left alone: ``LooseVersion`` ``DeprecationWarning`` on ``import catalyst.callbacks``; torch's
  "Converting a tensor with requires_grad=True to a scalar" from ``FunctionalBatchMetric.update`` (the loss of
  Catalyst's ``CriterionCallback``) and from Catalyst's ``TqdmCallback`` (our runner's progress bar,
  ``callbacks/console.py``, reads detached values and does not warn); accelerate's ``use_fp16`` ``FutureWarning``
  from ``AUCCallback``; accelerate's "OMP_NUM_THREADS unset" ``UserWarning`` in CPU DDP processes.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Set

from . import accelerate, catalyst, distributed
from ._patching import ORIGINALS

__all__ = ["apply", "applied", "original", "PATCHES"]

_APPLIED: Set[str] = set()

# The order apply() has always patched in, interleaving the three upstreams (a patch missing here fails the import).
_ORDER = (
    "dataparallel_prepare_model",
    "distributed_all_gather",
    "scheduler_recognition",
    "engine_xla_enum",
    "checkpoint_unpack_wrapped",
    "checkpoint_best_copy",
    "accelerate_lomo_lookup",
    "ddp_cpu_processes",
    "loader_wrapper_attributes",
    "accelerate_zero_grad_signature",
)
PATCHES: Dict[str, Callable[[], bool]] = dict(sorted(
    {**catalyst.PATCHES, **accelerate.PATCHES, **distributed.PATCHES}.items(), key=lambda item: _ORDER.index(item[0])))


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
    return ORIGINALS.get(name)
