"""``<run_dir>/run_config.json``: what a Python run was trained with, so experiments can be compared later
(``dnn-cool-report``, :mod:`dnn_cool_catalyst.report`).

Written atomically by ``runner.train`` when training starts (``status.train = "running"``) and again when it ends
(``"done"``, or ``"failed"`` with the error's first line). Sections:

- ``train``: the arguments of ``train()`` (JSON values as they are; anything else as its ``repr`` without memory
  addresses, so two identical runs describe their optimizer or callbacks identically);
- ``runner``: the constructor settings (batch size, seed, split fractions, loss weights, stratify, ...);
- ``model``: class and number of parameters;
- ``flow``: name and tasks (path, type, condition); ``flow.json`` next to it has the full description;
- ``converters``: one record per input/output column (``Project.describe()``) when the runner was made by a
  project;
- ``status``: bookkeeping (not a setting): train status, start/end times, error.

Example:
    >>> to_jsonable({"lr": 1e-3, "sizes": (1, 2), "fn": len})
    {'lr': 0.001, 'sizes': [1, 2], 'fn': '<built-in function len>'}
"""
from __future__ import annotations

import contextlib
import datetime
import math
import re
from typing import Any, Optional

import torch

from ..atomic import atomic_write_json
from ..safe_read import read_json
from .layout import RUN_CONFIG_FILE, RUN_MARKER, RunDir  # the file names live in the layout; re-exported
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def to_jsonable(value: Any) -> Any:
    """``value`` with containers converted recursively; non-JSON leaves become their address-free ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return to_jsonable(value.item())
    return _ADDRESS.sub("", repr(value))


def runner_settings(**settings) -> dict:
    """The constructor settings a runner keeps for its ``run_config.json``; an engine object by its class name."""
    engine = settings.get("engine")
    if engine is not None:
        settings["engine"] = f"{type(engine).__module__}.{type(engine).__qualname__}"
    return to_jsonable(settings)


def _model_summary(model: torch.nn.Module) -> dict:
    params = list(model.parameters())
    lazy = any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in params)
    count = sum(p.numel() for p in params if not isinstance(p, torch.nn.parameter.UninitializedParameter))
    inner = model.module if isinstance(model, torch.nn.DataParallel) else model
    return {"class": f"{type(inner).__module__}.{type(inner).__qualname__}", "parameters": int(count),
            **({"lazy_parameters": True} if lazy else {})}


def _flow_summary(flow) -> dict:
    described = flow.describe()
    return {"name": described["name"], "file": RUN_MARKER,
            "tasks": [{"path": t["path"], "type": t.get("type"), "condition": t.get("condition")}
                      for t in described["tasks"]]}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_run_config(runner, train_args: dict) -> dict:
    """The ``run_config.json`` content for ``runner`` about to train with ``train_args``."""
    return {
        "train": to_jsonable(train_args),
        "runner": getattr(runner, "run_settings", None) or {},
        "model": _model_summary(runner.model),
        "flow": _flow_summary(runner.flow),
        "converters": to_jsonable(getattr(runner, "converter_summary", None)),
        "status": {"train": "running", "started": _now()},
    }


@contextlib.contextmanager
def recording_train(runner, train_args: dict, enabled: bool = True):
    """Write ``run_config.json`` (status ``running``) before the block and its final status after it: ``done``,
    or ``failed`` with the error (re-raised). A no-op when not ``enabled`` (processes that do not write files)."""
    if not enabled:
        yield
        return
    path = RunDir(runner.run_dir).run_config
    record = build_run_config(runner, train_args)
    atomic_write_json(path, record)
    try:
        yield
    except BaseException as e:
        _finish(path, record, runner, "failed", _first_line(e))
        raise
    _finish(path, record, runner, "done", None)


def _finish(path: str, record: dict, runner, status: str, error: Optional[str]) -> None:
    record["status"].update({"train": status, "finished": _now()})
    if error is not None:
        record["status"]["error"] = error
    record["model"] = _model_summary(runner.model)  # lazy heads have their shapes now
    try:
        atomic_write_json(path, record)
    except (OSError, ValueError):
        if error is None:  # a failed run's own error matters more than its bookkeeping
            raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def read_run_config(path: str) -> dict:
    """A ``run_config.json`` read back; raises ``OSError`` / ``ValueError`` when it is missing or damaged."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record
