"""Catalyst config-API runs: ``dnn-cool-run --config configs/security.yml`` or ``catalyst-run --config ...``.

See ``configs/`` for examples and :mod:`.run` for the format.
"""
from .factories import project_runner, seed_everything
from .registry import SHORT_NAMES, register
from .run import load_config, run_config
from .validate import ConfigError

__all__ = ["ConfigError", "SHORT_NAMES", "load_config", "project_runner", "register", "run_config",
           "seed_everything"]
