"""Masked metrics from sufficient statistics: the functional core (pure tensor math, no state).

Each ``*_stats`` function turns a batch into a small float64 vector of counts and sums, and each ``*_values``
function turns summed vectors into dataset-level values. Because the statistics only ever add up, the same code is
correct per batch, per loader, across DataParallel replicas and across DDP processes (reduce with a sum). Tasks
call these from ``metric_stats`` / ``metric_values``; :class:`~dnn_cool_catalyst.measures.metrics.TaskMetric` is
the stateful wrapper used by callbacks.

Example:
    >>> import torch
    >>> s = binary_stats(torch.tensor([1., 0., 1.]), torch.tensor([1., 1., 1.]), torch.tensor([True, True, False]))
    >>> binary_values(s)["accuracy"]
    0.5
"""
from __future__ import annotations

import math
from typing import Dict

import torch

STATS_DTYPE = torch.float64


def safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def binary_stats(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[tp, fp, fn, tn]`` over the masked elements of 0/1 ``pred`` and ``target``."""
    p = (pred > 0.5) & mask
    t = (target > 0.5) & mask
    n_p, n_t = p.sum(), t.sum()
    tp = (p & t).sum()
    total = mask.sum()
    return torch.stack([tp, n_p - tp, n_t - tp, total - n_p - n_t + tp]).to(STATS_DTYPE)


def stacked_binary_stats(logits: torch.Tensor, thresholds: torch.Tensor, target: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """:func:`binary_stats` of ``T`` binary tasks at once: ``(T, N)`` logits, targets and masks and ``(T, 1)``
    thresholds on the sigmoid (as ``BinaryTask.decode``) -> ``(T, 4)``. Exactly the per-task counts, in a dozen
    kernels instead of a dozen per task.

    Example:
        >>> logits, target = torch.tensor([[2.0, -1.0], [0.0, 3.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
        >>> stacked_binary_stats(logits, torch.tensor([[0.5], [0.5]]), target, torch.ones(2, 2, dtype=torch.bool))
        tensor([[1., 0., 1., 0.],
                [1., 1., 0., 0.]], dtype=torch.float64)
    """
    p = (torch.sigmoid(logits) >= thresholds) & mask
    t = (target > 0.5) & mask
    n_p, n_t = p.sum(1), t.sum(1)
    tp = (p & t).sum(1)
    total = mask.sum(1)
    return torch.stack([tp, n_p - tp, n_t - tp, total - n_p - n_t + tp], dim=1).to(STATS_DTYPE)


def nan_div(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0: a ratio over nothing is undefined, not 0 (as sklearn's
    ``zero_division=np.nan``)."""
    return float(num) / float(den) if den > 0 else math.nan


def binary_values(stats: torch.Tensor) -> Dict[str, float]:
    """Accuracy, F1, precision and recall of ``[tp, fp, fn, tn]``. Recall without positives, precision without
    predicted positives and F1 with neither are NaN (undefined), not 0: a split without positives says nothing
    about them.

    Example:
        >>> {k: round(v, 3) for k, v in binary_values(torch.tensor([0., 0., 0., 5.])).items()}
        {'accuracy': 1.0, 'f1': nan, 'precision': nan, 'recall': nan}
        >>> {k: round(v, 3) for k, v in binary_values(torch.tensor([0., 2., 0., 3.])).items()}
        {'accuracy': 0.6, 'f1': 0.0, 'precision': 0.0, 'recall': nan}
    """
    tp, fp, fn, tn = (float(v) for v in stats[:4])
    return {
        "accuracy": safe_div(tp + tn, tp + fp + fn + tn),
        "f1": nan_div(2 * tp, 2 * tp + fp + fn),
        "precision": nan_div(tp, tp + fp),
        "recall": nan_div(tp, tp + fn),
    }


def confusion_stats(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Flattened ``n_classes x n_classes`` confusion counts (rows: target, columns: prediction)."""
    # index_add_ instead of bincount(index[mask]): no boolean indexing, so no host-device sync on GPU.
    index = (target.long().clamp(0, n_classes - 1) * n_classes + pred.long().clamp(0, n_classes - 1)).flatten()
    counts = torch.zeros(n_classes * n_classes, dtype=STATS_DTYPE, device=pred.device)
    return counts.index_add_(0, index, mask.flatten().to(STATS_DTYPE))


def confusion_values(confusion: torch.Tensor, n_classes: int) -> Dict[str, float]:
    """Accuracy and macro precision/recall/F1 over the classes seen in targets or predictions (as sklearn)."""
    cm = confusion.reshape(n_classes, n_classes).double()
    tp = cm.diag()
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    total = float(cm.sum())
    if not bool(present.any()):
        return {"accuracy": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)[present]
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)[present]
    f1_den = (support + predicted)[present]
    f1 = torch.where(f1_den > 0, 2 * tp[present] / f1_den.clamp(min=1), 0.0)
    return {
        "accuracy": safe_div(float(tp.sum()), total),
        "f1": float(f1.mean()),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
    }


def error_stats(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[sum |e|, sum e^2, count, sum y, sum y^2]`` over the masked elements (the last two give R^2)."""
    err = torch.where(mask, pred.double() - target.double(), 0.0)
    y = torch.where(mask, target.double(), 0.0)
    return torch.stack([err.abs().sum(), (err * err).sum(), mask.sum().double(), y.sum(), (y * y).sum()]
                       ).to(STATS_DTYPE)


def error_values(stats: torch.Tensor, scale: float = 1.0) -> Dict[str, float]:
    """MAE, RMSE (times ``scale``) and R^2 = 1 - SSE / SST (NaN when the targets are constant or absent).

    Example:
        >>> import torch
        >>> s = error_stats(torch.tensor([1., 2., 4.]), torch.tensor([1., 3., 5.]), torch.tensor([True] * 3))
        >>> {k: round(v, 3) for k, v in error_values(s).items()}
        {'mae': 0.667, 'rmse': 0.816, 'r2': 0.75}
    """
    abs_sum, sq_sum, count = (float(v) for v in stats[:3])
    if count <= 0:
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan}
    values = {"mae": abs_sum / count * scale, "rmse": (sq_sum / count) ** 0.5 * scale, "r2": math.nan}
    if stats.numel() >= 5:
        y_sum, y_sq = float(stats[3]), float(stats[4])
        total = y_sq - y_sum * y_sum / count
        if total > 1e-12 * max(y_sq, 1.0):
            values["r2"] = 1.0 - sq_sum / total
    return values
