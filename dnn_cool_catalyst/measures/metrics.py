"""Masked metrics from sufficient statistics.

The functional core turns a batch into a small float64 vector of counts and sums (``*_stats``) and turns summed
vectors into dataset-level values (``*_values``). Because the statistics only ever add up, the same code is
correct per batch, per loader, across DataParallel replicas and across DDP processes (reduce with a sum).
:class:`TaskMetric` is the thin stateful wrapper used by callbacks.

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

from ..kept_batches import JOIN_EVERY
from ..parallel.precision import at_least_float32
from ..tasks.base import sample_mask

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


class TaskMetric:
    """Accumulates one task's sufficient statistics over a loader.

    ``state`` reduces across devices and processes with a sum.

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst.tasks import BinaryTask
        >>> metric = TaskMetric(BinaryTask("door_open"))
        >>> metric.update(torch.tensor([5., -5.]), torch.tensor([1., 1.]), torch.tensor([True, True]))
        >>> metric.update(torch.tensor([5.]), torch.tensor([0.]), torch.tensor([False]))   # masked out
        >>> metric.compute()["accuracy"], metric.num_samples
        (0.5, 2)
    """

    reduction = "sum"

    def __init__(self, task):
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.state = None
        self._num_samples = None

    def update(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch. Stays on the batch's device: no host-device sync until :meth:`compute`."""
        with torch.no_grad():
            stats = self.task.metric_stats(at_least_float32(logits.detach()), target, mask)
            self.merge(stats, sample_mask(mask).sum())

    def merge(self, stats: torch.Tensor, num_samples) -> None:
        """Add statistics computed elsewhere (another replica, process or batch)."""
        stats = stats.detach().to(STATS_DTYPE)
        num_samples = torch.as_tensor(num_samples, dtype=STATS_DTYPE, device=stats.device)
        if self.state is None:
            self.state, self._num_samples = stats, num_samples
        else:
            self.state = self.state + stats.to(self.state.device)
            self._num_samples = self._num_samples + num_samples.to(self.state.device)

    @property
    def num_samples(self) -> int:
        return 0 if self._num_samples is None else int(self._num_samples)

    def compute(self) -> Dict[str, float]:
        """Metric values; every one is NaN when no sample was seen (a metric over nothing is not 0)."""
        if self.state is None or self.num_samples == 0:
            return {name: math.nan for name in self.task.metric_names}
        return self.task.metric_values(self.state.cpu())

    def packed(self) -> torch.Tensor:
        """``[num_samples, *state]`` as one float64 vector (empty before the first update)."""
        if self.state is None:
            return torch.zeros(0, dtype=STATS_DTYPE)
        return torch.cat([self._num_samples.reshape(1), self.state])

    def unpack(self, vector: torch.Tensor) -> None:
        """Set the state from :meth:`packed` output (all zeros means "nothing seen": the state stays empty)."""
        if vector.numel() == 0 or not bool(vector.any()):
            self.reset()
            return
        self._num_samples, self.state = vector[0], vector[1:]


