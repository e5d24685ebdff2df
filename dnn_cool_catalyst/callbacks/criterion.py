"""Per-batch loss from ``flow.get_loss()``, and loader-level total and per-task losses."""
from __future__ import annotations

import torch
from catalyst.core.callback import CallbackOrder, ICriterionCallback


class FlowCriterionCallback(ICriterionCallback):
    """Puts the flow's masked loss in ``runner.batch_metrics[loss_key]`` (for the backward callback) and, at
    loader end, ``loss`` plus ``loss/<task_path>`` in ``runner.loader_metrics``.

    Per-task losses come from the same computation as the total (no second pass) and are averaged over the
    loader weighted by each batch's valid label count, so they equal the loss over the whole loader's valid
    samples. Accumulation stays on the device until loader end.
    """

    def __init__(self, flow, output_key: str = "outputs", loss_key: str = "loss", weights=None):
        super().__init__()
        self.order = CallbackOrder.Metric
        self.flow, self.output_key, self.loss_key = flow, output_key, loss_key
        self.loss_fn = flow.get_loss(weights)
        self._reset()

    def _reset(self):
        self._total = self._samples = None
        self._task_sums, self._task_counts = {}, {}

    def on_loader_start(self, runner) -> None:
        self._reset()

    def on_batch_end(self, runner) -> None:
        total, per_task, counts = self.loss_fn.compute(runner.batch[self.output_key], runner.batch,
                                                       with_counts=True)
        runner.batch_metrics[self.loss_key] = total
        n = runner.batch_size
        detached = total.detach() * n
        self._total = detached if self._total is None else self._total + detached
        self._samples = n if self._samples is None else self._samples + n
        for name, loss in per_task.items():
            weighted = loss * counts[name]
            if name in self._task_sums:
                self._task_sums[name] = self._task_sums[name] + weighted
                self._task_counts[name] = self._task_counts[name] + counts[name]
            else:
                self._task_sums[name], self._task_counts[name] = weighted, counts[name]

    def on_loader_end(self, runner) -> None:
        if self._total is None:
            return
        runner.loader_metrics[self.loss_key] = float(self._total) / max(self._samples, 1)
        paths = self.flow.task_paths
        for name, total in self._task_sums.items():
            count = float(self._task_counts[name])
            runner.loader_metrics[f"{self.loss_key}/{paths[name]}"] = float(total) / count if count else 0.0
