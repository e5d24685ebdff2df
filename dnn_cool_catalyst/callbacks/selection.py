"""Model selection on a chosen validation metric: what early stopping, the plateau scheduler and the best
checkpoint follow.

``valid_metric`` (``runner.train(valid_metric=...)``):

- ``"loss"`` (default): the summed validation loss, minimised;
- ``"loss/<task_path>"``: one task's validation loss, minimised;
- ``"<task_path>/<metric>"``: one task's metric as the metrics callback logs it (e.g. ``"door_open/accuracy"``),
  minimised for errors (``mae``, ``rmse``...; the task's ``minimized_metrics``), maximised otherwise;
- ``"task_mean"``: the mean over tasks of each task's ``selection_metric`` (accuracy for classification-like
  tasks, R^2 for regression): each is "higher is better" with 1 = perfect, so tasks weigh alike whatever their
  units. Tasks with no validation sample (NaN) are left out of the mean. Maximised.

A NaN score (nothing to measure) is logged as NaN but selected as the worst possible value, so a NaN epoch never
becomes "best", never resets early stopping and never looks like an improvement to the scheduler.
"""
from __future__ import annotations

import math
from typing import List, Tuple

from catalyst.core.callback import Callback, CallbackOrder

from ..errors import ValidMetricError  # defined there with every library error; re-exported here

TASK_MEAN = "task_mean"
#: Prefix of the key the selection score is written under in ``runner.loader_metrics``:
#: ``model_selection/<valid_metric>`` (NaN replaced by the worst value).
SELECTION_PREFIX = "model_selection/"


def selection_key(metric_key: str) -> str:
    """The loader metric that early stopping, the scheduler and the checkpoint read for ``metric_key``."""
    return "loss" if metric_key == "loss" else SELECTION_PREFIX + metric_key


def available_valid_metrics(flow) -> List[str]:
    names = ["loss", TASK_MEAN] + [f"loss/{path}" for path in flow.task_paths.values()]
    for name, path in flow.task_paths.items():
        names += [f"{path}/{metric}" for metric in flow.tasks[name].metric_names]
    return names


def resolve_valid_metric(flow, valid_metric: str) -> Tuple[str, bool]:
    """``(loader metric key, minimize)`` for ``valid_metric``; raises :class:`ValidMetricError` listing what
    exists."""
    if not isinstance(valid_metric, str):
        raise ValidMetricError(f"valid_metric must be a string, got {type(valid_metric).__name__}")
    if valid_metric == "loss" or valid_metric.startswith("loss/") and valid_metric in available_valid_metrics(flow):
        return valid_metric, True
    if valid_metric == TASK_MEAN:
        return TASK_MEAN, False
    by_path = {path: name for name, path in flow.task_paths.items()}
    path, _, metric = valid_metric.rpartition("/")
    if path not in by_path:
        raise ValidMetricError(f"valid_metric {valid_metric!r}: no task path {path!r}; tasks are {list(by_path)}; "
                               f"valid metrics are {available_valid_metrics(flow)}")
    task = flow.tasks[by_path[path]]
    if metric not in task.metric_names:
        raise ValidMetricError(f"valid_metric {valid_metric!r}: task '{path}' has no metric {metric!r}; its "
                               f"metrics are {list(task.metric_names)}")
    return valid_metric, metric in task.minimized_metrics


def task_mean(flow, loader_metrics) -> float:
    """Mean of every task's ``selection_metric`` over the tasks that have one and a finite value (NaN if none)."""
    values = []
    for name, path in flow.task_paths.items():
        metric = flow.tasks[name].selection_metric
        value = loader_metrics.get(f"{path}/{metric}") if metric else None
        if value is not None and math.isfinite(float(value)):
            values.append(float(value))
    return sum(values) / len(values) if values else math.nan


class ModelSelectionCallback(Callback):
    """At loader end writes ``task_mean`` and ``model_selection/<metric>`` (the chosen metric, NaN → worst) into
    ``runner.loader_metrics``; after the metric and criterion callbacks, before checkpoint/early stopping read
    ``runner.epoch_metrics``."""

    def __init__(self, flow, metric_key: str, minimize: bool):
        super().__init__(order=CallbackOrder.MetricAggregation)
        self.flow, self.metric_key, self.minimize = flow, metric_key, minimize

    def on_loader_end(self, runner) -> None:
        runner.loader_metrics[TASK_MEAN] = task_mean(self.flow, runner.loader_metrics)
        value = float(runner.loader_metrics.get(self.metric_key, math.nan))
        if not math.isfinite(value):
            value = math.inf if self.minimize else -math.inf
        runner.loader_metrics[selection_key(self.metric_key)] = value
