"""Small factories that configs call by name (``_target_``), for steps that have no class of their own."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and torch. Put it first in a config: objects are built in file order, and model
    initialisation must already see the seed for a config run to be reproducible."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def project_runner(project, model, runner_name: str = "default", **runner_kwargs):
    """``project.runner(model, runner_name, ...)`` as a plain function, so a config can name it."""
    return project.runner(model=model, runner_name=runner_name, **runner_kwargs)