class FlowMetrics:
    """Every task's :class:`TaskMetric`, updated from model outputs and a batch under ground-truth gating
    (or with masks you pass, e.g. decoded gating for end-to-end evaluation)."""

    #: Batches wait (detached) until this many are pending, or this many bytes of logits, targets and masks,
    #: then their statistics are computed in one pass: per batch, the dozen small kernels each task's statistics
    #: take cost as much as a small model's whole step (the 6-task tabular flow, benchmarks/README.md). Not a
    #: whole loader: tensors kept over many steps grow the C heap (see :mod:`dnn_cool_catalyst.kept_batches`);
    #: for the same reason the pending batches are joined every ``JOIN_EVERY`` and freed at every flush.
    pending_batches_limit = 64
    pending_bytes_limit = 32 * 2 ** 20

    def __init__(self, graph):
        self.graph = graph
        self.metrics = {name: TaskMetric(task) for name, task in graph.tasks.items()}
        self._thresholds: Dict[tuple, torch.Tensor] = {}
        self._reset_pending()

    def _reset_pending(self) -> None:
        self._pending: list = []  # entries {task: (logits, targets, masks)}, the first _joined of them joined
        self._joined = self._pending_batches = self._pending_bytes = 0

    def reset(self) -> None:
        self._reset_pending()
        for metric in self.metrics.values():
            metric.reset()

    def update(self, outputs, batch, masks=None) -> None:
        """Add one batch. Its statistics are computed with later batches' (at the latest by :meth:`compute`,
        :meth:`sync` or :meth:`flush`), so decoding settings such as thresholds must not change in between."""
        from ..flow.batch import batch_labels, ground_truth_masks, output_logits

        labels = batch_labels(self.graph, batch)
        targets = labels[0]
        masks = ground_truth_masks(self.graph, batch, labels) if masks is None else masks
        logits = output_logits(self.graph, outputs, next(iter(targets.values())).shape[0])
        entry = {name: (logits[name].detach(), targets[name], masks[name]) for name in self.metrics}
        self._pending.append(entry)
        self._pending_batches += 1
        self._pending_bytes += sum(t.numel() * t.element_size() for parts in entry.values() for t in parts)
        if self._pending_batches >= self.pending_batches_limit or self._pending_bytes >= self.pending_bytes_limit:
            self.flush()
        elif len(self._pending) - self._joined >= JOIN_EVERY:
            self._join_recent()

    def _join_recent(self) -> None:
        """The batches added since the last join as one entry (or, if they do not concatenate, all computed)."""
        try:
            joined = _joined(self._pending[self._joined:])
        except RuntimeError:
            self.flush()
            return
        self._pending[self._joined:] = [joined]
        self._joined += 1

    def flush(self) -> None:
        """Compute the statistics of the pending batches (all at once) and add them to each task's state."""
        pending = self._pending
        self._reset_pending()
        if not pending:
            return
        try:
            joined = pending[0] if len(pending) == 1 else _joined(pending)
        except RuntimeError:  # batches that do not stack (e.g. token tasks padded per batch): one at a time
            for entry in pending:
                self._update_now({n: v[0] for n, v in entry.items()}, {n: v[1] for n, v in entry.items()},
                                 {n: v[2] for n, v in entry.items()})
            return
        self._update_now({n: v[0] for n, v in joined.items()}, {n: v[1] for n, v in joined.items()},
                         {n: v[2] for n, v in joined.items()})

    def _update_now(self, logits, targets, masks) -> None:
        fused = self._fusable_binary(logits, targets, masks)
        if fused:
            self._update_binary(fused, logits, targets, masks)
        for name, metric in self.metrics.items():
            if name not in fused:
                metric.update(logits[name], targets[name], masks[name])

    def _fusable_binary(self, logits, targets, masks) -> list:
        """Plain binary tasks with one label per sample, when there are several: their statistics are computed
        together (many tasks would otherwise cost a dozen small kernels each, per batch)."""
        from ..tasks.binary import BinaryTask

        names = [name for name, metric in self.metrics.items()
                 if isinstance(metric.task, BinaryTask) and type(metric.task).metric_stats is BinaryTask.metric_stats
                 and type(metric.task).decode is BinaryTask.decode
                 and logits[name].dim() == 1 and masks[name].dim() == 1 and targets[name].dim() == 1]
        if len(names) < 2 or len({(logits[n].device, targets[n].dtype) for n in names}) != 1:
            return []
        return names

    def _update_binary(self, names, logits, targets, masks) -> None:
        with torch.no_grad():
            stacked = torch.stack([at_least_float32(logits[n].detach()) for n in names])
            values = tuple(float(self.metrics[n].task.threshold) for n in names)
            key = (values, stacked.dtype, stacked.device)
            thresholds = self._thresholds.get(key)
            if thresholds is None:  # built once per thresholds/device: a copy to a GPU per batch would wait for it
                thresholds = self._thresholds[key] = torch.tensor([[v] for v in values], dtype=stacked.dtype,
                                                                  device=stacked.device)
            mask = torch.stack([masks[n] for n in names])
            stats = stacked_binary_stats(stacked, thresholds, torch.stack([targets[n] for n in names]), mask)
            counts = mask.sum(1)
        for i, name in enumerate(names):
            self.metrics[name].merge(stats[i], counts[i])

    def merge(self, stats: Dict[str, torch.Tensor], num_samples: Dict[str, torch.Tensor]) -> None:
        """Add statistics computed elsewhere, e.g. summed over DataParallel replicas."""
        self.flush()
        for name, metric in self.metrics.items():
            metric.merge(stats[name], num_samples[name])

    def sync(self) -> None:
        """Sum every task's statistics over all processes (a no-op in one process); call once, at loader end.

        Two small collectives: the length of each task's state (a process that saw no batch has none yet), then
        one sum over all states packed together. Padding a distributed sampler adds carries no available label,
        so it is in no statistic and nothing needs de-duplicating here.
        """
        from ..parallel.distributed import all_reduce_max, all_reduce_sum, world_size

        self.flush()
        if world_size() == 1:
            return
        packed = {name: metric.packed() for name, metric in self.metrics.items()}
        device = next((v.device for v in packed.values() if v.numel()), torch.device("cpu"))
        lengths = all_reduce_max(torch.tensor([v.numel() for v in packed.values()], device=device))
        flat = torch.cat([v.to(device) if v.numel() else torch.zeros(int(n), dtype=STATS_DTYPE, device=device)
                          for v, n in zip(packed.values(), lengths.tolist())])
        summed = all_reduce_sum(flat)
        for (name, metric), part in zip(self.metrics.items(), torch.split(summed, lengths.tolist())):
            metric.unpack(part)

    def compute(self) -> Dict[str, Dict[str, float]]:
        """``{task_path: {metric_name: value}}``."""
        self.flush()
        return {self.graph.paths[name]: metric.compute() for name, metric in self.metrics.items()}


def _joined(entries: list) -> dict:
    """Pending entries concatenated along the batch: one entry. RuntimeError when they do not concatenate."""
    return {name: tuple(torch.cat([entry[name][k] for entry in entries]) for k in range(3)) for name in entries[0]}
