"""Early stopping that waits while a task has learned nothing yet.

On a small table a binary head can sit at the majority class for many epochs while the other tasks' validation
loss already rises; plain early stopping on the summed loss then ends the run before that head has learned
anything. :class:`BaselineAwareEarlyStopping` counts epochs without improvement as Catalyst's callback does, but
does not stop while any task's validation score is still at its trivial baseline:

- binary and classification tasks: accuracy no better than always answering the validation split's majority
  label;
- regression tasks: R^2 not above 0 (no better than predicting the mean).

The baselines come from the validation labels (:func:`trivial_baselines`); the check reads the epoch's own
validation metrics, so it has no state of its own: a resumed run (whose counter the checkpoint callback replays
from the saved scores) holds and releases exactly as the uninterrupted run would. The hold lasts at most
``HOLD_FACTOR x patience`` epochs without improvement (and never past ``num_epochs``): a task that never beats its
baseline costs some epochs, not the whole budget. Runs at Catalyst's ``CallbackOrder.External`` like the callback
it extends, after the metrics and model-selection callbacks have written the epoch's scores.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping

import torch
from catalyst.callbacks.misc import EarlyStoppingCallback

from ..tasks.base import sample_mask

#: A score counts as above its baseline only by more than this (accuracy and R^2 are both fractions).
BASELINE_MARGIN = 1e-6
#: The hold ends after this many times ``patience`` epochs without improvement: a task that cannot beat its
#: baseline (a label the inputs do not predict) must not keep every run going to its last epoch.
HOLD_FACTOR = 3


def trivial_baselines(flow, targets: Mapping[str, torch.Tensor], available: Mapping[str, torch.Tensor]
                      ) -> Dict[str, float]:
    """``{"<task_path>/<selection_metric>": baseline}`` on these labels (a split's): each task's
    :meth:`~dnn_cool_catalyst.tasks.Task.trivial_baseline` (binary / classification: accuracy of the majority label;
    regression: R^2 of the mean, 0), for tasks with at least one labelled sample where their conditions hold on the
    labels. Tasks without such a floor have no entry.

    >>> import tempfile
    >>> import pandas as pd
    >>> from dnn_cool_catalyst import Project
    >>> df = pd.DataFrame({"x": [0.1, 0.4, 0.3, 0.9], "hit": [1, 0, 0, 0], "size": [1.37, 2.91, 3.05, 4.62]})
    >>> project = Project(df, input_col=["x"], output_col=["hit", "size"], project_dir=tempfile.mkdtemp())
    >>> def flows(flow, x, out):
    ...     out += flow.hit(x.features)
    ...     out += flow.size(x.features)
    ...     return out
    >>> _ = project.add_flow(flows)
    >>> flow, data = project.get_full_flow(), project.data
    >>> trivial_baselines(flow, data.targets, data.available)
    {'hit/accuracy': 0.75, 'size/r2': 0.0}
    """
    n = next(iter(targets.values())).shape[0]
    masks = flow.graph.masks(targets, available, n)
    baselines = {}
    for name, path in flow.task_paths.items():
        task = flow.tasks[name]
        keep = sample_mask(masks[name])
        if task.selection_metric is None or not bool(keep.any()):
            continue
        baseline = task.trivial_baseline(targets[name][keep])  # each task knows its own floor
        if baseline is not None:
            baselines[f"{path}/{task.selection_metric}"] = baseline
    return baselines


class BaselineAwareEarlyStopping(EarlyStoppingCallback):
    """Catalyst's early stopping (``patience`` epochs without improvement of ``metric_key`` on ``loader_key``),
    held while any of ``baselines`` (from :func:`trivial_baselines`) is not beaten on that loader this epoch, for
    at most ``HOLD_FACTOR * patience`` epochs without improvement."""

    def __init__(self, patience: int, loader_key: str, metric_key: str, minimize: bool,
                 baselines: Mapping[str, float], min_delta: float = 1e-6):
        super().__init__(patience=patience, loader_key=loader_key, metric_key=metric_key, minimize=minimize,
                         min_delta=min_delta)
        self.baselines = dict(baselines)

    def at_baseline(self, loader_metrics: Mapping[str, float]) -> list:
        """The metric keys still at (or below) their baseline in ``loader_metrics``; NaN scores do not hold."""
        held = []
        for key, baseline in self.baselines.items():
            value = loader_metrics.get(key)
            if value is not None and math.isfinite(float(value)) and float(value) <= baseline + BASELINE_MARGIN:
                held.append(key)
        return held

    def stops_after(self, num_no_improvement_epochs: int, loader_metrics: Mapping[str, float]) -> bool:
        """Whether the run ends after an epoch with these scores and this many epochs without improvement (the
        checkpoint callback asks it too, to record the decision before this callback runs)."""
        if num_no_improvement_epochs < self.patience:
            return False
        return not self.at_baseline(loader_metrics) or num_no_improvement_epochs >= HOLD_FACTOR * self.patience

    def handle_score_is_not_better(self, runner) -> None:
        self.num_no_improvement_epochs += 1
        if self.stops_after(self.num_no_improvement_epochs, runner.epoch_metrics.get(self.loader_key, {})):
            runner.need_early_stop = True
