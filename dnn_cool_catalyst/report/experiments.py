"""Finding the experiments under a folder and reading each one's status and evaluation.

An experiment is a run directory (it has ``flow.json``, ``run_config.json``, ``config.yml``, ``checkpoints/``,
a ``.lock`` or an ``evaluation_*.csv``) or a fold group (it has ``cv.json``; its ``fold_<k>/`` run directories
belong to it and are not experiments of their own). Hidden folders are not searched.

Status of a run: ``running`` (its lock is held by a live process), ``failed`` (training raised, or the process
holding its lock or training it is gone), ``done`` (it has the evaluation file asked for), else ``incomplete``.
A fold group is ``failed`` / ``running`` when a fold is, ``done`` when every fold is done and the folds'
metrics are there, else ``incomplete``.

Nothing is left out silently: a run whose files cannot be read safely (a metric that is text or beyond
``MAX_METRIC``, a YAML or JSON file beyond the limits of :mod:`dnn_cool_catalyst.safe_read`, a ``.lock`` with an
impossible pid, a ``cv.json`` whose folds lie outside the group) is listed as ``unreadable`` with the file and the
reason, and a folder reached through a symlink is listed as ``skipped`` (it is not followed: a link may lead
anywhere, and the same run would be shown twice).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

import pandas as pd

from ..errors import UnsafeFileError
from ..measures.evaluation import COLUMNS
from ..run.layout import (CV_FILE, CV_SUMMARY, FOLD_PREFIX, LOCK_NAME, RunDir, evaluation_name,
                          is_evaluation_name)
from ..run.lock import MAX_PID, is_stale, read_holder
from ..run.run_config import read_run_config
from ..safe_read import read_csv, read_json
from .configs import _one_line, read_config
from .tensorboard import read_scalars

# A metric beyond this is no measurement (1.7e308 overflows every mean and axis): the file is damaged or hostile.
MAX_METRIC = 1e100
# Errors that make one run unreadable, not the whole report (OverflowError: an impossible pid or number).
READ_ERRORS = (OSError, ValueError, ArithmeticError, RecursionError)


@dataclass
class Experiment:
    """One row of the comparison: a run or a fold group, with what was read from it."""
    path: str
    name: str
    kind: str  # "run", "folds" or "link" (a folder reached through a symlink: listed, not read)
    status: str = "incomplete"
    detail: List[str] = field(default_factory=list)
    config: Optional[dict] = None
    config_source: str = ""
    run_dirs: List[str] = field(default_factory=list)
    # Long table: task_path, metric_name, value, std, num_samples (std only for fold groups).
    metrics: Optional[pd.DataFrame] = None
    metrics_source: str = ""
    ensemble: Optional[pd.DataFrame] = None  # a fold group's own evaluation file (its ensemble), long table
    curves: dict = field(default_factory=dict)  # run dir -> read_scalars(...)


def is_run_dir(path: str) -> bool:
    run = RunDir(path)
    if any(os.path.exists(marker) for marker in (run.flow_json, run.run_config, run.config_yml, run.lock,
                                                 run.checkpoints)):
        return True
    return any(is_evaluation_name(n) for n in _listdir(path))


def find_experiments(root: str) -> List[Experiment]:
    """Every run and fold group under ``root`` (``root`` itself included), in path order."""
    found = []
    for current, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for link in [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            dirs.remove(link)  # os.walk does not follow it either; say so instead of leaving it out silently
            path = os.path.join(current, link)
            found.append(Experiment(path, os.path.relpath(path, root), "link", status="skipped", detail=[
                f"a symlink to {os.readlink(path)}: not followed (give its target as DIR to report it)"]))
        name = os.path.relpath(current, root)
        if name == ".":  # ROOT is itself a run or a fold group: show its own name
            name = os.path.basename(os.path.abspath(root)) or name
        if os.path.exists(RunDir(current).cv_json):
            found.append(Experiment(current, name, "folds"))
            dirs[:] = []  # its folds belong to it
        elif is_run_dir(current):
            found.append(Experiment(current, name, "run"))
            dirs[:] = []  # a run's subfolders (checkpoints, tensorboard, infer) hold no runs
    return found


def load_experiment(exp: Experiment, split: str, gating: str) -> None:
    """Read one experiment; a file that cannot be read safely makes it ``unreadable`` (with the reason in
    ``detail``) instead of failing the whole report."""
    if exp.kind == "link":
        return
    try:
        (load_fold_group if exp.kind == "folds" else load_run)(exp, split, gating)
    except READ_ERRORS as e:
        exp.status, exp.detail = "unreadable", [f"unreadable: {_one_line(e)}"]
        exp.config = exp.metrics = exp.ensemble = None
        exp.config_source = exp.metrics_source = ""
        exp.curves = {}


def load_run(exp: Experiment, split: str, gating: str) -> None:
    """Status, configuration, metrics and curves of a single run."""
    exp.run_dirs = [exp.path]
    exp.config, exp.config_source, problem = read_config(exp.path)
    if problem:
        exp.detail.append(problem)
    exp.status, why = run_status(exp.path, split, gating)
    if why:
        exp.detail.append(why)
    run = RunDir(exp.path)
    table, problem = read_evaluation(run.evaluation(split, gating))
    if problem:
        exp.detail.append(problem)
    if table is not None:
        exp.metrics = table.assign(std=float("nan"))
        exp.metrics_source = evaluation_name(split, gating)
    exp.curves = {exp.path: read_scalars(run.tensorboard_root)}


def _check_lock_pid(lock: str) -> None:
    """A lock the runner cannot read as a holder because its pid is impossible (e.g. 2**70) makes the run
    unreadable; other garbage is a lock being written (the runner's grace period decides)."""
    try:
        raw = read_json(lock)
    except (OSError, ValueError):
        return
    pid = raw.get("pid") if isinstance(raw, dict) else None
    if type(pid) is int and not 0 < pid < MAX_PID:
        raise ValueError(f"{lock}: pid {pid} is not a process id")


def run_status(path: str, split: str, gating: str):
    """``(status, why or None)`` of one run directory (see the module docstring)."""
    run = RunDir(path)
    lock = run.lock
    if os.path.exists(lock):
        holder = read_holder(lock)
        if holder is None:
            _check_lock_pid(lock)
        if not is_stale(lock, holder):
            purpose = f" ({holder.get('purpose')})" if holder else ""
            return "running", f"locked{purpose}"
        return "failed", f"its process is gone (stale {LOCK_NAME} of pid {holder['pid'] if holder else '?'})"
    train = _train_status(run)
    if train and train.get("train") == "failed":
        return "failed", f"training failed: {train.get('error', '?')}"
    if train and train.get("train") == "running":  # the lock is held while training: nobody holds it
        return "failed", "training stopped before it finished (process killed?)"
    if os.path.exists(run.evaluation(split, gating)):
        return "done", None
    return "incomplete", f"no {evaluation_name(split, gating)}"


def _train_status(run: RunDir) -> Optional[dict]:
    try:
        status = read_run_config(run.run_config).get("status")
    except UnsafeFileError:
        raise
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def read_evaluation(path: str):
    """``(table or None, problem or None)``: an evaluation CSV as ``task_path, metric_name, value,
    num_samples``. A metric that is text or beyond ``MAX_METRIC`` raises ``ValueError`` naming the file (the
    run is then unreadable)."""
    if not os.path.exists(path):
        return None, None
    try:
        table = read_csv(path)
    except UnsafeFileError:
        raise
    except (OSError, ValueError) as e:
        return None, f"{os.path.basename(path)} unreadable ({_one_line(e)})"
    if list(table.columns) != COLUMNS:
        return None, f"{os.path.basename(path)} has columns {list(table.columns)}, expected {COLUMNS}"
    check_numbers(table, ["metric_res", "num_samples"], path)
    return table.rename(columns={"metric_res": "value"}), None


def check_numbers(table: pd.DataFrame, columns: List[str], path: str) -> None:
    """Every cell of ``columns`` a number (or empty) within ``MAX_METRIC``; else ``ValueError`` naming the file,
    the column and the value."""
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column][(values.isna() & table[column].notna()) | (values.abs() > MAX_METRIC)]
        if len(bad):
            shown = repr(bad.iloc[0]) if isinstance(bad.iloc[0], str) else str(bad.iloc[0])
            raise ValueError(f"{path}: column '{column}' holds {shown}, expected a number within "
                             f"+-{MAX_METRIC:g}")
        table[column] = values


