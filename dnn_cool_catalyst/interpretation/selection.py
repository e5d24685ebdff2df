"""Per-sample losses over a loader, and the best and worst samples per task.

Losses are those of :class:`~dnn_cool_catalyst.measures.losses.PerSampleLoss` (ground-truth gating): a task's loss of a
sample where the task is valid, and ``overall``, the sum over tasks, for samples where any task is valid. Each
sample is identified by its *dataset* index (``batch["index"]``), so shuffled loaders and subsets are fine.

:class:`LossCollector` keeps everything on the device while batches come in (no host sync in the step: it only
appends tensors) and moves the whole loader to the host once, in :meth:`LossCollector.finish`.

Example:
    >>> import numpy as np
    >>> losses, index = np.array([0.5, 0.1, 0.9, 0.1]), np.array([7, 3, 5, 9])
    >>> rank(losses, index, 2, worst=False), rank(losses, index, 2, worst=True)
    ([(3, 0.1), (9, 0.1)], [(5, 0.9), (7, 0.5)])
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np
import torch

from ..graph.batch import batch_labels, output_logits, shared_element_losses, shared_ground_truth_masks
from ..graph.graph import CompiledGraph
from ..kept_batches import keep
from ..tasks.base import Task, per_sample_mean, sample_mask

OVERALL = "overall"
#: key → (losses, dataset indices) of the samples where that key is valid, on the host.
Losses = Dict[str, Tuple[np.ndarray, np.ndarray]]


def rank(losses: np.ndarray, index: np.ndarray, n: int, worst: bool) -> List[Tuple[int, float]]:
    """The ``n`` lowest (``worst=False``) or highest losses as ``(index, loss)``; ties go to the lower index."""
    losses, index = np.asarray(losses, dtype=np.float64), np.asarray(index)
    order = np.lexsort((index, -losses if worst else losses))[:max(int(n), 0)]
    return [(int(index[i]), float(losses[i])) for i in order]


class LossCollector:
    """Accumulates per-sample losses and dataset indices of one loader for every task of ``graph``."""

    def __init__(self, graph: CompiledGraph):
        self.graph = graph
        self.reset()

    def reset(self) -> None:
        self._losses: Dict[str, list] = {name: [] for name in self.graph.tasks}
        self._valid: Dict[str, list] = {name: [] for name in self.graph.tasks}
        self._index: list = []

    @torch.no_grad()
    def update(self, outputs, batch: Mapping) -> None:
        masks = shared_ground_truth_masks(self.graph, batch, store=False)  # the loss callback's, when it ran first
        elements = shared_element_losses(self.graph, batch)  # likewise
        targets = batch_labels(self.graph, batch)[0]
        index = batch["index"]
        n = int(index.shape[0])
        logits = output_logits(self.graph, outputs, n)
        losses = {}
        for name, task in self.graph.tasks.items():
            if name in elements and type(task).per_sample_loss is Task.per_sample_loss:
                losses[name] = per_sample_mean(elements[name], masks[name])
            else:
                losses[name] = task.per_sample_loss(logits[name], targets[name], masks[name])
        self.add(losses, {name: sample_mask(mask) for name, mask in masks.items()}, index)

    def add(self, losses: Mapping[str, torch.Tensor], valid: Mapping[str, torch.Tensor], index: torch.Tensor) -> None:
        """Append one batch's ``(N,)`` per-sample losses and validity per task (computed elsewhere, e.g. on
        DataParallel replicas) with the rows' dataset ``index``."""
        # Boolean indexing would make the host wait for the device; keep full rows and the masks instead.
        for name in self.graph.tasks:
            keep(self._losses[name], losses[name].detach())
            keep(self._valid[name], valid[name])
        keep(self._index, index.reshape(-1))

    def finish(self) -> Losses:
        """Everything collected so far on the host, tasks keyed by name, plus ``overall``."""
        if not self._index:
            return {}
        index = torch.cat(self._index).cpu().numpy()
        result, overall, any_valid = {}, np.zeros(index.shape[0]), np.zeros(index.shape[0], dtype=bool)
        for name in self.graph.tasks:
            losses = torch.cat(self._losses[name]).float().cpu().numpy().astype(np.float64)
            valid = torch.cat(self._valid[name]).cpu().numpy().astype(bool)
            overall += np.where(valid, losses, 0.0)
            any_valid |= valid
            result[name] = (losses[valid], index[valid])
        result[OVERALL] = (overall[any_valid], index[any_valid])
        return result


def losses_from_stored(stored: Mapping[str, Mapping[str, torch.Tensor]]) -> Losses:
    """The same as :meth:`LossCollector.finish`, from the arrays ``runner.infer()`` saved for one split."""
    result, overall, any_valid, index = {}, None, None, None
    for name, fields in stored.items():
        index = fields["index"].numpy()
        losses = fields["per_sample_loss"].numpy().astype(np.float64)
        valid = sample_mask(fields["mask_gt"]).numpy().astype(bool)
        if overall is None:
            overall, any_valid = np.zeros(index.shape[0]), np.zeros(index.shape[0], dtype=bool)
        overall += np.where(valid, losses, 0.0)
        any_valid |= valid
        result[name] = (losses[valid], index[valid])
    if index is not None:
        result[OVERALL] = (overall[any_valid], index[any_valid])
    return result
