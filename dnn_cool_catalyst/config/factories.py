"""Small factories that configs call by name (``_target_``), for steps that have no class of their own."""
from __future__ import annotations

import atexit
import logging
import os
import random
import re
import sys

import numpy as np
import torch

from ..run.layout import RunDir
from ..signatures import forwards_kwargs
from .launcher import CATALYST_RUN_MODULE, launched_by_catalyst_run


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and torch. Put it first in a config: objects are built in file order, and model
    initialisation must already see the seed for a config run to be reproducible."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


@forwards_kwargs("dnn_cool_catalyst.project.Project.runner")
def project_runner(project, model, runner_name: str = "default", **runner_kwargs):
    """``project.runner(model, runner_name, ...)`` as a plain function, so a config can name it."""
    runner = project.runner(model=model, runner_name=runner_name, **runner_kwargs)
    if launched_by_catalyst_run():
        announce_results(runner)
    return runner


def _stage_done(record: logging.LogRecord) -> bool:
    """``train`` returns the runner itself: say "done" instead of printing its repr."""
    name, sep, result = record.getMessage().partition(":\n")
    if sep and re.fullmatch(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", result.strip()):
        record.msg, record.args = f"{name}: done", ()
    return True


def announce_results(runner) -> None:
    """Make a ``catalyst-run`` run say what it did: show the result each stage returns (Catalyst logs them at INFO
    level to a logger nobody listens to), and at exit print the run directory the results went to."""
    # the script logs under its module name, or "__main__" when started as python -m catalyst.contrib.scripts.run
    for stage_logger in (logging.getLogger(CATALYST_RUN_MODULE), logging.getLogger("__main__")):
        if any(getattr(h, "_dnn_cool", False) for h in stage_logger.handlers):
            continue
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("catalyst-run: %(message)s"))
        handler.addFilter(_stage_done)
        handler._dnn_cool = True
        stage_logger.addHandler(handler)
        stage_logger.setLevel(logging.INFO)
    failed = []
    previous_hook = sys.excepthook

    def remember_failure(*exc_info):
        failed.append(exc_info[0])
        previous_hook(*exc_info)

    sys.excepthook = remember_failure
    run_dir = os.path.abspath(runner.run_dir)

    def report() -> None:
        if failed:
            print(f"catalyst-run: stopped by {failed[0].__name__}; what runner '{os.path.basename(run_dir)}' wrote "
                  f"before is in {run_dir}", file=sys.stderr)
        else:
            entries = sorted(e + ("/" if os.path.isdir(os.path.join(run_dir, e)) else "")
                             for e in (os.listdir(run_dir) if os.path.isdir(run_dir) else []) if not e.startswith("."))
            print(f"catalyst-run: results of runner '{os.path.basename(run_dir)}' are in {run_dir} "
                  f"({', '.join(entries)}); see them with: tensorboard --logdir {RunDir(run_dir).tensorboard_root}")

    atexit.register(report)
