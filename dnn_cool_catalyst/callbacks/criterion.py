"""Per-batch loss from ``flow.get_loss()``, and loader-level total and per-task losses."""
from __future__ import annotations

import math

import torch
from catalyst.core.callback import CallbackOrder, ICriterionCallback

from ..graph.batch import ELEMENT_LOSSES_KEY, shared_ground_truth_masks
from ..kept_batches import keep
from ..measures.losses import FlowLoss
from ..parallel.distributed import all_reduce_sum, world_size
from ..parallel.replicas import REDUCTION_KEY

#: Where a compiled training step (``train(compile=True)``, training/compiled_step.py) leaves
#: ``(loss_fn, per_task, counts, total)``: the terms this callback would compute, computed inside the compiled graph.
STEP_TERMS_KEY = "loss_terms"
#: ... and the row this callback keeps per batch (float64: per-task losses, per-task valid counts, loss x batch size).
STEP_LOSS_ROW_KEY = "loss_row"


class FlowCriterionCallback(ICriterionCallback):
    """Puts the flow's masked loss in ``runner.batch_metrics[loss_key]`` (for the backward callback) and, at
    loader end, ``loss`` plus ``loss/<task_path>`` in ``runner.loader_metrics``.

    Per-task losses come from the same computation as the total (no second pass) and are averaged over the
    loader weighted by each batch's valid label count, so they equal the loss over the whole loader's valid
    samples. Accumulation stays on the device until loader end.

    Sources, in order: the :class:`~dnn_cool_catalyst.parallel.BatchReduction` the runner leaves in the batch
    under DataParallel memory balancing, the terms a compiled step left under ``STEP_TERMS_KEY`` (for this
    callback's loss), else the batch's ``outputs``.

    Under DDP (``world_size > 1``) each process holds a slice of the global batch: the per-task valid counts are
    summed over processes every step (a tiny all-reduce, no host sync) and each process's loss becomes
    ``world_size x Σ_t w_t · mean_t · local_count_t / global_count_t``. DDP averages gradients over processes, so
    the step is the one a single process takes on the whole global batch. Loader values are summed over processes
    at loader end and equal the single-process values.


    ``weights`` is ``loss_weights`` (see :class:`~dnn_cool_catalyst.measures.losses.FlowLoss`), validated here; or
    pass the ``loss_fn`` to use (the runner passes its criterion, whose learned uncertainty weights the optimizer
    updates and the checkpoints hold).
    """

    #: On the CPU, reading a value waits for nothing: each batch's row of sums is built from numbers. False keeps
    #: the device path, which never reads a value before loader end (the tests use it as a stand-in device).
    read_on_cpu = True

    def __init__(self, flow, output_key: str = "outputs", loss_key: str = "loss", weights=None, loss_fn=None):
        super().__init__()
        self.order = CallbackOrder.Metric
        self.flow, self.output_key, self.loss_key = flow, output_key, loss_key
        self.loss_fn = loss_fn if loss_fn is not None else flow.get_loss(weights)
        self._reset()

    def _reset(self):
        self._samples = None
        self._task_names = None
        self._rows: list = []  # per batch: [per-task losses, per-task valid counts, the batch's loss x its size]

    def on_loader_start(self, runner) -> None:
        self._reset()

    def _terms(self, runner):
        reduction = runner.batch.get(REDUCTION_KEY)
        if reduction is not None:
            return reduction.losses, reduction.counts
        if not isinstance(self.loss_fn, FlowLoss):  # a loss of your own computes its own masks
            return self.loss_fn.terms(runner.batch[self.output_key], runner.batch)
        masks = shared_ground_truth_masks(self.loss_fn.graph, runner.batch)  # computed once, reused by the metrics
        if torch.is_grad_enabled():
            return self.loss_fn.terms(runner.batch[self.output_key], runner.batch, masks=masks)
        # A validation pass: the element losses are left in the batch for the best/worst samples' per-sample losses
        elements = {}
        terms = self.loss_fn.terms(runner.batch[self.output_key], runner.batch, masks=masks, elements=elements)
        runner.batch[ELEMENT_LOSSES_KEY] = (self.loss_fn.graph, elements)
        return terms

    def on_batch_end(self, runner) -> None:
        step = runner.batch.get(STEP_TERMS_KEY)
        world = world_size()
        row = None
        if step is not None and step[0] is self.loss_fn and world == 1:
            per_task, counts, total = step[1:]
            row = runner.batch.get(STEP_LOSS_ROW_KEY)  # built inside the compiled step
        else:
            per_task, counts = self._terms(runner)
            total = self.loss_fn.combine(per_task, counts) if world == 1 else None
        if world == 1:
            runner.batch_metrics[self.loss_key] = total
            n = runner.batch_size
            batch_total = total.detach() * n if row is None else None
        else:
            names = list(per_task)
            device = per_task[names[0]].device
            valid = runner.batch.get("valid")
            n = valid.sum() if valid is not None else torch.tensor(runner.batch_size)
            local = torch.stack([counts[name].to(device, torch.float64) for name in names]
                                + [n.to(device, torch.float64)])
            summed = all_reduce_sum(local)
            global_counts = dict(zip(names, summed[:-1]))
            if hasattr(self.loss_fn, "average_learned_gradients_over_processes"):
                self.loss_fn.average_learned_gradients_over_processes()
            share = self.loss_fn.combine(per_task, counts, global_counts)  # this process's part of the batch loss
            runner.batch_metrics[self.loss_key] = share * world
            batch_total = share.detach() * summed[-1]  # summed over processes at loader end: loss x batch size
        self._samples = n if self._samples is None else self._samples + n
        names = self._task_names = self._task_names or list(per_task)
        if row is None:
            row = self._row([per_task[name] for name in names] + [counts[name] for name in names] + [batch_total])
        keep(self._rows, row[None])

    def _row(self, parts) -> torch.Tensor:
        """One small row per batch (one stack, which promotes the integer counts; no accumulation kernels), summed
        at loader end in float64."""
        if self.read_on_cpu and parts[-1].device.type == "cpu":  # numbers: cheaper than a stack of tensors
            return torch.tensor([v.item() if isinstance(v, torch.Tensor) else float(v) for v in parts],
                                dtype=torch.float64)
        with torch.no_grad():  # detached without a detach() per value
            try:
                return torch.stack(parts)
            except (TypeError, RuntimeError):  # counts given as numbers, or values not of shape ()
                return torch.stack([torch.as_tensor(v, device=parts[-1].device).reshape(()) for v in parts])

    def on_loader_end(self, runner) -> None:
        if not self._rows:
            return
        names = self._task_names
        t = len(names)
        rows = torch.cat(self._rows).to(torch.float64)
        device = rows.device
        samples = torch.as_tensor(self._samples, dtype=torch.float64, device=device).reshape(1)
        losses, counts = rows[:, :t], rows[:, t:2 * t]
        packed = torch.cat([rows[:, 2 * t].sum().reshape(1), samples, (losses * counts).sum(0), counts.sum(0)])
        values = (all_reduce_sum(packed) if world_size() > 1 else packed).tolist()  # the one host read
        total, samples = values[0], values[1]
        runner.loader_metrics[self.loss_key] = total / max(samples, 1)
        paths = self.flow.task_paths
        for name, task_sum, count in zip(names, values[2:2 + len(names)], values[2 + len(names):]):
            # A loss over zero samples is NaN, like every metric over nothing (the task had no valid label).
            runner.loader_metrics[f"{self.loss_key}/{paths[name]}"] = task_sum / count if count else math.nan
        for path, weight in getattr(self.loss_fn, "uncertainty_weights", dict)().items():
            runner.loader_metrics[f"loss_weight/{path}"] = weight