def load_fold_group(exp: Experiment, split: str, gating: str) -> None:
    """Status, configuration, fold mean/std and curves of a cross-validation group (H5's layout: ``cv.json``,
    ``fold_<k>/`` runs, ``cv_summary.csv``, the ensemble's ``evaluation_<split>_<gating>.csv``)."""
    group = RunDir(exp.path)
    try:
        cv = read_json(group.cv_json)
        if not isinstance(cv, dict):
            raise ValueError("expected a JSON object")
    except UnsafeFileError:
        raise
    except (OSError, ValueError) as e:
        exp.status = "failed"
        exp.detail.append(f"{CV_FILE} unreadable ({str(e).splitlines()[0] if str(e) else e!r})")
        return
    fold_names = cv.get("fold_dirs")
    if not isinstance(fold_names, list) or not all(isinstance(n, str) for n in fold_names):
        fold_names = sorted(n for n in _listdir(exp.path) if n.startswith(FOLD_PREFIX)
                            and os.path.isdir(os.path.join(exp.path, n)))
    exp.run_dirs = [_fold_dir(exp.path, n) for n in fold_names]
    _fold_group_config(exp)
    statuses = cv.get("status") if isinstance(cv.get("status"), dict) else {}
    fold_status = {}
    for name, run_dir in zip(fold_names, exp.run_dirs):
        status, _ = run_status(run_dir, split, gating) if os.path.isdir(run_dir) else ("incomplete", None)
        declared = statuses.get(name)
        # The group file says what the fold job reported; the run directory may know better (a killed process).
        fold_status[name] = status if status in ("failed", "running") else (declared or status)
    _fold_metrics(exp, split, gating)
    exp.status = _group_status(fold_status, exp.metrics is not None)
    done = sum(s == "done" for s in fold_status.values())
    exp.detail.insert(0, f"{done}/{len(fold_status)} folds done" + "".join(
        f", {n} {s}" for n, s in fold_status.items() if s in ("failed", "running")))
    table, problem = read_evaluation(group.evaluation(split, gating))
    exp.ensemble = table
    if problem:
        exp.detail.append(problem)
    exp.curves = {d: read_scalars(RunDir(d).tensorboard_root) for d in exp.run_dirs}


