"""``<run_dir>/config.yml``: the config ``dnn-cool-run`` actually ran (files merged, ``--set`` applied), saved
with the run so that the run directory alone rebuilds the project, the model and the runner (``dnn-cool-predict``).

Besides the config's own keys it holds ``_dnn_cool_run_``: the working directory the run was started from
(relative paths in the config, such as the CSV and ``project_dir``, are read from there) and the config files and
overrides it came from. Catalyst's builder leaves that plain mapping alone, so the file also reruns as it is:
``cd <cwd> && dnn-cool-run --config <run_dir>/config.yml``.
"""
from __future__ import annotations

import copy
import os
from typing import Sequence, Tuple

import yaml

from ..atomic import atomic_write_text
from ..run.layout import CONFIG_FILE, RunDir  # the file name lives in the layout; re-exported here
from ..safe_read import read_yaml
from .validate import ConfigError

ORIGIN_KEY = "_dnn_cool_run_"


def save_run_config(run_dir: str, config: dict, paths: Sequence[str], overrides: Sequence[str]) -> str:
    """Write ``config`` (the merged, overridden config, ``run`` stages included) to ``<run_dir>/config.yml``
    atomically, with where it was run from; returns the file's path."""
    saved = copy.deepcopy(config)
    saved.pop(ORIGIN_KEY, None)  # a rerun of a saved config records its own origin
    saved[ORIGIN_KEY] = {"cwd": os.getcwd(), "configs": [os.path.abspath(p) for p in paths],
                         "overrides": list(overrides)}
    header = ("# Written by dnn-cool-run: the config this run was made with (files merged, --set applied).\n"
              "# dnn-cool-predict --run-dir <this directory> rebuilds the project, model and runner from it.\n")
    text = header + yaml.safe_dump(saved, sort_keys=False, allow_unicode=True)
    path = RunDir(run_dir).config_yml
    atomic_write_text(path, text)
    return path


def load_run_config(run_dir: str) -> Tuple[dict, str]:
    """``(config, cwd)`` from ``<run_dir>/config.yml``: the config without its origin, and the directory its
    relative paths are read from. A missing or damaged file is a :class:`ConfigError` saying what to do."""
    path = RunDir(run_dir).config_yml
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run directory {run_dir!r} does not exist")
    if not os.path.isfile(path):
        raise ConfigError(f"run directory {run_dir!r} has no {CONFIG_FILE}: only runs made with dnn-cool-run save "
                          f"the config that rebuilds them. For a run made from Python, call runner.predict(df) on "
                          f"a runner built as in training (or export the model with runner.export)")
    try:
        config = read_yaml(path)
    except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: bad UTF-8 or beyond the safe_read limits
        raise ConfigError(f"cannot read {path}: {e}") from None
    origin = config.pop(ORIGIN_KEY, None) if isinstance(config, dict) else None
    cwd = origin.get("cwd") if isinstance(origin, dict) else None
    if not isinstance(cwd, str):
        raise ConfigError(f"{path}: field '{ORIGIN_KEY}.cwd' must be the directory the run was started from (a "
                          f"string), got {cwd!r}; the file was not written by dnn-cool-run or is damaged")
    if not os.path.isdir(cwd):
        raise ConfigError(f"{path}: the run was started from {cwd!r} (field '{ORIGIN_KEY}.cwd'), which no longer "
                          f"exists; its relative paths cannot be resolved")
    return config, cwd
