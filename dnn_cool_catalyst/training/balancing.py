"""``train(balance=...)``: class-balanced sampling of the training split, per task.

- ``{"task": "inverse_frequency"}`` (binary or classification task): rows are drawn with replacement, with weight
  ``n_labelled / (k * count[class])`` for a row of ``class`` (``k`` classes present in the training split), so each
  class gets the same share of the labelled rows' draws. Several tasks multiply their weights.
- ``{"task": {"negatives_per_positive": N}}`` (binary task, alone): each epoch holds every positive, ``N``
  negatives per positive drawn afresh without replacement (all negatives when there are fewer), shuffled.

Rows whose label of the task is missing keep weight 1 (drawn as often as without balancing; with
``negatives_per_positive`` they are all in every epoch): balancing never drops unlabelled rows that other tasks
learn from. The epoch order is drawn from ``seed + epoch`` and is the same on every DDP rank, which then takes its
slice of every global batch (``parallel/balanced.py``), so balancing works under DDP as without it.
"""
from __future__ import annotations

from typing import List, Mapping

import torch

from ..parallel.balanced import NegativesDraw, WeightedDraw
from ..errors import RunnerError

MODES = ("inverse_frequency", "negatives_per_positive")


def split_labels(flow, dataset, task: str, positions: List[int]):
    """``(labels, available)`` of ``task`` on the split's rows, one label per row (class ids, or 0/1)."""
    data = getattr(dataset, "data", None)
    if data is None or task not in getattr(data, "targets", {}):
        raise RunnerError(f"balance: needs the project's dataset with the labels of '{task}'")
    index = torch.as_tensor(positions, dtype=torch.long)
    targets = data.targets[task].index_select(0, index).reshape(len(positions), -1)
    available = data.available[task].index_select(0, index).reshape(len(positions), -1)
    if targets.shape[1] != 1:
        raise RunnerError(f"balance: task '{task}' has {targets.shape[1]} labels per row; balancing needs one")
    return targets[:, 0].round().long(), available[:, 0].bool()


def make_draw(balance: Mapping, flow, dataset, positions: List[int]):
    """The epoch draw (``parallel/balanced.py``) for ``balance`` over the training split's ``positions``."""
    if not isinstance(balance, Mapping) or not balance:
        raise RunnerError(f"balance must be a mapping of tasks to modes, e.g. {{'door_open': 'inverse_frequency'}} "
                          f"or {{'door_open': {{'negatives_per_positive': 3}}}}, got {balance!r}")
    weights = torch.ones(len(positions), dtype=torch.float64)
    for task, mode in balance.items():
        if task not in flow.tasks:
            raise RunnerError(f"balance: '{task}' is not a task of flow '{flow.name}'; tasks are {list(flow.tasks)}")
        kind = getattr(flow.tasks[task], "type_name", "?")
        if isinstance(mode, Mapping):
            if set(mode) != {"negatives_per_positive"}:
                raise RunnerError(f"balance['{task}']: unknown mode {dict(mode)!r}; modes are 'inverse_frequency' "
                                  f"or {{'negatives_per_positive': N}}")
            ratio = mode["negatives_per_positive"]
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
                raise RunnerError(f"balance['{task}']: negatives_per_positive must be a positive number, got "
                                  f"{ratio!r}")
            if kind != "binary":
                raise RunnerError(f"balance['{task}']: negatives_per_positive needs a binary task; '{task}' is a "
                                  f"{kind} task")
            if len(balance) > 1:
                raise RunnerError(f"balance: negatives_per_positive on '{task}' cannot be combined with other tasks "
                                  f"({[t for t in balance if t != task]})")
            labels, available = split_labels(flow, dataset, task, positions)
            rows = torch.arange(len(positions))
            positives = rows[available & (labels == 1)].tolist()
            if not positives:
                raise RunnerError(f"balance['{task}']: the training split has no positive label of '{task}'")
            return NegativesDraw(positives, rows[available & (labels == 0)].tolist(), rows[~available].tolist(),
                                 float(ratio))
        if mode != "inverse_frequency":
            raise RunnerError(f"balance['{task}']: unknown mode {mode!r}; modes are 'inverse_frequency' or "
                              f"{{'negatives_per_positive': N}}")
        if kind not in ("binary", "classification"):
            raise RunnerError(f"balance['{task}']: inverse_frequency needs a binary or classification task; "
                              f"'{task}' is a {kind} task")
        labels, available = split_labels(flow, dataset, task, positions)
        present = labels[available]
        if present.numel() == 0:
            raise RunnerError(f"balance['{task}']: the training split has no label of '{task}'")
        counts = torch.bincount(present).double()
        classes = int((counts > 0).sum())
        per_class = torch.where(counts > 0, present.numel() / (classes * counts.clamp_min(1)), torch.zeros_like(counts))
        weights[available] *= per_class[present]
    return WeightedDraw(weights)
