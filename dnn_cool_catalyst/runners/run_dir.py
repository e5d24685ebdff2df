"""``flow.json``: which flow a run directory belongs to, checked field by field before it is quoted back."""
from __future__ import annotations

import json
import os

from ..atomic import atomic_write_json
from ..messages import short_repr
from .errors import RunnerError
from ..safe_read import read_json


def claim_run_dir(run_dir: str, flow) -> None:
    """Write ``flow.json`` into a new run directory, or check that an existing one was made for this flow."""
    path = os.path.join(run_dir, "flow.json")
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
