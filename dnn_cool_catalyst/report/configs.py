"""An experiment's configuration read back and flattened, and the keys that differ between experiments.

A run made by ``dnn-cool-run`` has the resolved YAML it ran (``config.yml``); a Python run has the
``run_config.json`` that ``runner.train`` writes (run/run_config.py). Nested keys are flattened with dots,
list items by position (``run.0.num_epochs``), so two configurations are compared key by key.

Example:
    >>> flatten({"model": {"hidden": 8}, "run": [{"num_epochs": 2}], "tags": []})
    {'model.hidden': 8, 'run.0.num_epochs': 2, 'tags': '[]'}
    >>> differing_keys([{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 1}])
    ['b']
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

from ..errors import UnsafeFileError
from ..run.layout import CONFIG_FILE, RUN_CONFIG_FILE, RunDir
from ..run.run_config import read_run_config
from ..safe_read import read_yaml
from .settings import common_settings


def flatten(config, prefix: str = "") -> dict:
    """``{dotted.key: scalar}``; an empty dict or list is kept as ``'{}'`` / ``'[]'`` so that it still shows."""
    flat = {}
    if isinstance(config, dict) and config:
        items = ((str(k), v) for k, v in config.items())
    elif isinstance(config, (list, tuple)) and config:
        items = ((str(i), v) for i, v in enumerate(config))
    else:
        return {prefix: json.dumps(config) if isinstance(config, (dict, list, tuple)) else config} if prefix \
            else {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def read_config(directory: str) -> Tuple[Optional[dict], str, Optional[str]]:
    """``(flattened settings or None, the file they came from or '', a problem or None)`` for one directory:
    ``config.yml`` and ``run_config.json`` brought to one vocabulary (:mod:`.settings`), so that Python and config
    runs compare key by key."""
    yaml_path, json_path = RunDir(directory).config_yml, RunDir(directory).run_config
    loaded = record = None
    if os.path.exists(yaml_path):
        import yaml

        try:
            loaded = read_yaml(yaml_path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:  # a hostile file (UnsafeFileError) goes up
            return None, CONFIG_FILE, f"{CONFIG_FILE} unreadable ({_one_line(e)})"
        if not isinstance(loaded, dict):
            return None, CONFIG_FILE, f"{CONFIG_FILE} is not a mapping"
    if os.path.exists(json_path):
        try:
            record = read_run_config(json_path)
        except UnsafeFileError:
            raise  # the whole run is listed as unreadable (experiments.load_experiment)
        except (OSError, ValueError) as e:
            if loaded is None:
                return None, RUN_CONFIG_FILE, f"{RUN_CONFIG_FILE} unreadable ({_one_line(e)})"
    if loaded is None and record is None:
        return None, "", None
    source = CONFIG_FILE if loaded is not None else RUN_CONFIG_FILE
    return flatten(common_settings(loaded, record)), source, None


def differing_keys(configs: List[Optional[Dict]]) -> List[str]:
    """Keys with two or more values among the configurations that have them, in first-seen order. A key absent
    from a configuration is unknown there, not a difference: a config run records its model factory's
    arguments, a Python run does not. Configurations that could not be read (``None``) are left out."""
    known = [c for c in configs if c is not None]
    order: Dict[str, None] = {}
    for config in known:
        order.update(dict.fromkeys(config))
    keys = []
    for key in order:
        seen = {_canonical(c[key]) for c in known if key in c}
        if len(seen) > 1:
            keys.append(key)
    return keys


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:400] if text else type(error).__name__  # paths can be long: keep the reason
