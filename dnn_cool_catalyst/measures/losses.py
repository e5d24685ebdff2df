"""Masked multi-task losses that walk the flow graph.

Each task contributes the mean of its element losses over the elements its mask keeps (own label availability
∧ its preconditions on the ground truth). A task with nothing valid in the batch contributes exactly 0 and no
gradient; a batch where every task is empty still yields a zero loss that backpropagates.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from ..graph.batch import batch_labels, ground_truth_masks, output_logits
from ..graph.graph import CompiledGraph
from ..graph.members import member_element_loss, member_loss, output_member_logits
from ..parallel.distributed import all_reduce_sum, world_size
from ..parallel.precision import at_least_float32
from ..tasks.base import Task, TaskError, masked_mean, sample_mask


#: What ``loss_weights`` means when the user sets nothing (see README, "Loss balancing"): every task weight 1.0.
#: Regression targets are standardised (tasks/regression.py), so the per-task losses are on comparable scales.
DEFAULT_LOSS_WEIGHTS = None
UNCERTAINTY = "uncertainty"


def check_loss_weights(graph: CompiledGraph, weights) -> Optional[Dict[str, float]]:
    """Validate ``loss_weights``: ``None`` (every task 1.0), ``"uncertainty"``, or a dict of fixed weights keyed
    by task name or task path (finite numbers >= 0; unlisted tasks keep 1.0). Returns the weights by task name
    (``None`` for uncertainty weighting); raises :class:`TaskError` naming what was expected."""
    if weights is None:
        return {name: 1.0 for name in graph.tasks}
    if isinstance(weights, str):
        if weights == UNCERTAINTY:
            return None
        raise TaskError(f"loss_weights must be a dict of task weights, None or '{UNCERTAINTY}', got {weights!r}")
    if not isinstance(weights, Mapping):
        raise TaskError(f"loss_weights must be a dict of task weights, None or '{UNCERTAINTY}', got a "
                        f"{type(weights).__name__}")
    by_path = {path: name for name, path in graph.paths.items()}
    resolved = {name: 1.0 for name in graph.tasks}
    unknown = []
    for key, value in weights.items():
        name = key if key in graph.tasks else by_path.get(key)
        if name is None:
            unknown.append(key)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise TaskError(f"loss weight of task '{key}' must be a finite number >= 0, got {value!r}")
        resolved[name] = float(value)
    if unknown:
        raise TaskError(f"loss_weights name unknown tasks {unknown}; tasks are {list(graph.tasks)} (names) or "
                        f"{list(graph.paths.values())} (paths)")
    return resolved


class FlowLoss(nn.Module):
    """``loss(outputs, batch)`` → scalar: the weighted sum of per-task masked mean losses.

    ``weights``: ``None`` (every task 1.0), a dict of fixed weights (task name or path → finite weight >= 0), or
    ``"uncertainty"``: learned homoscedastic uncertainty (Kendall, Gal & Cipolla 2018) with one trained
    log-variance ``s_t`` per task (``log_vars``, a parameter of this module, so it is in the optimizer and in
    ``state_dict``/checkpoints) and ``total = Σ_t exp(-s_t) · L_t + s_t`` (the paper's classification form, used for
    every task: with standardised regression targets the factor 1/2 of the regression form only rescales s_t).
    ``s_t`` only enters a batch's total when task t has a valid label in it, so an absent task is not pushed
    towards ever larger weights.

    :meth:`compute` also returns each task's loss (detached, unweighted), so callbacks can log them without
    computing anything twice.
    """

    def __init__(self, graph: CompiledGraph, weights=DEFAULT_LOSS_WEIGHTS):
        super().__init__()
        self.graph = graph
        resolved = check_loss_weights(graph, weights)
        self.uncertainty = resolved is None
        self.weights = resolved or {name: 1.0 for name in graph.tasks}
        self._position = {name: i for i, name in enumerate(graph.tasks)}
        if self.uncertainty:
            self.log_vars = nn.Parameter(torch.zeros(len(graph.tasks)))

    def uncertainty_weights(self) -> Dict[str, float]:
        """The current learned weights ``exp(-s_t)`` by task path (empty unless ``weights="uncertainty"``)."""
        if not self.uncertainty:
            return {}
        weights = torch.exp(-self.log_vars.detach())
        return {self.graph.paths[name]: float(w) for name, w in zip(self.graph.tasks, weights)}

    def average_learned_gradients_over_processes(self) -> None:
        """Under DDP, make the learned log-variances' gradient the global batch's (once per process).

        DDP all-reduces the model's gradients, not the criterion's. Each process's total is ``world_size x`` its
        share of the global loss, so the global gradient is the mean of the processes' gradients."""
        if not self.uncertainty or getattr(self, "_gradient_hook", None) is not None or world_size() == 1:
            return
        self._gradient_hook = self.log_vars.register_hook(lambda grad: all_reduce_sum(grad) / world_size())

    def terms(self, outputs, batch, with_counts: bool = True, masks=None, elements: Optional[dict] = None):
        """``(per_task, counts)``: each task's masked mean loss (in the graph, float32 or wider even under
        autocast) and its number of valid label elements (``None`` unless ``with_counts``: a plain training step
        does not need them, except under uncertainty weighting). ``masks``: the batch's ground-truth masks when
        already computed (the training callbacks share them with the metrics). ``elements``: a dict that receives
        the element losses of the tasks whose loss is their masked mean (with counts only).

        A model with members (``outputs["member_logits"]``, training mode) gives each task the mean of its
        members' masked losses; the element losses are then averaged over members."""
        labels = batch_labels(self.graph, batch)
        targets = labels[0]
        if masks is None:
            masks = ground_truth_masks(self.graph, batch, labels)
        n = next(iter(targets.values())).shape[0]
        members = output_member_logits(self.graph, outputs, n)
        logits = members if members is not None else output_logits(self.graph, outputs, n)
        with_counts = with_counts or self.uncertainty
        counts = {name: mask.sum() for name, mask in masks.items()} if with_counts else None
        per_task = {}
        for name, task in self.graph.tasks.items():
            value = at_least_float32(logits[name])
            if counts is not None and type(task).loss is Task.loss:  # the count it divides by is known already
                element = (task.element_loss(value, targets[name]) if members is None
                           else member_element_loss(task, value, targets[name]))
                if elements is not None:
                    elements[name] = element
                per_task[name] = masked_mean(element, masks[name], counts[name])
            elif members is not None:
                per_task[name] = member_loss(task, value, targets[name], masks[name])
            else:
                per_task[name] = task.loss(value, targets[name], masks[name])
        return per_task, counts

    def combine(self, per_task, counts=None, global_counts=None) -> torch.Tensor:
        """The weighted sum of per-task losses.

        With ``global_counts`` (the valid counts of the whole global batch, summed over processes) each task's
        local mean is re-weighted to ``local count / global count``, so the losses of all processes add up to the
        loss of the global batch: what distributed training needs for its gradients to equal one process's.
        Under uncertainty weighting each process adds ``s_t · local count / global count`` (the shares sum to
        ``s_t``); without counts ``s_t`` is added for every task.
        """
        total = None
        for name, loss in per_task.items():
            share = None
            if global_counts is not None:
                share = counts[name].to(loss.dtype) / global_counts[name].to(loss.dtype).clamp(min=1)
                loss = loss * share
            if self.uncertainty:
                s = self.log_vars[self._position[name]].to(loss.dtype)
                if share is None:
                    share = (counts[name] > 0).to(loss.dtype) if counts is not None else 1.0
                weighted = torch.exp(-s) * loss + s * share
            else:
                weighted = loss if self.weights[name] == 1.0 else loss * self.weights[name]
            total = weighted if total is None else total + weighted
        return total

    def compute(self, outputs, batch, with_counts: bool = False):
        """``(total, per_task)``, or ``(total, per_task, counts)`` with each task's number of valid label
        elements (what a loader-level average of per-task losses must be weighted by)."""
        per_task, counts = self.terms(outputs, batch, with_counts)
        total = self.combine(per_task, counts)
        per_task = {name: loss.detach() for name, loss in per_task.items()}
        if with_counts:
            return total, per_task, counts
        return total, per_task

    def forward(self, outputs, batch) -> torch.Tensor:
        return self.compute(outputs, batch)[0]


