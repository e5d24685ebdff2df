"""Reading model outputs and batches against the graph, with errors that name the task."""
from __future__ import annotations

from typing import Dict, Mapping, MutableMapping

import torch

from ..tasks.base import TaskError
from .graph import CompiledGraph


def output_logits(graph: CompiledGraph, outputs, batch_size: int) -> Dict[str, torch.Tensor]:
    """Canonical logits per task from a model output: the flow module's ``{"logits": {...}}`` or a flat dict."""
    if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Mapping):
        outputs = outputs["logits"]
    if not isinstance(outputs, Mapping):
        raise TaskError(f"flow '{graph.name}': the model must return a dict of logits per task (or the flow "
                        f"module's output), got {type(outputs).__name__}")
    logits = {}
    for leaf in graph.leaves:
        value = outputs.get(leaf.name)
        if value is None:
            raise TaskError(f"flow '{graph.name}': the model output has no logits for task '{leaf.path}' "
                            f"(key '{leaf.name}'); keys present: {sorted(outputs)}")
        logits[leaf.name] = leaf.task.check_logits(value, batch_size)
    return logits


def batch_labels(graph: CompiledGraph, batch: Mapping):
    """``(targets, available)`` dicts for every task, validated."""
    try:
        targets, available = batch["targets"], batch["available"]
    except (KeyError, TypeError):
        raise TaskError(f"flow '{graph.name}': a batch must be a dict with 'targets' and 'available' entries "
                        f"(as flow.get_dataset() yields), got {type(batch).__name__}") from None
    for leaf in graph.leaves:
        if leaf.name not in targets or leaf.name not in available:
            raise TaskError(f"flow '{graph.name}': the batch has no target/availability for task '{leaf.path}'")
    return targets, available


def ground_truth_masks(graph: CompiledGraph, batch: Mapping, labels=None) -> Dict[str, torch.Tensor]:
    """Element masks under ground-truth gating: own availability ∧ conditions read from the labels.
    Pass ``labels`` (from :func:`batch_labels`) when already validated."""
    targets, available = labels if labels is not None else batch_labels(graph, batch)
    return graph.masks(targets, available, targets[graph.leaves[0].name].shape[0])


GROUND_TRUTH_MASKS_KEY = "ground_truth_masks"


def shared_ground_truth_masks(graph: CompiledGraph, batch: MutableMapping, store: bool = True
                              ) -> Dict[str, torch.Tensor]:
    """:func:`ground_truth_masks` computed once per batch: the first caller (the loss callback) stores them in
    ``batch[GROUND_TRUTH_MASKS_KEY]`` as ``(graph, masks)``, later ones (the metrics callback) reuse them. They
    depend only on the batch's labels, and the runner builds a new batch dict every step, so they never go stale.
    ``store=False`` reuses stored masks but leaves the batch as it is (for batches that are not the runner's).

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst.flow import TaskFlow
        >>> from dnn_cool_catalyst.tasks import BinaryTask
        >>> def flow_fn(flow, x, out):
        ...     out += flow.door_open(x.features)
        ...     return out
        >>> graph = TaskFlow.from_function(flow_fn, [BinaryTask("door_open", 4)]).graph
        >>> batch = {"targets": {"door_open": torch.tensor([1., 0.])},
        ...          "available": {"door_open": torch.tensor([True, False])}}
        >>> masks = shared_ground_truth_masks(graph, batch)
        >>> masks["door_open"].tolist(), shared_ground_truth_masks(graph, batch) is masks
        ([True, False], True)
    """
    cached = batch.get(GROUND_TRUTH_MASKS_KEY)
    if cached is not None and cached[0] is graph:
        return cached[1]
    masks = ground_truth_masks(graph, batch)
    if store:
        batch[GROUND_TRUTH_MASKS_KEY] = (graph, masks)
    return masks


ELEMENT_LOSSES_KEY = "element_losses"


def shared_element_losses(graph: CompiledGraph, batch: Mapping) -> Dict[str, torch.Tensor]:
    """Element losses (no graph) the loss callback computed for this batch on a validation pass, by task name,
    for the tasks whose loss is the mean of :meth:`~dnn_cool_catalyst.tasks.Task.element_loss`; ``{}`` when it
    left none (training steps, a loss of your own). The best/worst samples read them instead of computing each
    task's loss a second time."""
    stored = batch.get(ELEMENT_LOSSES_KEY) if isinstance(batch, Mapping) else None
    return stored[1] if stored is not None and stored[0] is graph else {}
