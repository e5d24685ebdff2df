"""Check a merged config before anything is built, so a typo fails in a second with the key that holds it."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Set

from ..errors import ConfigError  # defined there with every library error; re-exported here
from ..signatures import accepted_keywords, unknown_argument_message

RESERVED_KEYS = {"_target_", "_var_", "_mode_", "_meta_factory_"}


def validate_config(config: Any, lookup: Callable[[str], Any], runner_methods: Set[str], where: str,
                    runner_class: Optional[type] = None) -> None:
    """Raise :class:`ConfigError` for: a config that is not a mapping, a missing ``runner`` or ``run``, a stage
    without a known ``_call_``, a ``_target_`` that resolves to nothing, arguments a factory does not take or
    required ones it lacks, and a ``_var_`` reference to an alias not defined earlier in the file. With
    ``runner_class``, each stage's arguments are checked against that runner method's signature too.

    Arguments that a function hands on through ``**kwargs`` are checked against where they go (see
    :func:`dnn_cool_catalyst.signatures.forwards_kwargs`), and an unknown one names the closest accepted one."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: a config must be a mapping of keys, got {type(config).__name__}")
    for key in ("runner", "run"):
        if key not in config:
            raise ConfigError(f"{where}: missing top-level key '{key}' (a config needs 'runner' and a 'run' list of "
                              f"stages such as '- _call_: train')")
    _check_node(config, "", lookup, set(), where)
    stages = config["run"]
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{where}: 'run' must be a non-empty list of stages, got {stages!r}")
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or "_call_" not in stage:
            raise ConfigError(f"{where}: run[{i}] must be a mapping with '_call_' (one of {sorted(runner_methods)}), "
                              f"got {stage!r}")
        if stage["_call_"] not in runner_methods:
            raise ConfigError(f"{where}: run[{i}]._call_ is {stage['_call_']!r}; expected one of "
                              f"{sorted(runner_methods)}")
        method = getattr(runner_class, stage["_call_"], None) if runner_class is not None else None
        if method is not None:
            _check_arguments(method, [k for k in stage if k != "_call_"], f"run[{i}] ({stage['_call_']})", where)


def _check_node(node: Any, path: str, lookup, aliases: Set[str], where: str) -> None:
    """Depth-first in file order, as hydra_slayer builds, so alias definitions are seen before their uses."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_node(item, f"{path}[{i}]", lookup, aliases, where)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        _check_node(value, f"{path}.{key}" if path else str(key), lookup, aliases, where)
    alias = node.get("_var_")
    if "_target_" in node:
        _check_target(node, path, lookup, where)
        if alias:
            aliases.add(str(alias))
    elif alias is not None:
        name = str(alias).split(".")[0]
        if name not in aliases:
            raise ConfigError(f"{where}: '{path}' refers to _var_ {alias!r}, but no object named '{name}' is defined "
                              f"before it (defined: {sorted(aliases) or 'none'}; give an object '_var_: {name}' "
                              f"next to its _target_, earlier in the file)")


def _check_target(node: dict, path: str, lookup, where: str) -> None:
    target = node["_target_"]
    label = path or "<top level>"
    try:
        factory = lookup(target)
    except Exception:  # noqa: BLE001 - hydra_slayer raises LookupError, pydoc an import error of the module
        factory = None
    if factory is None:
        raise ConfigError(f"{where}: '{label}._target_' is {target!r}, which is neither a registered short name "
                          f"nor an importable dotted path (e.g. dnn_cool_catalyst.tabular.tabular_project)")
    mode = node.get("_mode_", "auto")
    if mode == "partial":
        return
    if mode == "auto" and not inspect.isclass(factory):
        # hydra_slayer's "auto" mode calls classes but turns functions into functools.partial objects, which
        # would silently skip e.g. seeding; catalyst-run behaves the same, so the config itself must say it.
        raise ConfigError(f"{where}: '{label}' ({target}) is a function; add '_mode_: call' next to its _target_ "
                          f"so it is called (without it Catalyst's builder returns an uncalled partial)")
    _check_arguments(factory, [k for k in node if k not in RESERVED_KEYS], f"'{label}' ({target})", where)


def _check_arguments(func: Callable, given: list, label: str, where: str) -> None:
    """Every given argument accepted (else the closest accepted name), every required one given."""
    accepted, open_ended = accepted_keywords(func)
    if not open_ended:
        for name in given:
            if name not in accepted:
                raise ConfigError(f"{where}: {label} has {unknown_argument_message(name, accepted)}")
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return
    required = [n for n, p in params.items() if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in ("self", "cls")]
    missing = [n for n in required if n not in given]
    if missing:
        raise ConfigError(f"{where}: {label} is missing required argument(s) {missing}")
