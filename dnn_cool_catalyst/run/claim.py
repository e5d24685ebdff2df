"""What a run directory is: ``flow.json`` (which flow it belongs to, checked field by field before it is quoted
back) marks it, and every path inside it belongs to the run.

A run's own files (checkpoints, ``config.yml``, ``splits.json``, ``tuned.json``, ...) are never the output of a
command: :func:`refuse_run_file` refuses an output path that lies inside a run directory, symlinks resolved,
except in the folders a run keeps for outputs (``export/``, ``export()``'s default place).

Example:
    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> run = RunDir(run_dir)
    >>> open(run.flow_json, "w").close()
    >>> owning_run_dir(run.checkpoint("best")) == os.path.realpath(run_dir)
    True
    >>> refuse_run_file(os.path.join(run.export, "model.pt2"), "path", allowed=(EXPORT_DIR,))
    >>> refuse_run_file(run.checkpoint("best"), "--out")
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.RunnerError: --out ...runner.best.pth lies inside the run directory ... (as ...
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Type

from ..atomic import atomic_write_json
from ..messages import short_repr
from ..errors import RunnerError
from ..safe_read import read_json
from .layout import EXPORT_DIR, RunDir


def owning_run_dir(path) -> Optional[str]:
    """The run directory ``path`` lies in (itself included), symlinks resolved: the nearest directory at or above
    it that holds ``flow.json``; ``None`` outside every run."""
    current = os.path.realpath(os.fspath(path))
    while True:
        if os.path.isfile(RunDir(current).flow_json):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def refuse_run_file(path, what: str, error: Type[Exception] = RunnerError, allowed: Sequence[str] = ()) -> None:
    """Raise ``error`` when the output ``path`` (named ``what`` in the message) lies inside a run directory, unless
    it is under one of that run's ``allowed`` top-level folders (e.g. ``("export",)``)."""
    run = owning_run_dir(path)
    if run is None:
        return
    inside = os.path.relpath(os.path.realpath(os.fspath(path)), run)
    if inside != os.curdir and inside.split(os.sep)[0] in allowed:
        return
    shown = "the run directory itself" if inside == os.curdir else repr(inside.replace(os.sep, "/"))
    raise error(f"{what} {os.fspath(path)} lies inside the run directory {run} (as {shown}): a run's own files "
                f"are never overwritten by an output; write it outside run directories"
                + (f" (or under its {', '.join(f'{a}/' for a in allowed)})" if allowed else ""))


def check_own_folder(run_dir: str, folder: str) -> None:
    """Refuse a folder of the run (``checkpoints/``, a stage's) that a symlink leads out of the run directory:
    the rule for a single checkpoint file (``run/checkpoints.py``) holds for its folder too, so a resume
    never writes into, nor reads from, another directory."""
    real_run, real = os.path.realpath(run_dir), os.path.realpath(folder)
    if real != real_run and not real.startswith(real_run + os.sep):
        raise RunnerError(f"{folder} leads outside the run directory {run_dir} (to {real}: a symlink?); a run reads "
                          f"and writes only its own folders: replace the link with a real folder")


def claim_run_dir(run_dir: str, flow) -> None:
    """Write ``flow.json`` into a new run directory, or check that an existing one was made for this flow."""
    path = RunDir(run_dir).flow_json
    described = json.loads(json.dumps(flow.describe()))
    if os.path.exists(path):
        try:
            saved = read_json(path)
        except (OSError, ValueError) as e:
            raise RunnerError(f"cannot read {path} ({e}): the run directory {run_dir} is damaged; choose "
                              f"another runner_name or delete it") from None
        if saved == described:
            return
        _check_flow_file(path, saved, run_dir)
        raise RunnerError(f"run directory {run_dir} belongs to a different flow ('{saved.get('name')}' with tasks "
                          f"{[t['path'] for t in saved.get('tasks', [])]}); choose another runner_name. Nothing was "
                          f"overwritten.")
    atomic_write_json(path, described)


def _check_flow_file(path: str, saved, run_dir: str) -> None:
    """A flow.json that differs from this flow must still be a flow description before it is quoted back."""
    def bad(field: str, expected: str, got) -> RunnerError:
        shown = short_repr(got)
        return RunnerError(f"{path}: field '{field}' must be {expected}, got {shown}: the run directory {run_dir} "
                           f"is damaged; choose another runner_name or delete it. Nothing was overwritten.")

    if not isinstance(saved, dict):
        raise bad("(top level)", "an object with 'name' and 'tasks'", saved)
    if not isinstance(saved.get("name"), str):
        raise bad("name", "the flow's name (a string)", saved.get("name"))
    if not isinstance(saved.get("tasks"), list):
        raise bad("tasks", "a list of task descriptions", saved.get("tasks"))
    for i, task in enumerate(saved["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("path"), str):
            raise bad(f"tasks[{i}]", "an object with a 'path' string", task)
