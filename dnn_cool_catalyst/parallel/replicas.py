"""DataParallel memory balancing: each replica reduces its own chunk, only small tensors travel.

Plain ``nn.DataParallel`` gathers every replica's logits on the main device and computes the loss there, so the
main GPU holds the whole batch's outputs (vocabulary-sized for token tasks) and its memory fills first. With
balancing, each replica computes on its own device, for its chunk of the batch:

* every task's masked mean loss (with grad) and its number of valid label elements,
* the metric sufficient statistics and valid-sample counts (no grad),
* the per-sample losses and their validity (no grad),

and only those travel. :func:`combine_replicas` weights each replica's mean loss by its valid count, which gives
exactly the loss over the whole batch's valid elements, whatever the chunk sizes and even when a chunk has no valid
sample for a task (weight 0: no gradient and no NaN). Statistics add up; per-sample rows keep the batch order, so
their global ``index`` stays right.

The orchestration in :func:`balanced_forward` is the body of ``nn.DataParallel.forward`` (scatter, replicate,
parallel_apply, gather) with the reduction moved into the replicas; it talks to the wrapper only through those four
methods, which is how it is tested without GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import torch

from ..graph.batch import batch_labels, ground_truth_masks, output_logits
from ..graph.members import member_loss, output_member_logits
from ..tasks.base import sample_mask
from .precision import at_least_float32, autocast

#: Where the runner puts the combined :class:`BatchReduction` in ``runner.batch``.
REDUCTION_KEY = "flow_reduction"


@dataclass
class BatchReduction:
    """Everything the criterion and metric callbacks need from one batch, without its logits.

    ``losses`` (with grad) are each task's masked mean over the whole batch, ``counts`` its valid label elements,
    ``stats``/``samples`` the summed metric statistics and valid-sample counts. ``per_sample`` holds each task's
    ``(N,)`` per-sample losses in batch order with ``per_sample_valid`` marking the samples the task applies to,
    ``index`` the dataset index of each of the ``N`` rows. ``nonfinite`` flags tasks with a NaN/inf logit.
    """

    losses: Dict[str, torch.Tensor]
    counts: Dict[str, torch.Tensor]
    stats: Dict[str, torch.Tensor]
    samples: Dict[str, torch.Tensor]
    per_sample: Dict[str, torch.Tensor]
    per_sample_valid: Dict[str, torch.Tensor]
    index: torch.Tensor
    nonfinite: Dict[str, torch.Tensor]


def replica_reduction(graph, outputs, batch: Mapping) -> Dict[str, Dict[str, torch.Tensor]]:
    """One chunk's reduction, as tensors shaped for ``gather`` along dim 0: per-chunk values get a leading
    dimension of 1, per-sample values keep their ``(n,)`` rows."""
    labels = batch_labels(graph, batch)
    targets = labels[0]
    n = next(iter(targets.values())).shape[0]
    masks = ground_truth_masks(graph, batch, labels)
    logits = {name: at_least_float32(value) for name, value in output_logits(graph, outputs, n).items()}
    members = output_member_logits(graph, outputs, n)
    index = batch.get("index")
    device = next(iter(logits.values())).device
    index = torch.arange(n, device=device) if index is None else torch.as_tensor(index, device=device)
    result = {key: {} for key in ("loss", "count", "stats", "samples", "per_sample", "valid", "nonfinite")}
    for name, task in graph.tasks.items():
        mask, target = masks[name], targets[name]
        loss = (task.loss(logits[name], target, mask) if members is None  # members: as FlowLoss.terms
                else member_loss(task, at_least_float32(members[name]), target, mask))
        result["loss"][name] = loss.float().reshape(1)
        result["count"][name] = mask.sum().to(torch.float32).reshape(1)
        with torch.no_grad():
            detached = logits[name].detach()
            result["stats"][name] = task.metric_stats(detached, target, mask).to(torch.float64).reshape(1, -1)
            valid = sample_mask(mask)
            result["samples"][name] = valid.sum().to(torch.float64).reshape(1)
            result["per_sample"][name] = task.per_sample_loss(detached, target, mask).float()
            result["valid"][name] = valid.to(torch.uint8)  # bool is not gathered by every torch build
            result["nonfinite"][name] = (~torch.isfinite(detached).all()).to(torch.uint8).reshape(1)
    result["index"] = {"index": index}
    return result


def combine_replicas(gathered: Mapping[str, Dict[str, torch.Tensor]]) -> BatchReduction:
    """Combine the gathered (dim-0 concatenated) reductions of all chunks into the whole batch's."""
    losses, counts = {}, {}
    for name, per_replica in gathered["loss"].items():
        count = gathered["count"][name]
        total = count.sum()
        # Σ count_r · mean_r / Σ count_r: the mean over the batch's valid elements; 0 (and no grad) when none is.
        losses[name] = (per_replica * count).sum() / total.clamp(min=1)
        counts[name] = total
    return BatchReduction(
        losses=losses, counts=counts,
        stats={name: value.sum(0) for name, value in gathered["stats"].items()},
        samples={name: value.sum() for name, value in gathered["samples"].items()},
        per_sample=dict(gathered["per_sample"]),
        per_sample_valid={name: value.bool() for name, value in gathered["valid"].items()},
        index=gathered["index"]["index"],
        nonfinite={name: value.bool().any() for name, value in gathered["nonfinite"].items()},
    )


class ReplicaStep:
    """A replica's forward followed by its reduction; called by ``parallel_apply`` in the replica's thread."""

    def __init__(self, model, graph, autocast_dtype: Optional[torch.dtype] = None):
        self.model, self.graph, self.autocast_dtype = model, graph, autocast_dtype

    def __call__(self, batch: Mapping):
        device = next(iter(_tensors(batch["inputs"])), torch.empty(0)).device
        # Explicit dtype: the autocast parallel_apply re-enters in its threads would fall back to fp16.
        with autocast(device.type, self.autocast_dtype):
            outputs = self.model(batch["inputs"])
        return replica_reduction(self.graph, outputs, batch)


def balanced_forward(data_parallel, batch: Mapping, graph,
                     autocast_dtype: Optional[torch.dtype] = None) -> BatchReduction:
    """``nn.DataParallel.forward`` for a flow model, reducing on every replica (see the module docstring)."""
    device_ids = data_parallel.device_ids
    chunks, kwargs = data_parallel.scatter((dict(batch),), {}, device_ids)
    if not chunks:
        raise ValueError("balanced_forward: the batch could not be scattered (is it empty?)")
    replicas = data_parallel.replicate(data_parallel.module, device_ids[:len(chunks)])
    steps = [ReplicaStep(replica, graph, autocast_dtype) for replica in replicas]
    outputs = data_parallel.parallel_apply(steps, chunks, kwargs)
    return combine_replicas(data_parallel.gather(outputs, data_parallel.output_device))


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
