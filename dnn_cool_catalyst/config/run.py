"""Run a Catalyst-style YAML config: load, merge, override, validate, seed, build, then call the runner's stages.

The format is ``catalyst-run``'s: objects are ``{_target_: ..., args}`` built in file order (hydra_slayer),
``_var_: name`` names an object for later ``{_var_: name}`` or ``{_var_: name.method}`` references, ``runner`` is
the runner and ``run`` a list of ``{_call_: method, args}`` stages. Configs are trusted code: building them
imports and calls whatever they name.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable, List, Optional, Sequence

import yaml

from ..run.layout import RunDir
from ..safe_read import loads_yaml, read_yaml
from .saved import save_run_config
from .validate import ConfigError, validate_config

RUNNER_STAGES = ("train", "infer", "tune", "evaluate", "load_tuned", "load_checkpoint", "worst_examples",
                 "best_examples", "explain", "cross_validate", "lr_find")


def load_config(paths: Sequence[str], overrides: Sequence[str] = ()) -> dict:
    """Merge the YAML files in order (later files win key by key; lists are replaced), then apply
    ``key.path=value`` overrides whose values are read as YAML (``run.0.num_epochs=1``, ``project.seed=3``)."""
    from catalyst.utils import merge_dicts

    if not paths:
        raise ConfigError("no config file given")
    parts = []
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} does not exist")
        try:
            part = read_yaml(path)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!r} is not valid YAML: {_yaml_problem(e)}") from None
        except (OSError, ValueError) as e:  # unreadable, bad UTF-8, or beyond the safe_read limits
            raise ConfigError(f"cannot read config file {path!r}: {e}") from None
        if not isinstance(part, dict):
            raise ConfigError(f"config file {path!r} must hold a mapping of keys, got {type(part).__name__}")
        parts.append(part)
    config = merge_dicts(*parts) if len(parts) > 1 else parts[0]
    for override in overrides:
        _apply_override(config, override)
    return config


def _apply_override(config: dict, override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    node: Any = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {override!r}: '{'.'.join(parts[:i])}' is a list of {len(node)} "
                                  f"items; '{part}' is not an index into it")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: '{'.'.join(parts[:i])}' is not a mapping")
        elif not last and part not in node:
            raise ConfigError(f"override {override!r}: no key '{'.'.join(parts[:i + 1])}' in the config")
        if last:
            try:
                node[part] = loads_yaml(raw, f"override {override!r}")
            except (yaml.YAMLError, ValueError) as e:
                raise ConfigError(f"override {override!r}: the value is not plain YAML ({_yaml_problem(e)}); "
                                  f"quote it to pass a string") from None
        else:
            node = node[part]


def _yaml_problem(error: Exception) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans several lines)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def make_registry():
    """A fresh registry with Catalyst's names plus ours: aliases (``_var_``) live in the registry, and a fresh
    one keeps two runs in one process from seeing each other's objects."""
    import hydra_slayer
    from catalyst.registry import REGISTRY

    from .registry import register

    register(REGISTRY)
    registry = hydra_slayer.Registry()
    registry.add(**{name: REGISTRY.get(name) for name in REGISTRY.all()})
    return registry


def run_config(paths: Sequence[str], overrides: Sequence[str] = (), echo: Optional[Callable[[str], None]] = print,
               dev: Optional[int] = None) -> List[Any]:
    """Build and run a config; return each stage's result. ``echo`` receives the evaluation tables. ``dev=N``
    runs every stage on N seeded rows in the run directory ``<runner_name>-dev<N>`` (the runner's ``dev``)."""
    import pandas as pd

    from ..runners import DnnCoolSupervisedRunner
    from ..training.lr_finder import LRFinderResult

    where = " + ".join(paths)
    config = load_config(paths, overrides)
    if dev is not None:
        _set_dev(config, dev, where)
    resolved = copy.deepcopy(config)
    stages, built = build_config(config, where)
    runner = built["runner"]
    if isinstance(runner, DnnCoolSupervisedRunner) and runner._writes_files():
        # What was actually run, so that the run directory alone rebuilds it (dnn-cool-predict).
        save_run_config(runner.run_dir, resolved, paths, overrides)
    results = []
    for i, stage in enumerate(stages):
        stage = dict(stage)
        name = stage.pop("_call_")
        result = getattr(runner, name)(**stage)
        if echo is not None and isinstance(result, (pd.DataFrame, LRFinderResult)):
            echo(f"\n{name} ({', '.join(f'{k}={v}' for k, v in stage.items()) or 'defaults'}):")
            echo(result.to_string(index=False))
        results.append(result)
    if echo is not None and isinstance(runner, DnnCoolSupervisedRunner) and runner._writes_files():
        run_dir = os.path.abspath(runner.run_dir)
        echo(f"\nrun directory: {run_dir}  (tensorboard --logdir {RunDir(run_dir).tensorboard_root})")
    return results


def build_config(config: dict, where: str):
    """Validate ``config``, seed, and build its objects: returns ``(run stages, built objects by key)``; the
    ``run`` key is taken out of ``config``."""
    from ..runners import DnnCoolSupervisedRunner
    from .factories import seed_everything

    registry = make_registry()
    methods = {m for m in RUNNER_STAGES if callable(getattr(DnnCoolSupervisedRunner, m, None))}
    validate_config(config, _lookup(registry), methods, where, _runner_class(config, registry))
    if isinstance(config.get("seed"), int):  # a plain `seed: 0` seeds before anything is built
        seed_everything(config["seed"])
    stages = config.pop("run")
    try:
        built = registry.get_from_params(**config)
    except RuntimeError as e:
        raise _readable(e, where) from e
    return stages, built


def _set_dev(config: dict, dev, where: str) -> None:
    """``--dev N``: the runner's ``dev`` argument, checked for a number before anything is built."""
    if isinstance(dev, bool) or not isinstance(dev, int) or dev < 1:
        raise ConfigError(f"--dev must be a positive number of rows, got {dev!r}")
    runner = config.get("runner")
    if not isinstance(runner, dict) or "_target_" not in runner:
        raise ConfigError(f"{where}: --dev {dev} sets the runner's 'dev' argument, but 'runner' is not an object "
                          f"with a _target_")
    runner["dev"] = dev


def _runner_class(config: dict, registry) -> type:
    """The class whose methods the stages call: the runner's ``_target_`` when it is a runner class, else ours
    (the factories, e.g. ``project_runner``, build a :class:`DnnCoolSupervisedRunner`)."""
    import inspect

    from ..runners import DnnCoolSupervisedRunner

    runner = config.get("runner")
    target = runner.get("_target_") if isinstance(runner, dict) else None
    try:
        factory = registry.get(target) if isinstance(target, str) else None
    except Exception:  # noqa: BLE001 - an unknown target is reported by validate_config itself
        factory = None
    return factory if inspect.isclass(factory) else DnnCoolSupervisedRunner


def _lookup(registry):
    def lookup(name):
        return registry.get(name) if isinstance(name, str) else name
    return lookup


def _readable(error: RuntimeError, where: str) -> Exception:
    """hydra_slayer wraps a failing factory in ``RuntimeError('Factory X call failed: args=... kwargs=...')``
    whose text can hold whole DataFrames; keep the factory name and the original error's message."""
    inner: BaseException = error
    while inner.__cause__ is not None and isinstance(inner, RuntimeError) and str(inner).startswith("Factory '"):
        inner = inner.__cause__
    factory = str(error).split("'")[1] if str(error).startswith("Factory '") else "?"
    if inner is error:
        return error
    return ConfigError(f"{where}: building {factory} failed: {type(inner).__name__}: {inner}")