class PerSampleLoss(nn.Module):
    """``per_sample(outputs, batch)`` → ``{task: {"loss", "index"}, "overall": {"loss", "index"}}``.

    For each task, the loss of every valid sample and its index: the dataset index when the batch carries
    ``"index"`` (as :meth:`TaskFlow.get_dataset` items do), else the position in the batch. ``overall`` is the
    per-sample sum over tasks (invalid tasks add 0) for every sample of the batch.
    """

    def __init__(self, graph: CompiledGraph):
        super().__init__()
        self.graph = graph

    @torch.no_grad()
    def forward(self, outputs, batch) -> Dict[str, Dict[str, torch.Tensor]]:
        labels = batch_labels(self.graph, batch)
        targets = labels[0]
        masks = ground_truth_masks(self.graph, batch, labels)
        n = next(iter(targets.values())).shape[0]
        logits = output_logits(self.graph, outputs, n)
        index = batch.get("index") if isinstance(batch, Mapping) else None
        device = next(iter(logits.values())).device
        index = torch.arange(n, device=device) if index is None else torch.as_tensor(index, device=device)
        result = {}
        overall = torch.zeros(n, device=device)
        for name, task in self.graph.tasks.items():
            losses = task.per_sample_loss(at_least_float32(logits[name]), targets[name], masks[name]).float()
            overall = overall + losses
            valid = sample_mask(masks[name])
            result[name] = {"loss": losses[valid], "index": index[valid]}
        result["overall"] = {"loss": overall, "index": index}
        return result
