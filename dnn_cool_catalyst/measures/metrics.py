"""Stateful metrics: one task's statistics over a loader, and every task's under the flow's gating.

The math is :mod:`dnn_cool_catalyst.functional.metrics` (sufficient statistics that add up);
:class:`TaskMetric` accumulates one task's, :class:`FlowMetrics` every task's, as callbacks use them. Two
optimisations keep the per-batch cost low, each a named part of :class:`FlowMetrics`: a :class:`BatchBuffer` of
pending batches computed in one pass, and the ``binary_compute_group`` of plain binary tasks whose statistics are
computed together (torchmetrics would call it a compute group).
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Tuple

import torch

from ..graph.batch import batch_labels, ground_truth_masks, output_logits
from ..functional.metrics import STATS_DTYPE, stacked_binary_stats
from ..kept_batches import JOIN_EVERY
from ..parallel.distributed import all_reduce_max, all_reduce_sum, world_size
from ..parallel.precision import at_least_float32
from ..tasks.base import Task, sample_mask
from ..tasks.binary import BinaryTask


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


class BatchBuffer:
    """Batches waiting (detached) for their statistics, computed in one pass when the buffer is flushed.

    Per batch, the dozen small kernels each task's statistics take cost as much as a small model's whole step (the
    6-task tabular flow, benchmarks/README.md), so batches wait until ``batches_limit`` are pending, or
    ``bytes_limit`` bytes of logits, targets and masks. Not a whole loader: tensors kept over many steps grow the C
    heap (see :mod:`dnn_cool_catalyst.kept_batches`); for the same reason the pending batches are joined every
    ``JOIN_EVERY`` and freed at every flush. An entry is ``{task: (logits, targets, masks)}``.

    Example:
        >>> buffer = BatchBuffer(batches_limit=2)
        >>> buffer.add({"a": (torch.zeros(3), torch.ones(3), torch.ones(3, dtype=torch.bool))})
        False
        >>> buffer.add({"a": (torch.zeros(2), torch.ones(2), torch.ones(2, dtype=torch.bool))})  # limit reached
        True
        >>> [entry["a"][0].shape[0] for entry in buffer.take()], buffer.entries
        ([5], [])
    """

    batches_limit = 64
    bytes_limit = 32 * 2 ** 20

    def __init__(self, batches_limit: int = batches_limit, bytes_limit: int = bytes_limit):
        self.batches_limit, self.bytes_limit = batches_limit, bytes_limit
        self.clear()

    def clear(self) -> None:
        self.entries: list = []  # the first _joined of them each join several batches
        self._joined = self.batches = self.bytes = 0

    def add(self, entry: Dict[str, Tuple[torch.Tensor, ...]]) -> bool:
        """Hold one batch's entry; True when the buffer is due for :meth:`take` (a limit is reached, or the
        batches added since the last join do not concatenate)."""
        self.entries.append(entry)
        self.batches += 1
        self.bytes += sum(t.numel() * t.element_size() for parts in entry.values() for t in parts)
        if self.batches >= self.batches_limit or self.bytes >= self.bytes_limit:
            return True
        return len(self.entries) - self._joined >= JOIN_EVERY and not self._join_recent()

    def _join_recent(self) -> bool:
        """The batches added since the last join as one entry; False (nothing changed) if they do not concatenate."""
        try:
            joined = _joined(self.entries[self._joined:])
        except RuntimeError:
            return False
        self.entries[self._joined:] = [joined]
        self._joined += 1
        return True

    def take(self) -> List[Dict[str, Tuple[torch.Tensor, ...]]]:
        """Empty the buffer: its entries joined into one where they concatenate, else as they are (e.g. token
        tasks padded per batch), to be computed one at a time."""
        entries = self.entries
        self.clear()
        if len(entries) <= 1:
            return entries
        try:
            return [_joined(entries)]
        except RuntimeError:
            return entries


def binary_compute_group(tasks: Mapping[str, Task]) -> Tuple[str, ...]:
    """The plain binary tasks (``BinaryTask``'s own statistics and decoding): those whose statistics
    :class:`FlowMetrics` computes in one pass when a batch gives each of them one label per sample.

    >>> from dnn_cool_catalyst.tasks import RegressionTask
    >>> binary_compute_group({"a": BinaryTask("a"), "b": BinaryTask("b", threshold=0.7), "n": RegressionTask("n")})
    ('a', 'b')
    """
    return tuple(name for name, task in tasks.items()
                 if isinstance(task, BinaryTask) and type(task).metric_stats is BinaryTask.metric_stats
                 and type(task).decode is BinaryTask.decode)


class FlowMetrics:
    """Every task's :class:`TaskMetric`, updated from model outputs and a batch under ground-truth gating
    (or with masks you pass, e.g. decoded gating for end-to-end evaluation).

    Batches wait in a :class:`BatchBuffer` (``pending_batches_limit`` / ``pending_bytes_limit`` are its limits);
    the tasks of ``binary_compute_group`` (see :func:`binary_compute_group`) share one pass over each flush.
    """

    def __init__(self, graph):
        self.graph = graph
        self.metrics = {name: TaskMetric(task) for name, task in graph.tasks.items()}
        self.binary_compute_group = binary_compute_group(graph.tasks)
        self.buffer = BatchBuffer()
        self._thresholds: Dict[tuple, torch.Tensor] = {}

    @property
    def pending_batches_limit(self) -> int:
        return self.buffer.batches_limit

    @pending_batches_limit.setter
    def pending_batches_limit(self, value: int) -> None:
        self.buffer.batches_limit = value

    @property
    def pending_bytes_limit(self) -> int:
        return self.buffer.bytes_limit

    @pending_bytes_limit.setter
    def pending_bytes_limit(self, value: int) -> None:
        self.buffer.bytes_limit = value

    @property
    def _pending(self) -> list:  # the pending entries, as tests inspect them
        return self.buffer.entries

    def reset(self) -> None:
        self.buffer.clear()
        for metric in self.metrics.values():
            metric.reset()

    def update(self, outputs, batch, masks=None) -> None:
        """Add one batch. Its statistics are computed with later batches' (at the latest by :meth:`compute`,
        :meth:`sync` or :meth:`flush`), so decoding settings such as thresholds must not change in between."""
        labels = batch_labels(self.graph, batch)
        targets = labels[0]
        masks = ground_truth_masks(self.graph, batch, labels) if masks is None else masks
        logits = output_logits(self.graph, outputs, next(iter(targets.values())).shape[0])
        if self.buffer.add({name: (logits[name].detach(), targets[name], masks[name]) for name in self.metrics}):
            self.flush()

    def flush(self) -> None:
        """Compute the statistics of the pending batches (all at once) and add them to each task's state."""
        for entry in self.buffer.take():
            self._update_now({n: v[0] for n, v in entry.items()}, {n: v[1] for n, v in entry.items()},
                             {n: v[2] for n, v in entry.items()})

    def _update_now(self, logits, targets, masks) -> None:
        fused = self._fusable_binary(logits, targets, masks)
        if fused:
            self._update_binary(fused, logits, targets, masks)
        for name, metric in self.metrics.items():
            if name not in fused:
                metric.update(logits[name], targets[name], masks[name])

    def _fusable_binary(self, logits, targets, masks) -> list:
        """The tasks of ``binary_compute_group`` with one label per sample in this batch, when there are several
        on one device and dtype: their statistics are computed together (many tasks would otherwise cost a dozen
        small kernels each, per batch)."""
        names = [name for name in self.binary_compute_group
                 if logits[name].dim() == 1 and masks[name].dim() == 1 and targets[name].dim() == 1]
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
