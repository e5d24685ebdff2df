"""Precision-recall curves of thresholded tasks, and the precision/recall point of a tuned threshold.

A task gets curves when its decoder has thresholds, read through the task interface (no task type is special):
``{"threshold": t}`` with one activation per sample gives one curve; ``{"thresholds": [...]}`` with one activation
per class gives one curve per class, named by ``class_names``. Curves use the ground-truth-gated elements, the
same ones tuning uses.

Example:
    >>> import numpy as np
    >>> precision_recall_at(np.array([0.9, 0.6, 0.4, 0.2]), np.array([1, 0, 1, 0]), 0.5)
    {'precision': 0.5, 'recall': 0.5}
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ..measures.evaluation import split_masks


def precision_recall_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Dict[str, float]:
    """Precision and recall of ``score >= threshold`` (0 where undefined, as the tuner counts them)."""
    predicted, actual = np.asarray(scores) >= threshold, np.asarray(labels) > 0.5
    tp = int((predicted & actual).sum())
    fp, fn = int((predicted & ~actual).sum()), int((~predicted & actual).sum())
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0}


def _columns(task, activations: torch.Tensor) -> Optional[Dict[Optional[int], str]]:
    """Score column → curve name suffix, or None when the task has no thresholds to draw curves for."""
    params = task.get_decoder_params()
    if "threshold" in params and activations.dim() == 1:
        return {None: ""}
    thresholds = params.get("thresholds")
    if thresholds is not None and activations.dim() == 2 and activations.shape[1] == len(thresholds):
        names = getattr(task, "class_names", None) or [str(j) for j in range(len(thresholds))]
        return {j: f"/{names[j]}" for j in range(len(thresholds))}
    return None


Curve = Tuple[str, np.ndarray, np.ndarray]  # (name suffix, labels, scores)


def _task_curves(flow, activations, targets, masks) -> Iterator[Tuple[object, List[Curve]]]:
    """Per thresholded leaf, in flow order: ``(leaf, [(suffix, labels, scores)])``, one entry per score column
    (in the order of the task's thresholds), on the masked elements."""
    for leaf in flow.graph.leaves:
        name = leaf.name
        columns = _columns(leaf.task, activations[name])
        if columns is None:
            continue
        curves = []
        for column, suffix in columns.items():
            pick = (lambda t: t) if column is None else (lambda t, j=column: t[:, j])
            mask = pick(masks[name]).numpy().astype(bool)
            curves.append((suffix, pick(targets[name]).numpy()[mask] > 0.5,
                           pick(activations[name]).double().numpy()[mask]))
        yield leaf, curves


def curve_data(flow, activations: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
               masks: Mapping[str, torch.Tensor]) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """``(name, labels, scores)`` per curve; name is the task path, with ``/<class>`` per class."""
    for leaf, curves in _task_curves(flow, activations, targets, masks):
        for suffix, labels, scores in curves:
            yield f"{leaf.path}{suffix}", labels, scores


def log_pr_curves(writer, flow, stored: Mapping[str, Mapping[str, torch.Tensor]], step: int = 0,
                  num_thresholds: int = 127, prefix: str = "pr_curve") -> Dict[str, int]:
    """One ``add_pr_curve`` per curve of :func:`curve_data` on stored inference arrays (``mask_gt`` elements).
    Curves without samples are skipped. Returns ``{tag: number of samples}``."""
    activations = {name: fields["activations"] for name, fields in stored.items()}
    targets = {name: fields["targets"] for name, fields in stored.items()}
    masks = {name: fields["mask_gt"] for name, fields in stored.items()}
    written = {}
    for name, labels, scores in curve_data(flow, activations, targets, masks):
        if labels.size == 0:
            continue
        tag = f"{prefix}/{name}"
        writer.add_pr_curve(tag, labels.astype(np.int64), np.clip(scores, 0.0, 1.0), global_step=step,
                            num_thresholds=num_thresholds)
        written[tag] = int(labels.size)
    return written


def mark_tuned_points(flow, logits, targets, available, report: dict) -> dict:
    """Add ``precision`` and ``recall`` at the tuned threshold to each entry of a
    :func:`~..measures.evaluation.tune_flow` report (the entries of a per-class task are in class order), computed on
    the same gated samples."""
    masks = split_masks(flow, logits, targets, available, "gt")
    activations = {name: task.activation(logits[name]) for name, task in flow.tasks.items()}
    curves = {leaf.path: task_curves for leaf, task_curves in _task_curves(flow, activations, targets, masks)}
    for path, entries in report.items():
        task_curves = curves.get(path)
        if task_curves is None or len(task_curves) != len(entries):
            continue
        for (_, labels, scores), entry in zip(task_curves, entries.values()):
            entry.update(precision_recall_at(scores, labels, float(entry["threshold"])))
    return report
