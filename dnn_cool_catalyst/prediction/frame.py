"""Model outputs -> predictions in label space, one DataFrame row per sample (what ``runner.predict`` returns).

Per task, one column named after the task with its decoded prediction as the user wrote labels (binary: one of
its two label values; classification: the class label; multilabel: the list of labels present; regression: the
value in label units), and with ``proba=True`` probability columns right after it: ``proba_<task>`` (binary:
P(positive)) or ``proba_<task>[<label>]`` per class (classification, multilabel).

Labels keep the type of the user's column (:mod:`dnn_cool_catalyst.tasks.labels`): a bool column gives ``boolean``
predictions, an integer column ``Int64``, a float column ``Float64`` (the labels 1.0..5.0 stay 1.0..5.0; note that
pandas reads an integer column with missing cells as float), a text column ``string``; regression is ``Float64``
in label units; multilabel lists of labels are objects. Where a task does not apply under *decoded* gating (its
preconditions are false on the model's own decoded predictions) its cells are ``pd.NA``, in the same nullable
dtype, so a gated task has the dtype it would have ungated; its probability cells are NaN.

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
    >>> frame = predictions_frame(flow, logits, index=["a", "b"])
    >>> frame
      door_open  door_locked
    a      open         <NA>
    b    closed            1
    >>> frame.dtypes.astype(str).tolist()
    ['string', 'Int64']
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import pandas as pd
import torch

from ..graph.module import decoded_gating_masks
from ..tasks.labels import series_of

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
        columns[name] = series_of(task.prediction_kind(), [v if k else None for v, k in zip(values, keep)])
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

