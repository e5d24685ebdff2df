"""Masked multi-task losses that walk the flow graph.

Each task contributes the mean of its element losses over the elements its mask keeps (own label availability
∧ its preconditions on the ground truth). A task with nothing valid in the batch contributes exactly 0 and no
gradient; a batch where every task is empty still yields a zero loss that backpropagates.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import nn

from .flow.batch import batch_labels, ground_truth_masks, output_logits
from .flow.graph import CompiledGraph
from .parallel.precision import at_least_float32
from .tasks.base import TaskError, sample_mask


class FlowLoss(nn.Module):
    """``loss(outputs, batch)`` → scalar: the weighted sum of per-task masked mean losses.

    :meth:`compute` also returns each task's loss (detached), so callbacks can log them without computing
    anything twice.
    """

    def __init__(self, graph: CompiledGraph, weights: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.graph = graph
        weights = dict(weights or {})
        unknown = set(weights) - set(graph.tasks)
        if unknown:
            raise TaskError(f"loss weights name unknown tasks {sorted(unknown)}; tasks are {sorted(graph.tasks)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in graph.tasks}

    def terms(self, outputs, batch, with_counts: bool = True):
        """``(per_task, counts)``: each task's masked mean loss (in the graph, float32 or wider even under
        autocast) and its number of valid label elements (``None`` unless ``with_counts``: a plain training step
        does not need them)."""
        labels = batch_labels(self.graph, batch)
        targets = labels[0]
        masks = ground_truth_masks(self.graph, batch, labels)
        logits = output_logits(self.graph, outputs, next(iter(targets.values())).shape[0])
        per_task = {name: task.loss(at_least_float32(logits[name]), targets[name], masks[name])
                    for name, task in self.graph.tasks.items()}
        return per_task, ({name: mask.sum() for name, mask in masks.items()} if with_counts else None)

    def combine(self, per_task, counts=None, global_counts=None) -> torch.Tensor:
        """The weighted sum of per-task losses.

        With ``global_counts`` (the valid counts of the whole global batch, summed over processes) each task's
        local mean is re-weighted to ``local count / global count``, so the losses of all processes add up to the
        loss of the global batch: what distributed training needs for its gradients to equal one process's.
        """
        total = None
        for name, loss in per_task.items():
            if global_counts is not None:
                loss = loss * (counts[name].to(loss.dtype) / global_counts[name].to(loss.dtype).clamp(min=1))
            weighted = loss if self.weights[name] == 1.0 else loss * self.weights[name]
            total = weighted if total is None else total + weighted
        return total

    def compute(self, outputs, batch, with_counts: bool = False):
        """``(total, per_task)``, or ``(total, per_task, counts)`` with each task's number of valid label
        elements (what a loader-level average of per-task losses must be weighted by)."""
        per_task, counts = self.terms(outputs, batch, with_counts)
        total = self.combine(per_task)
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
