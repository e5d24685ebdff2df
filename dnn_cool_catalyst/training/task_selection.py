"""The runner's side of ``train(task_selection=...)``: whether a run keeps each task's best epoch, and the model that
``infer``, ``predict`` and ``export`` run when it did (each task at its own best epoch).

Measured on four public tables (``benchmarks/bench_selection.py``, README "How long it trains"): taking each task
from its own best validation epoch of the same training run raised the tasks within tolerance of scikit-learn's
better model from 30 to 36 of 45 task-seeds. It costs one forward per distinct epoch at inference and one
``state_dict`` file per distinct epoch in ``checkpoints/``, so ``"auto"`` switches it on only for models that declare
themselves cheap to copy (``select_per_task = True``: :func:`~dnn_cool_catalyst.tabular.tabular_model`'s MLP and
TabM); ``True`` switches it on for any model.
"""
from __future__ import annotations

import copy
import hashlib
import os
from typing import Optional

from torch import nn

from ..run.checkpoints import CheckpointError, read_checkpoint
from ..callbacks.task_checkpoints import read_task_selection
from ..run.layout import TASKS_FILE, checkpoint_name, task_selection_path
from ..graph.selected import TaskSelectedModel
from ..run import artifacts
from ..errors import RunnerError

def resolve(task_selection, model: nn.Module, staged: bool = False) -> bool:
    """Whether a training run keeps each task's best epoch. ``staged``: ``train(stages=...)``, whose best model is
    the last stage's (per-task selection is not offered there)."""
    if not (isinstance(task_selection, bool) or (isinstance(task_selection, str) and task_selection == "auto")):
        raise RunnerError(f"task_selection must be 'auto', True or False, got {task_selection!r}")
    if staged:
        if task_selection is True:
            raise RunnerError("task_selection=True is not available with stages=: the run's best model is the "
                              "last stage's best epoch; train without stages to select per task")
        return False
    if task_selection == "auto":
        return bool(getattr(model, "select_per_task", False))
    return task_selection


def checkpoint_digest(path: str) -> str:
    """The sha256 that inference outputs record for the weights they come from: the checkpoint's, combined with
    ``runner.tasks.json``'s when ``path`` is a best checkpoint with a per-task selection beside it (a resumed run
    can change which epochs the tasks use without changing ``runner.best.pth``)."""
    digest = artifacts.sha256_file(path)
    selection = task_selection_path(os.path.dirname(path))
    if os.path.basename(path) != checkpoint_name("best") or not os.path.exists(selection):
        return digest
    return hashlib.sha256(f"{digest}:{artifacts.sha256_file(selection)}".encode()).hexdigest()


def selected_model(model: nn.Module, graph, checkpoint_dir: str) -> Optional[nn.Module]:
    """``model`` (holding the best checkpoint's weights) made into a :class:`TaskSelectedModel` of each task's
    best epoch per ``checkpoint_dir/runner.tasks.json``; None where the run kept no selection. When every task
    chose the same epoch, that epoch's weights are loaded into ``model`` itself and ``model`` is returned."""
    try:
        files = read_task_selection(checkpoint_dir)
    except (ValueError, OSError) as e:
        raise RunnerError(f"the per-task selection in {checkpoint_dir} cannot be read: {e}; train again") from None
    if not files:
        return None
    distinct = sorted(set(files.values()))
    states = []
    for path in distinct:
        try:
            states.append(read_checkpoint(path))
        except CheckpointError as e:
            raise RunnerError(f"{e}; the per-task selection ({TASKS_FILE}) names it: train again") from None
    # Tasks without a file of their own (no labelled validation sample) keep the best checkpoint: index len().
    sources = {name: distinct.index(files[name]) if name in files else len(distinct) for name in graph.tasks}
    if len(distinct) == 1 and all(name in files for name in graph.tasks):  # one epoch for all: no copies
        model.load_state_dict(states[0])
        return model
    models = []
    for state in states:
        copied = copy.deepcopy(model)
        copied.load_state_dict(state)
        models.append(copied)
    if len(distinct) in sources.values():
        models.append(model)
    return TaskSelectedModel(graph, models, sources)
