"""Field-by-field checks of ``tuned.json`` (what :meth:`~DnnCoolSupervisedRunner.tune` writes) before use.

Decoding parameters are read back into the flow's decoders, so a crafted or damaged file must not slip a
``true``, ``"0.3"``, NaN or ``1e308`` through ``float()``: thresholds are probabilities, real numbers in
[0, 1]. The one value above 1 allowed is the tuner's own "predict nothing" threshold, one float64 step above
1.0 (tuning.py places it just above the highest score, and a saturated sigmoid scores exactly 1.0).

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
from .errors import RunnerError

THRESHOLD_MAX = float(np.nextafter(1.0, np.inf))


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


def tuned_point_rows(path: str, report) -> List[str]:
    """Markdown rows ``| curve | threshold | precision | recall |`` from the ``report`` field of tuned.json;
    entries without a tuned point are skipped, a point with non-numbers is refused naming its field."""
    rows: List[str] = []
    if report is None:
        return rows
    if not isinstance(report, dict):
        raise _error(path, "report", "an object", report)
    for task_path, entries in report.items():
        if not isinstance(entries, dict):
            raise _error(path, f"report.{task_path}", "an object", entries)
        for quantity, entry in entries.items():
            if not (isinstance(entry, dict) and "precision" in entry):
                continue
            for key in ("threshold", "precision", "recall"):
                value: Optional[object] = entry.get(key)
                if key == "threshold":
                    check_threshold(path, f"report.{task_path}.{quantity}.threshold", value)
                elif not _is_real(value) or not 0.0 <= value <= 1.0:
                    raise _error(path, f"report.{task_path}.{quantity}.{key}", "a number in [0, 1]", value)
            name = task_path if quantity == "threshold" else f"{task_path}/{quantity}"
            rows.append(f"| {name} | {entry['threshold']:.4g} | {entry['precision']:.3f} | {entry['recall']:.3f} |")
    return rows
