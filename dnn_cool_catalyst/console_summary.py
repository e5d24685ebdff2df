"""The per-epoch console summary: a small table of the loss and one headline metric per task, 4 significant digits.

Pure formatting (no Catalyst, no printing), so the exact text is easy to test; the callback that prints it is
:class:`dnn_cool_catalyst.callbacks.console.EpochSummaryCallback`.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

#: First column's label for the whole flow's row (total loss, mean of the tasks' headline metrics).
TOTAL_ROW = "(all tasks)"


def format_number(value) -> str:
    """4 significant digits; ``-`` for a value that is missing or not finite (nothing to measure).

    >>> [format_number(v) for v in (2.754651096888951, 0.68095, 1234.0, 0.000123456, 1234567.0, float("nan"), None)]
    ['2.755', '0.6810', '1234', '0.0001235', '1.235e+06', '-', '-']
    """
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    text = f"{value:#.4g}"  # '#' keeps trailing zeros (0.6810, not 0.681) and a trailing '.' (1234.)
    return text[:-1] if text.endswith(".") else text


def format_epoch_summary(epoch: int, num_epochs: int, metrics: Mapping[str, Mapping[str, float]],
                         tasks: Sequence[Tuple[str, Optional[str]]], total_metric: Optional[str] = "task_mean",
                         note: str = "") -> str:
    """The summary of one epoch.

    ``metrics`` maps loader name (``train``, ``valid``) to that loader's metrics as the runner logs them
    (``loss``, ``loss/<task_path>``, ``<task_path>/<metric>``); ``tasks`` lists ``(task_path, headline metric)``.
    The first row is the whole flow (``loss`` and ``total_metric``); a value a loader does not have reads ``-``.

    >>> metrics = {"train": {"loss": 2.754651, "loss/door_open": 0.68095, "door_open/accuracy": 0.70161,
    ...                      "task_mean": 0.54613, "loss/face_x1": 0.0012345},
    ...            "valid": {"loss": 2.7585, "loss/door_open": 0.67265, "door_open/accuracy": 0.66667,
    ...                      "task_mean": 0.52083, "loss/face_x1": float("nan")}}
    >>> print(format_epoch_summary(1, 15, metrics, [("door_open", "accuracy"), ("face_x1", "r2")], note="(0.4 s)"))
    epoch 1/15 (0.4 s)
    task         loss train  loss valid  metric     train   valid
    (all tasks)       2.755       2.759  task_mean  0.5461  0.5208
    door_open        0.6810      0.6726  accuracy   0.7016  0.6667
    face_x1        0.001234           -  r2         -       -
    """
    loaders = list(metrics)
    rows: List[List[str]] = []
    for path, metric in [(None, total_metric)] + [tuple(t) for t in tasks]:
        loss_key = "loss" if path is None else f"loss/{path}"
        metric_key = metric if path is None else f"{path}/{metric}"
        row = [TOTAL_ROW if path is None else path]
        row += [format_number(metrics[loader].get(loss_key)) for loader in loaders]
        row += [metric or "-"]
        row += [format_number(metrics[loader].get(metric_key)) if metric else "-" for loader in loaders]
        rows.append(row)
    header = ["task"] + [f"loss {loader}" for loader in loaders] + ["metric"] + list(loaders)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    # task and metric names left-aligned, losses right-aligned (comparable digits), metric values left-aligned
    # under their loader names
    metric_column = 1 + len(loaders)

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            right = 0 < i < metric_column
            parts.append(cell.rjust(width) if right else cell.ljust(width))
        return "  ".join(parts).rstrip()

    title = f"epoch {epoch}/{num_epochs}" + (f" {note}" if note else "")
    return "\n".join([title, line(header)] + [line(r) for r in rows])


def headline_metrics(flow) -> List[Tuple[str, Optional[str]]]:
    """``(task_path, metric)`` for each task of ``flow``: its ``selection_metric`` (accuracy, R^2...), else its
    first metric."""
    pairs = []
    for name, path in flow.task_paths.items():
        task = flow.tasks[name]
        metric = getattr(task, "selection_metric", None)
        if metric is None:
            names = list(getattr(task, "metric_names", []) or [])
            metric = names[0] if names else None
        pairs.append((path, metric))
    return pairs


def loader_metrics(epoch_metrics: Mapping[str, Mapping[str, float]]) -> Dict[str, Mapping[str, float]]:
    """Catalyst's ``runner.epoch_metrics`` without its ``_epoch_`` entry (learning rate and momentum)."""
    return {loader: values for loader, values in epoch_metrics.items() if not loader.startswith("_")}
