"""``compare(DIR)``: one row per experiment under DIR, with only the settings that differ and the metrics."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import pandas as pd

from ..measures.evaluation import GATINGS
from .configs import differing_keys
from ..run.layout import evaluation_name
from .experiments import Experiment, find_experiments, load_experiment

STATUSES = ("done", "running", "failed", "incomplete", "unreadable", "skipped")
# Metric names where smaller is better; every other metric is sorted largest first.
_SMALLER_IS_BETTER = ("loss", "mae", "mse", "rmse", "error")
FIXED_COLUMNS = ("experiment", "kind", "status")


class ReportError(ValueError):
    """Bad input to the comparison report: no runs found, an unknown metric, a bad split or gating."""


@dataclass
class Comparison:
    """What :func:`collect` found: the experiments, the table, the parameter columns and the sort metric."""
    root: str
    experiments: List[Experiment]
    table: pd.DataFrame
    parameters: List[str]
    metric: Optional[str]
    split: str
    gating: str


def smaller_is_better(metric: str) -> bool:
    """Whether ``metric`` (``task/metric`` or a metric name) is an error to minimise.

    >>> smaller_is_better("face_x1/mae"), smaller_is_better("door_open/accuracy")
    (True, False)
    """
    name = metric.rsplit("/", 1)[-1].lower()
    return any(word in name for word in _SMALLER_IS_BETTER)


def collect(root, metric: Optional[str] = None, split: str = "test", gating: str = "gt") -> Comparison:
    """Find and read every experiment under ``root``; see :func:`compare` for the table."""
    root = os.fspath(root)
    if gating not in GATINGS:
        raise ReportError(f"gating must be one of {list(GATINGS)}, got {gating!r}")
    if not isinstance(split, str) or not split or os.sep in split or "/" in split:
        raise ReportError(f"split must be a split name such as 'test' or 'valid', got {split!r}")
    if not os.path.isdir(root):
        raise ReportError(f"{root} is not a directory")
    experiments = find_experiments(root)
    if not experiments:
        raise ReportError(f"no runs under {root}: a run directory has flow.json, run_config.json or "
                          f"config.yml, a fold group has cv.json")
    for exp in experiments:
        load_experiment(exp, split, gating)
    available = _available_metrics(experiments)
    if metric is None:
        metric = available[0] if available else None
    elif not isinstance(metric, str) or metric not in available:
        shown = ", ".join(available) if available else \
            f"none (no experiment has {evaluation_name(split, gating)} yet)"
        raise ReportError(f"unknown metric {metric!r} for split '{split}', gating '{gating}'; available: {shown}")
    parameters = differing_keys([exp.config for exp in experiments])
    table = _table(experiments, parameters, metric, available)
    return Comparison(root, experiments, table, parameters, metric, split, gating)


def compare(root, metric: Optional[str] = None, split: str = "test", gating: str = "gt") -> pd.DataFrame:
    """One row per run or fold group under ``root`` (searched recursively), sorted by ``metric``.

    Columns: ``experiment`` (path relative to ``root``), ``kind`` (``run`` / ``folds`` / ``link``), ``status``
    (``done``, ``running``, ``failed``, ``incomplete``, ``unreadable`` (a file of it could not be read safely;
    ``detail`` says which and why), ``skipped`` (reached through a symlink, not followed): no experiment is left
    out), the sort metric ``task/metric`` (a fold group's mean over folds, with ``<metric> std`` and the
    ensemble's ``<metric> ensemble`` beside it), then one column per configuration key that differs between
    experiments (flattened: ``run.0.num_epochs``, ``runner.batch_size``), then every other metric of
    ``evaluation_<split>_<gating>.csv``, and last
    ``metrics_source``, ``config_source``, ``detail`` (why a run is not done, unreadable files) and ``path``.

    ``metric`` defaults to the first one found; errors (names with ``loss``, ``mae``, ``mse``, ``rmse``,
    ``error``) sort smallest first, other metrics largest first, experiments without the metric last. Raises
    :class:`ReportError` for a folder without runs or an unknown metric (naming the available ones).
    """
    return collect(root, metric, split, gating).table


def _available_metrics(experiments: List[Experiment]) -> List[str]:
    seen = {}
    for exp in experiments:
        for table in (exp.metrics, exp.ensemble):
            if table is not None:
                seen.update(dict.fromkeys(f"{t}/{m}" for t, m in zip(table.task_path, table.metric_name)))
    return list(seen)


def _values(table: Optional[pd.DataFrame], column: str = "value") -> dict:
    if table is None:
        return {}
    return {f"{t}/{m}": float(v) for t, m, v in zip(table.task_path, table.metric_name, table[column])}


def _table(experiments: List[Experiment], parameters: List[str], metric: Optional[str],
           available: List[str]) -> pd.DataFrame:
    has_folds = any(exp.kind == "folds" for exp in experiments)
    has_ensemble = any(exp.ensemble is not None for exp in experiments)
    # A configuration key that happens to equal a fixed column name keeps its value under "config.<key>".
    param_columns = {p: (f"config.{p}" if p in FIXED_COLUMNS else p) for p in parameters}
    rows = []
    for exp in experiments:
        row = {"experiment": exp.name, "kind": exp.kind, "status": exp.status}
        values, stds, ensemble = _values(exp.metrics), _values(exp.metrics, "std"), _values(exp.ensemble)
        if metric:  # the sort metric first, where it is seen without scrolling
            row[metric] = values.get(metric, float("nan"))
            if has_folds:
                row[f"{metric} std"] = stds.get(metric, float("nan"))
            if has_ensemble:
                row[f"{metric} ensemble"] = ensemble.get(metric, float("nan"))
        for key, column in param_columns.items():
            row[column] = exp.config.get(key) if exp.config is not None else None
        for name in available:
            if name != metric:
                row[name] = values.get(name, float("nan"))
        row.update(metrics_source=exp.metrics_source, config_source=exp.config_source,
                   detail="; ".join(exp.detail), path=exp.path)
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric:
        table = table.sort_values(metric, ascending=smaller_is_better(metric), na_position="last",
                                  kind="stable").reset_index(drop=True)
    return table
