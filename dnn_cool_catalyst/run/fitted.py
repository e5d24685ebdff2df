"""State fitted on a run's training split (regression target scaling, or any task's ``fit_targets``).

The runner fits every task once, when the run is created, on the training rows the loss sees (label available
and preconditions true on the labels), and saves the states to ``<run_dir>/fitted_targets.json``. A later runner
on the same run directory reads them back instead of refitting, so ``infer()`` / ``evaluate()`` after a restart
use exactly the scaling the weights were trained with.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np
import torch

from ..atomic import atomic_write_json
from ..errors import FittedStateError  # defined there with every library error; re-exported here
from ..errors import TaskError
from ..safe_read import read_json
from ..messages import warn_user
from .layout import FITTED_FILE, RunDir  # the file name lives in the layout; re-exported here


def train_split_labels(dataset, flow, positions: Sequence[int]):
    """``(targets, available)`` of ``flow``'s tasks on the given dataset positions.

    Reads the converted tensors directly when the dataset exposes them (``dataset.data``), else collects items."""
    data = getattr(dataset, "data", None)
    index = torch.as_tensor(np.asarray(positions, dtype=np.int64))  # a list of numpy ints converts slowly
    if data is not None and all(name in getattr(data, "targets", {}) for name in flow.tasks):
        return ({name: data.targets[name][index] for name in flow.tasks},
                {name: data.available[name][index] for name in flow.tasks})
    items = [dataset[int(i)] for i in index]
    return ({name: torch.stack([item["targets"][name] for item in items]) for name in flow.tasks},
            {name: torch.stack([item["available"][name] for item in items]) for name in flow.tasks})


def fit_states(flow, dataset, positions: Sequence[int]) -> Dict[str, dict]:
    """Fit every task on the training rows; returns the non-empty states by task path."""
    for task in flow.tasks.values():
        task.reset_fitted_state()
    fits = any(_fits_targets(task) for task in flow.tasks.values())
    if len(positions) == 0 or not fits:  # nothing to fit: the dataset is not even read
        return {}
    try:
        targets, available = train_split_labels(dataset, flow, positions)
    except (TypeError, KeyError, IndexError, AttributeError) as e:
        # A dataset of another shape (the caller passes its own loaders): train in raw units, and say so.
        warn_user(f"cannot read the training split's targets from the dataset ({type(e).__name__}: {e}), so "
                  f"no target scaling is fitted: regression tasks train and predict in raw label units. Items "
                  f"must be dicts with 'targets' and 'available' per task, as flow.get_dataset() gives.")
        return {}
    masks = flow.graph.masks(targets, available, len(positions))
    states = {}
    for name, task in flow.tasks.items():
        task.fit_targets(targets[name], masks[name])
        state = task.get_fitted_state()
        if state:
            states[flow.task_paths[name]] = state
    return states


def _fits_targets(task) -> bool:
    """Whether the task's class overrides the ``fit_targets`` of the base task (which fits nothing), told from
    the classes alone: this module reads tasks duck-typed, without importing the task classes."""
    return sum("fit_targets" in vars(klass) for klass in type(task).__mro__) > 1


def apply_states(flow, states: Dict[str, dict], source: str = "fitted state") -> None:
    """Set every task's fitted state (tasks not listed are reset); errors name ``source`` and the task."""
    by_path = {path: name for name, path in flow.task_paths.items()}
    if not isinstance(states, dict):
        raise FittedStateError(f"{source}: expected a JSON object of task path -> state, got "
                               f"{type(states).__name__}")
    unknown = [path for path in states if path not in by_path]
    if unknown:
        raise FittedStateError(f"{source}: unknown task(s) {unknown}; tasks are {list(by_path)}")
    for name, task in flow.tasks.items():
        task.reset_fitted_state()
    for path, state in states.items():
        try:
            flow.tasks[by_path[path]].set_fitted_state(state)
        except (TaskError, TypeError, ValueError) as e:
            for task in flow.tasks.values():
                task.reset_fitted_state()
            raise FittedStateError(f"{source}, field '{path}': {e}") from None


def load_or_fit(run_dir: str, flow, dataset, positions: Sequence[int], write: bool = True) -> Dict[str, dict]:
    """The run's fitted states: read from ``run_dir`` when saved there, else fitted now (and saved)."""
    path = RunDir(run_dir).fitted
    if os.path.exists(path):
        try:
            saved = read_json(path)
        except (OSError, ValueError) as e:
            raise FittedStateError(f"cannot read {path} ({e}); delete it to refit on the training split") from None
        if not isinstance(saved, dict) or not isinstance(saved.get("tasks"), dict):
            raise FittedStateError(f"{path}: field 'tasks' must be a JSON object of task path -> state")
        apply_states(flow, saved["tasks"], source=path)
        return saved["tasks"]
    states = fit_states(flow, dataset, positions)
    if write:
        atomic_write_json(path, {"fitted_on": "train", "num_rows": int(len(positions)), "tasks": states})
    return states
