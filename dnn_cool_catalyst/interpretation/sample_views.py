"""What the best/worst summaries say about each picked sample: per task its target and prediction as text, and
the scalar values box overlays are drawn from.

Built from the model's logits for the picked samples (stored by ``infer()``, or from one forward pass of those
samples at the end of a validation loader) and the dataset's labels, so it reads the same in both places.
Predictions are decoded with the flow's current decoders (the tuned thresholds once ``tuned.json`` is loaded);
``reached`` says whether the task's condition holds for the model's own decisions (decoded gating).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import torch

from .explain import (_names, _threshold, describe_class, describe_scalar, describe_scalar_target, describe_target,
                      describe_value, shown_classes)
from ..graph.batch import output_logits
from ..graph.graph import CompiledGraph


@dataclass
class TaskView:
    """One task of one sample: ``target`` (text, ``not labelled`` when absent), ``prediction`` (text),
    ``target_value``/``predicted_value`` (floats in label units for one-value tasks, else None) and ``reached``."""

    target: str
    prediction: str
    target_value: Optional[float]
    predicted_value: Optional[float]
    reached: bool


@dataclass
class SampleView:
    """Per task :class:`TaskView` of one sample, and its per-task losses where the task is valid."""

    tasks: Dict[str, TaskView]
    losses: Dict[str, float] = field(default_factory=dict)

    def values(self, names: Sequence[str], which: str) -> Optional[tuple]:
        """``target`` or ``predicted`` values of ``names`` (e.g. a box's four tasks), or None when one is missing
        (unlabelled target; prediction gated off by the model's own decisions)."""
        views = [self.tasks.get(name) for name in names]
        if which == "target":
            values = [v.target_value if v is not None else None for v in views]
        else:
            values = [v.predicted_value if v is not None and v.reached else None for v in views]
        return None if any(v is None for v in values) else tuple(values)


@torch.no_grad()
def sample_views(graph: CompiledGraph, outputs, targets: Mapping[str, torch.Tensor],
                 available: Mapping[str, torch.Tensor], positions: Sequence[int]) -> Dict[int, SampleView]:
    """``{dataset position: SampleView}`` for a batch of ``positions``: ``outputs`` the model's output for them
    (or logits per task), ``targets``/``available`` their labels as a batch holds them."""
    n = len(positions)
    if n == 0:
        return {}
    logits = {k: v.detach().float().cpu() for k, v in output_logits(graph, outputs, n).items()}
    decoded = {name: graph.tasks[name].decode(value) for name, value in logits.items()}
    activations = {name: graph.tasks[name].activation(value) for name, value in logits.items()}
    reached = graph.masks(decoded, None, n)  # decoded gating: where the model's own decisions lead
    columns = {}
    for name, task in graph.tasks.items():
        target, avail = targets[name].cpu(), torch.as_tensor(available[name]).cpu().bool()
        reach = torch.as_tensor(reached[name]).bool().reshape(n, -1).all(1).tolist()
        if _one_value_per_sample(task, logits[name], target, avail):
            columns[name] = _scalar_views(task, logits[name], activations[name], decoded[name], target, avail, reach)
            continue
        if _one_class_per_sample(task, logits[name], decoded[name], target, avail):
            columns[name] = _class_views(task, logits[name], activations[name], decoded[name], target, avail, reach)
            continue
        views = []
        for i in range(n):
            labelled = bool(avail[i].any())
            one_value = logits[name][i].dim() == 0
            units = task.target_in_label_units(target[i]) if hasattr(task, "target_in_label_units") else target[i]
            views.append(TaskView(
                target=describe_target(task, target[i], avail[i]),
                prediction=describe_value(task, logits[name][i], activations[name][i], decoded[name][i]),
                target_value=float(units) if one_value and labelled and units.dim() == 0 else None,
                predicted_value=float(decoded[name][i]) if one_value else None,
                reached=reach[i]))
        columns[name] = views
    return {int(position): SampleView({name: columns[name][i] for name in graph.tasks})
            for i, position in enumerate(positions)}


def _one_value_per_sample(task, logits, target, available) -> bool:
    """Binary and regression tasks (one logit, one label per sample, no custom text): described from plain
    numbers, all samples at once (per sample and tensor, the same took most of a validation pass's extras)."""
    return logits.dim() == 1 and target.dim() == 1 and available.dim() == 1 and _library_text(task)


def _one_class_per_sample(task, logits, decoded, target, available) -> bool:
    """Classification: class scores per sample, one decoded class and one class id label (no custom text)."""
    return logits.dim() == 2 and decoded.dim() == 1 and target.dim() == 1 and available.dim() == 1 \
        and _library_text(task)


def _library_text(task) -> bool:
    """Whether the task leaves its texts to the library (no ``explain_value``/``explain_target`` of its own)."""
    return getattr(task, "explain_value", None) is None and getattr(task, "explain_target", None) is None


def _class_views(task, logits, activations, decoded, target, available, reached) -> list:
    names = _names(task, logits.shape[1])
    top = torch.argsort(activations, dim=1, descending=True, stable=True)[:, :shown_classes(task, logits.shape[1])]
    return [TaskView(target=describe_scalar_target(task, float(label)) if labelled else "not labelled",
                     prediction=describe_class(names, row_logits, row_activations, int(value), row_top),
                     target_value=None, predicted_value=None, reached=reach)
            for row_logits, row_activations, value, row_top, label, labelled, reach in zip(
                logits.tolist(), activations.tolist(), decoded.tolist(), top.tolist(), target.tolist(),
                available.tolist(), reached)]


def _scalar_views(task, logits, activations, decoded, target, available, reached) -> list:
    units = task.target_in_label_units(target) if hasattr(task, "target_in_label_units") else target
    threshold = _threshold(task)
    views = []
    for logit, activation, value, unit, labelled, reach in zip(
            logits.tolist(), activations.tolist(), decoded.tolist(), units.tolist(), available.tolist(), reached):
        value, unit = float(value), float(unit)
        views.append(TaskView(target=describe_scalar_target(task, unit) if labelled else "not labelled",
                              prediction=describe_scalar(task, logit, activation, value, threshold),
                              target_value=unit if labelled else None, predicted_value=value, reached=reach))
    return views