def _fold_group_config(exp: Experiment) -> None:
    """The group's own config.yml / run_config.json, else its first fold's. (cv.json's fold settings are not
    added: the group's config already holds them when a config run made it, and ``kind`` and ``detail`` say
    that it is a fold group and how many folds it has.)"""
    config, source, problem = read_config(exp.path)
    if config is None and not problem and exp.run_dirs:
        config, source, problem = read_config(exp.run_dirs[0])
        source = f"{os.path.basename(exp.run_dirs[0])}/{source}" if source else ""
    if problem:
        exp.detail.append(problem)
    exp.config, exp.config_source = config, source


def _fold_metrics(exp: Experiment, split: str, gating: str) -> None:
    """Mean and std (ddof 1, as pandas) over the folds' own evaluation files when every fold has one; else the
    group's ``cv_summary.csv``."""
    tables = [read_evaluation(RunDir(d).evaluation(split, gating))[0] for d in exp.run_dirs]
    if tables and all(t is not None for t in tables):
        stacked = pd.concat(tables, ignore_index=True)
        grouped = stacked.groupby(["task_path", "metric_name"], sort=False)
        exp.metrics = grouped.agg(value=("value", "mean"), std=("value", "std"),
                                  num_samples=("num_samples", "sum")).reset_index()
        exp.metrics_source = f"{len(tables)} folds' {evaluation_name(split, gating)}"
        return
    path = RunDir(exp.path).cv_summary
    if not os.path.exists(path):
        return
    try:
        summary = read_csv(path)
        missing = [c for c in ("task_path", "metric_name", "mean", "std") if c not in summary.columns]
        if missing:
            raise ValueError(f"missing columns {missing}")
    except UnsafeFileError:
        raise
    except (OSError, ValueError) as e:
        exp.detail.append(f"{CV_SUMMARY} unreadable ({str(e).splitlines()[0] if str(e) else e!r})")
        return
    if "num_samples" not in summary.columns:
        summary["num_samples"] = float("nan")
    check_numbers(summary, ["mean", "std", "num_samples"], path)
    exp.metrics = summary.rename(columns={"mean": "value"})[["task_path", "metric_name", "value", "std",
                                                            "num_samples"]]
    exp.metrics_source = CV_SUMMARY


def _fold_dir(group: str, name: str) -> str:
    """``group/name``, refused (``ValueError``) unless it is a folder of the group itself: a ``cv.json`` naming
    ``../other_run`` or ``/elsewhere`` would make the report read and show a run outside the searched folder."""
    path = os.path.join(group, name)
    inside = os.path.realpath(group)
    if os.path.commonpath([inside, os.path.realpath(path)]) != inside or os.path.realpath(path) == inside:
        raise ValueError(f"{RunDir(group).cv_json}: fold_dirs entry {name!r} points outside the fold "
                         f"group folder; refused")
    return path


def _group_status(fold_status: dict, has_metrics: bool) -> str:
    values = set(fold_status.values())
    if "failed" in values:
        return "failed"
    if "running" in values:
        return "running"
    if fold_status and values == {"done"} and has_metrics:
        return "done"
    return "incomplete"


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
