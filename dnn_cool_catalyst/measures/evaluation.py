"""Evaluation and tuning over a whole split of stored outputs (logits, targets, availability).

``gating="gt"`` judges each task where its label exists and its preconditions hold on the labels;
``gating="decoded"`` is the end-to-end view: a task is judged where its label exists and its preconditions hold
on the model's *decoded predictions*, so a parent predicted true where it is false brings the child into
judgement, and a parent predicted false hides the child.
"""
from __future__ import annotations

import inspect
from typing import Dict, Mapping, Optional

import pandas as pd
import torch

from ..graph.module import decode_condition_sources
from ..messages import warn_user
from ..tasks.base import broadcast_to_elements
from .metrics import TaskMetric

COLUMNS = ["task_path", "metric_name", "metric_res", "num_samples"]
GATINGS = ("gt", "decoded")


def split_masks(flow, logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                available: Mapping[str, torch.Tensor], gating: str = "gt") -> Dict[str, torch.Tensor]:
    """Element masks of every task for one gating (see the module docstring)."""
    graph = flow.graph
    n = next(iter(targets.values())).shape[0]
    if gating == "gt":
        return graph.masks(targets, available, n)
    if gating == "decoded":
        reach = graph.masks(decode_condition_sources(graph, logits), None, n)
        return {name: available[name] & broadcast_to_elements(reach[name], available[name]) for name in reach}
    raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")


class Evaluator:
    """Per-task metrics of a whole split as a DataFrame with columns ``task_path, metric_name, metric_res,
    num_samples``; returned by ``flow.get_evaluator()``."""

    def __init__(self, flow):
        self.flow = flow

    def __call__(self, logits, targets, available, gating: str = "gt") -> pd.DataFrame:
        masks = split_masks(self.flow, logits, targets, available, gating)
        rows = []
        for leaf in self.flow.graph.leaves:
            metric = TaskMetric(leaf.task)
            metric.update(logits[leaf.name], targets[leaf.name], masks[leaf.name])
            for name, value in metric.compute().items():
                rows.append((leaf.path, name, value, metric.num_samples))
        return pd.DataFrame(rows, columns=COLUMNS)


def tune_flow(flow, logits, targets, available, metric: str = "accuracy", min_recall: Optional[float] = None,
              min_samples: int = 0, min_per_class: int = 0, alpha: Optional[float] = 0.05):
    """Tune every task's decoding parameters on ground-truth-gated samples.

    Returns ``(params, report)`` keyed by task path; tasks that cannot be tuned (no valid sample, one class, fewer
    than ``min_samples`` masked samples or fewer than ``min_per_class`` of a class) keep their current parameters
    and a warning names them; those whose gain is not significant at level ``alpha`` keep them silently (their
    report says why: ``kept`` and ``reason``)."""
    masks = split_masks(flow, logits, targets, available, "gt")
    params, report = {}, {}
    for leaf in flow.graph.leaves:
        limits = {"min_samples": min_samples, "min_per_class": min_per_class, "alpha": alpha}
        # A custom task written before these limits existed gets only those it accepts.
        limits = {key: value for key, value in limits.items() if _accepts(leaf.task.tune, {key: value})}
        task_params, task_report = leaf.task.tune(logits[leaf.name], targets[leaf.name], masks[leaf.name],
                                                  metric=metric, min_recall=min_recall, **limits)
        if not task_params:
            continue
        params[leaf.path], report[leaf.path] = task_params, task_report
        for quantity, result in task_report.items():
            if not result["tuned"]:
                warn_user(f"task '{leaf.path}' ({quantity}): kept threshold {result['threshold']} "
                          f"because {result['reason']}")
    return params, report


def _accepts(fn, kwargs) -> bool:
    params = inspect.signature(fn).parameters
    return any(p.kind is p.VAR_KEYWORD for p in params.values()) or all(k in params for k in kwargs)
