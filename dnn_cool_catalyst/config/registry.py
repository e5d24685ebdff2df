"""Short names for configs run through ``dnn-cool-run``.

``catalyst-run`` imports nothing of ours, so configs written for it use dotted ``_target_`` paths; our launcher
imports the package first and adds these names to Catalyst's registry, so ``_target_: security_project`` works
there as well as ``_target_: dnn_cool_catalyst.synthetic.security.security_project``.
"""
from __future__ import annotations

from typing import Dict

SHORT_NAMES: Dict[str, str] = {
    "Project": "dnn_cool_catalyst.project.Project",
    "Converters": "dnn_cool_catalyst.data.Converters",
    "DnnCoolSupervisedRunner": "dnn_cool_catalyst.runners.DnnCoolSupervisedRunner",
    "project_runner": "dnn_cool_catalyst.config.factories.project_runner",
    "seed_everything": "dnn_cool_catalyst.config.factories.seed_everything",
    "tabular_project": "dnn_cool_catalyst.tabular.tabular_project",
    "tabular_model": "dnn_cool_catalyst.tabular.tabular_model",
    "security_project": "dnn_cool_catalyst.synthetic.security.security_project",
    "security_model": "dnn_cool_catalyst.synthetic.security_model.security_model",
}


def register(registry=None):
    """Add :data:`SHORT_NAMES` to ``registry`` (default: Catalyst's ``REGISTRY``); adding twice is harmless."""
    import pydoc

    if registry is None:
        from catalyst.registry import REGISTRY as registry
    for name, dotted in SHORT_NAMES.items():
        if name in registry:
            continue
        factory = pydoc.locate(dotted)
        if factory is None:
            raise ImportError(f"cannot import {dotted} for the config name '{name}'")
        registry.add(factory, name=name)
    return registry
