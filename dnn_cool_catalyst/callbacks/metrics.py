"""Masked per-task metrics from sufficient statistics, computed once per loader."""
from __future__ import annotations

from catalyst.core.callback import Callback, CallbackOrder

from ..graph.batch import shared_ground_truth_masks
from ..parallel.replicas import REDUCTION_KEY


class FlowMetricsCallback(Callback):
    """Accumulates every task's metric statistics over a loader (ground-truth gating) and writes
    ``<task_path>/<metric>`` into ``runner.loader_metrics`` at loader end, so Catalyst's loggers (TensorBoard
    included) show one scalar per task and metric for each loader.

    ``on_batch_end`` only updates device tensors; the host sees the statistics once, at loader end. Under
    DataParallel memory balancing the replicas' summed statistics are merged as they come; under DDP every
    process's statistics are summed at loader end, before the values are computed, so each process logs the
    metrics of the whole loader.
    """

    def __init__(self, flow, output_key: str = "outputs"):
        super().__init__(order=CallbackOrder.Metric)
        self.flow, self.output_key = flow, output_key
        self.metrics = flow.get_metrics()

    def on_loader_start(self, runner) -> None:
        self.metrics.reset()

    def on_batch_end(self, runner) -> None:
        reduction = runner.batch.get(REDUCTION_KEY)
        if reduction is not None:
            self.metrics.merge(reduction.stats, reduction.samples)
        else:
            masks = shared_ground_truth_masks(self.metrics.graph, runner.batch)  # the loss's, when it ran first
            self.metrics.update(runner.batch[self.output_key], runner.batch, masks=masks)

    def on_loader_end(self, runner) -> None:
        self.metrics.sync()
        for path, values in self.metrics.compute().items():
            for name, value in values.items():
                runner.loader_metrics[f"{path}/{name}"] = value
