"""Model outputs -> predictions in label space, one DataFrame row per sample (what ``runner.predict`` returns).

Per task, one column named after the task with its decoded prediction as the user wrote labels (binary: one of
its two label values; classification: the class label; multilabel: the list of labels present; regression: the
value in label units), and with ``proba=True`` probability columns right after it: ``proba_<task>`` (binary:
P(positive)) or ``proba_<task>[<label>]`` per class (classification, multilabel). Where a task does not apply under *decoded*
gating (its preconditions are false on the model's own decoded predictions), its cells are None/NaN, the
probability cells included.

Decoding uses the tasks' current decoders (thresholds as tuned, fitted regression scaling), as ``infer()`` and
``evaluate(gating="decoded")`` do; nothing here special-cases a task type (see ``Task.label_values`` and
``Task.probabilities``).

Example:
    >>> import torch
    >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
    >>> def gate(flow, x, out):
    ...     out += flow.door_open(x.features)
    ...     out += flow.door_locked(x.features) | ~out.door_open
    ...     return out
    >>> flow = TaskFlow.from_function(gate, [BinaryTask("door_open", labels=["closed", "open"]),
    ...                                      BinaryTask("door_locked")])
    >>> logits = {"door_open": torch.tensor([3.0, -3.0]), "door_locked": torch.tensor([3.0, 3.0])}
    >>> predictions_frame(flow, logits, index=["a", "b"])
      door_open  door_locked
    a      open          NaN
    b    closed          1.0
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import pandas as pd
import torch

from .flow.module import decoded_gating_masks

PROBA_PREFIX = "proba_"


def predictions_frame(flow, logits: Mapping[str, torch.Tensor], index: Optional[Sequence] = None,
                      proba: bool = False) -> pd.DataFrame:
    """Decode ``logits`` (task name -> canonical logits of N samples) with the flow's decoders, gate them on the
    decoded predictions, and return :func:`label_frame`'s DataFrame (``index``: N row labels, default 0..N-1)."""
    graph = flow.graph
    decoded = {name: task.decode(logits[name]) for name, task in graph.tasks.items()}
    applies = decoded_gating_masks(graph, logits)
    activations = {name: task.activation(logits[name]) for name, task in graph.tasks.items()} if proba else None
    return label_frame(flow, decoded, applies, index, activations)


def label_frame(flow, decoded: Mapping[str, torch.Tensor], applies: Mapping[str, torch.Tensor],
                index: Optional[Sequence] = None,
                activations: Optional[Mapping[str, torch.Tensor]] = None) -> pd.DataFrame:
    """The label-space DataFrame from per-task decoded predictions (``task.decode`` output), per-sample
    ``applies`` masks ``(N,)`` and, for probability columns, activations (``task.activation`` output; an
    ensemble may pass averaged ones with the matching decoded values). Columns in the flow's task order."""
    columns: Dict[str, pd.Series] = {}
    n = None
    for leaf in flow.graph.leaves:
        name, task = leaf.name, leaf.task
        values = task.label_values(decoded[name].detach().cpu())
        n = len(values) if n is None else n
        if len(values) != n:
            raise ValueError(f"task '{leaf.path}': {len(values)} decoded values, expected {n} (one per sample)")
        keep = [bool(v) for v in applies[name].detach().cpu().reshape(n, -1).all(dim=1)]
        columns[name] = _series([v if k else None for v, k in zip(values, keep)])
        if activations is None:
            continue
        for suffix, probability in task.probabilities(activations[name].detach().cpu()).items():
            numbers = probability.double().reshape(n).tolist()
            columns[f"{PROBA_PREFIX}{name}{suffix}"] = pd.Series(
                [p if k else float("nan") for p, k in zip(numbers, keep)], dtype="float64")
    frame = pd.DataFrame(columns)
    if index is not None:
        if len(index) != len(frame):
            raise ValueError(f"index has {len(index)} labels for {len(frame)} predicted rows")
        frame.index = pd.Index(index) if not isinstance(index, pd.Index) else index
    return frame


def _series(cells: list) -> pd.Series:
    """Numbers (regression, numeric labels) as float64 with NaN where a task does not apply (int64 when they are
    integers that apply everywhere); anything else
    (label strings, lists of labels) as objects with None there."""
    present = [c for c in cells if c is not None]
    numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in present)
    if numeric and len(present) == len(cells) and all(isinstance(c, int) for c in cells):
        return pd.Series(cells, dtype="int64")  # e.g. 0/1 labels of a binary task that applies everywhere
    if numeric:
        return pd.Series([float("nan") if c is None else c for c in cells], dtype="float64")
    return pd.Series(cells, dtype=object)
