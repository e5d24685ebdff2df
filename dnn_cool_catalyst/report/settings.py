"""One vocabulary of settings for Python runs and config runs, so a report compares them key by key.

A Python run records ``run_config.json`` (``train.lr``, ``runner.batch_size``, ``model.class``...); a
``dnn-cool-run`` run records the YAML it ran (``run.0.lr``, ``runner.model.hidden``, ``runner.runner_name``, the
launcher's ``_dnn_cool_run_`` record) and, once it trained, the same ``run_config.json``. Compared as they are, two
runs of different kinds differ in every key. Here both become ``run_config.json``'s sections: ``train.*`` (the
arguments of the ``train`` stage), ``runner.*`` (the runner's settings), ``model.*`` (class, parameter count, and
for a config run the model factory's arguments, e.g. ``model.hidden``), ``flow.*``, ``converters.*``; bookkeeping
that differs between any two runs without being a setting (the run's name, the stage list's ``_call_``, the
launcher's record, ``train.verbose``) is left out.

Example:
    >>> yaml_config = {"runner": {"_target_": "project_runner", "runner_name": "a", "batch_size": 32,
    ...                           "model": {"_target_": "tabular_model", "_mode_": "call", "hidden": 128,
    ...                                     "project": {"_var_": "project"}}},
    ...                "run": [{"_call_": "train", "num_epochs": 3, "lr": 0.01}, {"_call_": "infer"}],
    ...                "_dnn_cool_run_": {"overrides": ["run.0.lr=0.01"]}}
    >>> common_settings(yaml_config, None)
    {'train': {'num_epochs': 3, 'lr': 0.01}, 'runner': {'batch_size': 32}, 'model': {'hidden': 128}}
    >>> common_settings(yaml_config, {"train": {"lr": 0.01, "verbose": "auto"}, "model": {"parameters": 9},
    ...                               "status": {"train": "done"}})
    {'train': {'lr': 0.01}, 'model': {'parameters': 9, 'hidden': 128}}
"""
from __future__ import annotations

from typing import Optional

#: Keys of a config node that build it rather than set it (hydra_slayer's).
BUILD_KEYS = {"_target_", "_mode_", "_var_", "_meta_factory_"}
#: Settings that say nothing about the experiment: the run's name is its directory, verbosity only prints.
BOOKKEEPING = {"status": None, "train": {"verbose", "resume"}, "runner": {"runner_name"}}


def _model_node(config: dict, runner: dict):
    """The node that builds the model: the runner's ``model`` argument, the top-level object it refers to
    (``{_var_: model}``), or a top-level ``model`` section."""
    model = runner.get("model")
    if isinstance(model, dict) and "_var_" in model and "_target_" not in model:
        name = str(model["_var_"])
        model = next((node for node in config.values() if isinstance(node, dict) and node.get("_var_") == name
                      and "_target_" in node), None)
    if not isinstance(model, dict):
        model = config.get("model")
    return model


def _arguments(node) -> dict:
    """A config node's own arguments: build keys and references to other objects (``{_var_: ...}``) left out."""
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items()
            if k not in BUILD_KEYS and not (isinstance(v, dict) and ("_var_" in v or "_target_" in v))}


def from_yaml(config: dict) -> dict:
    """The sections a config run's YAML gives: ``train`` (its ``train`` stage's arguments), ``runner`` and
    ``model`` (the factories' arguments), and every other top-level object's arguments under its key
    (``project.n_samples``); the launcher's own keys (``_dnn_cool_run_``) are left out."""
    runner = config.get("runner") if isinstance(config.get("runner"), dict) else {}
    stages = config.get("run") if isinstance(config.get("run"), list) else []
    train = next((s for s in stages if isinstance(s, dict) and s.get("_call_") == "train"), {})
    sections = {"train": {k: v for k, v in train.items() if k != "_call_"}, "runner": _arguments(runner),
                "model": _arguments(_model_node(config, runner))}
    for key, node in config.items():
        if key not in ("runner", "run", "model") and not str(key).startswith("_"):
            sections[key] = _arguments(node) if isinstance(node, dict) else node
    return {name: section for name, section in sections.items() if section}


def common_settings(yaml_config: Optional[dict], run_config: Optional[dict]) -> dict:
    """``run_config.json``'s record where there is one (what ``train()`` saw, for both kinds of run), completed
    with the model factory's arguments from the YAML; the YAML's sections alone for a config run that never
    trained. Bookkeeping keys are dropped."""
    if run_config is not None:
        settings = {k: dict(v) if isinstance(v, dict) else v for k, v in run_config.items()}
        if yaml_config is not None:  # what only the YAML knows: the model's and the other objects' arguments
            for key, section in from_yaml(yaml_config).items():
                if key == "model":
                    settings["model"] = {**(settings.get("model") or {}), **section}
                elif key not in ("train", "runner"):
                    settings.setdefault(key, section)
    else:
        settings = from_yaml(yaml_config or {})
    for section, keys in BOOKKEEPING.items():
        if keys is None:
            settings.pop(section, None)
        elif isinstance(settings.get(section), dict):
            settings[section] = {k: v for k, v in settings[section].items() if k not in keys}
            if not settings[section]:
                del settings[section]
    return settings
