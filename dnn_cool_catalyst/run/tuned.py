"""Field-by-field checks of ``tuned.json`` (what :meth:`~DnnCoolSupervisedRunner.tune` writes) before use.

Decoding parameters are read back into the flow's decoders, so a crafted or damaged file must not slip a
``true``, ``"0.3"``, NaN or ``1e308`` through ``float()``: thresholds are probabilities, real numbers in
[0, 1]. The one value above 1 allowed is the tuner's own "predict nothing" threshold, one float32 step above
1.0 (tuning/thresholds.py places it just above the highest score when a saturated sigmoid scores exactly 1.0;
files written before it used the float64 step, which is smaller and still accepted).

The ``report`` of each tuned quantity also says where the threshold could lie on the tuning split: the best interval
``lower``/``upper`` and whether the current threshold was ``kept`` (a gain within noise). Files written before
these fields existed are read as they are, the interval shown as unknown.

Example:
    >>> check_threshold("tuned.json", "params.door_open.threshold", 0.3)
    >>> check_threshold("tuned.json", "params.door_open.threshold", "0.3")
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.RunnerError: tuned parameters file tuned.json: field 'params.door_open.threshold' must be a number in [0, 1], got '0.3'; run runner.tune() again
"""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np

from ..messages import short_repr
from ..errors import RunnerError

THRESHOLD_MAX = float(np.nextafter(np.float32(1.0), np.float32(2.0)))


def _error(path: str, field: str, expected: str, got) -> Exception:
    shown = short_repr(got)
    return RunnerError(f"tuned parameters file {path}: field '{field}' must be {expected}, got {shown}; run "
                       f"runner.tune() again")


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_threshold(path: str, field: str, value) -> None:
    if not _is_real(value) or not 0.0 <= value <= THRESHOLD_MAX:
        raise _error(path, field, "a number in [0, 1]", value)


def check_tuned_params(path: str, params, flow) -> None:
    """Each known task's parameters must have the shape of its current ones (``task.get_decoder_params()``):
    numbers where it has numbers (thresholds in [0, 1]), lists of the same length where it has lists. Unknown
    tasks and keys are left to the decoders' own checks, which name them."""
    if not isinstance(params, dict):
        return
    by_path = {task_path: name for name, task_path in flow.task_paths.items()}
    for task_path, task_params in params.items():
        if task_path not in by_path:
            continue
        field = f"params.{task_path}"
        if not isinstance(task_params, dict):
            raise _error(path, field, "an object of decoding parameters", task_params)
        current = flow.tasks[by_path[task_path]].get_decoder_params()
        for key, value in task_params.items():
            if key in current:
                _check_like(path, f"{field}.{key}", value, current[key], "threshold" in key)


def _check_like(path: str, field: str, value, like, is_threshold: bool) -> None:
    if isinstance(like, (list, tuple)):
        if not isinstance(value, list) or len(value) != len(like):
            raise _error(path, field, f"a list of {len(like)} number(s)", value)
        for i, (item, item_like) in enumerate(zip(value, like)):
            _check_like(path, f"{field}[{i}]", item, item_like, is_threshold)
    elif isinstance(like, (int, float)) and not isinstance(like, bool):
        if is_threshold:
            check_threshold(path, field, value)
        elif not _is_real(value):
            raise _error(path, field, "a finite number", value)


def _report_entries(path: str, report):
    """``(row name, entry)`` of every tuned point in the ``report`` field of tuned.json, in file order."""
    if report is None:
        return
    if not isinstance(report, dict):
        raise _error(path, "report", "an object", report)
    for task_path, entries in report.items():
        if not isinstance(entries, dict):
            raise _error(path, f"report.{task_path}", "an object", entries)
        for quantity, entry in entries.items():
            if isinstance(entry, dict):
                yield (task_path if quantity == "threshold" else f"{task_path}/{quantity}"), \
                    f"report.{task_path}.{quantity}", entry


def interval_text(path: str, field: str, entry: dict) -> str:
    """How a tuned threshold was chosen, from its report entry: ``in (0.0015, 0.9995], the middle`` when it moved
    to the best interval, ``kept: <reason>; best in (lower, upper]`` when it stayed, ``not tuned: <reason>``, or
    ``interval not recorded`` for a file written before intervals were.

    >>> interval_text("tuned.json", "report.a.threshold", {"tuned": True, "kept": False, "lower": 0.0015,
    ...                                                     "upper": 0.9995, "reason": ""})
    'best interval (0.0015, 0.9995], threshold at its middle'
    >>> noise = "gain within noise (b=3, c=1, p=0.31)"
    >>> interval_text("tuned.json", "report.a.threshold", {"tuned": True, "kept": True, "lower": 0.2,
    ...                                                     "upper": 0.3, "reason": noise})
    'kept: gain within noise (b=3, c=1, p=0.31); best interval (0.2, 0.3]'
    """
    if entry.get("tuned") is False:
        return f"not tuned: {entry.get('reason', '')}"
    if "lower" not in entry or entry.get("lower") is None:
        return "interval not recorded"
    bounds = []
    for key in ("lower", "upper"):
        value = entry.get(key)
        if not _is_real(value):
            raise _error(path, f"{field}.{key}", "a finite number", value)
        bounds.append(value)
    interval = f"({bounds[0]:.4g}, {bounds[1]:.4g}]"
    if entry.get("kept"):
        return f"kept: {entry.get('reason', '')}; best interval {interval}"
    return f"best interval {interval}, threshold at its middle"


def tuned_point_rows(path: str, report) -> List[str]:
    """Markdown rows ``| curve | threshold | precision | recall | choice |`` from the ``report`` field of tuned.json
    (choice: :func:`interval_text`); entries without a tuned point are skipped, a point with non-numbers is refused
    naming its field."""
    rows: List[str] = []
    for name, field, entry in _report_entries(path, report):
        if "precision" not in entry:
            continue
        for key in ("threshold", "precision", "recall"):
            value: Optional[object] = entry.get(key)
            if key == "threshold":
                check_threshold(path, f"{field}.threshold", value)
            elif not _is_real(value) or not 0.0 <= value <= 1.0:
                raise _error(path, f"{field}.{key}", "a number in [0, 1]", value)
        rows.append(f"| {name} | {entry['threshold']:.4g} | {entry['precision']:.3f} | {entry['recall']:.3f} | "
                    f"{interval_text(path, field, entry)} |")
    return rows


def tuned_choice_lines(path: str, report) -> List[str]:
    """One line per tuned quantity: ``<curve>: threshold <t>, <interval_text>``."""
    lines = []
    for name, field, entry in _report_entries(path, report):
        value = entry.get("threshold")
        check_threshold(path, f"{field}.threshold", value)
        lines.append(f"{name}: threshold {value:.4g}, {interval_text(path, field, entry)}")
    return lines
