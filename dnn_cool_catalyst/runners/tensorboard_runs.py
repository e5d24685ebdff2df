"""TensorBoard runs of a run directory: one numbered folder per runner, readable run names, one lr scalar.

Each runner object writes everything it logs (training scalars, validation frames, inference summaries) under
``<run_dir>/tensorboard/run-<N>/<loader>/``, ``N`` one more than the highest already there. Running the same
experiment again therefore shows up in TensorBoard as ``run-2/train``, ``run-2/valid``... next to ``run-1/...``
instead of a second event file appended to the same folder (which TensorBoard would draw as one zig-zagging line).

Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> [os.path.basename(claim_tensorboard_run(root)) for _ in range(3)]
    ['run-1', 'run-2', 'run-3']
"""
from __future__ import annotations

import os
import re
from typing import Dict

from catalyst.loggers.tensorboard import TensorboardLogger
from tensorboardX.proto.summary_pb2 import Summary

RUN_PREFIX = "run-"
#: The run Catalyst calls ``_epoch_`` (metrics of the whole epoch, not of one loader) is written as this one.
EPOCH_RUN = "epoch"
#: Logged by Catalyst's optimizer callback on every loader and by its scheduler callback per epoch: kept once.
_OPTIMIZER_STATS = ("lr", "momentum")
#: Characters TensorBoard does not take in a tag (replaced by ``_``, as tensorboardX's ``add_scalar`` does).
_NOT_IN_TAGS = re.compile(r"[^-/\w.]")


def claim_tensorboard_run(root: str) -> str:
    """Create and return ``<root>/run-<N>``, ``N`` one more than the highest existing run (``mkdir`` decides
    between two processes claiming the same number)."""
    os.makedirs(root, exist_ok=True)
    pattern = re.compile(re.escape(RUN_PREFIX) + r"(\d+)")
    taken = [int(m.group(1)) for m in map(pattern.fullmatch, os.listdir(root)) if m]
    number = max(taken, default=0) + 1
    while True:
        path = os.path.join(root, f"{RUN_PREFIX}{number}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            number += 1


def is_optimizer_stat(key: str) -> bool:
    """``lr``, ``momentum`` and their per-optimizer forms ``lr/<key>``."""
    return any(key == name or key.startswith(name + "/") for name in _OPTIMIZER_STATS)


class FlowTensorboardLogger(TensorboardLogger):
    """Catalyst's TensorBoard logger with the learning rate and momentum logged once per epoch (from the training
    loader: the values its batches used) instead of once per loader and again by the scheduler, and the epoch-level
    run named ``epoch`` instead of ``_epoch_`` (written only when something other than lr/momentum is in it).
    A loader's scalars go out as one event of many values rather than one ``add_scalar`` each (~0.13 ms apiece,
    the bulk of a small model's loader end); TensorBoard reads both the same way."""

    def _log_metrics(self, metrics: Dict[str, float], step: int, loader_key: str, suffix="") -> None:
        if not metrics:
            return
        values = [Summary.Value(tag=_NOT_IN_TAGS.sub("_", f"{key}{suffix}").lstrip("/"), simple_value=float(value))
                  for key, value in metrics.items()]
        self.loggers[loader_key]._get_file_writer().add_summary(Summary(value=values), step)

    def _keep(self, metrics: Dict[str, float], loader_key: str) -> Dict[str, float]:
        if loader_key.startswith("train"):
            return metrics
        return {key: value for key, value in metrics.items() if not is_optimizer_stat(key)}

    def log_metrics(self, metrics, scope, runner) -> None:
        """Batch and loader scopes as Catalyst's (lr/momentum only on training loaders); the epoch scope's own
        metrics (scheduler lr/momentum dropped) under the run ``epoch``."""
        if scope in ("batch", "loader"):
            super().log_metrics(self._keep(metrics, runner.loader_key), scope, runner)
        elif scope == "epoch" and self.log_epoch_metrics:
            own = {key: value for key, value in metrics.get("_epoch_", {}).items() if not is_optimizer_stat(key)}
            if own:
                self._check_loader_key(loader_key=EPOCH_RUN)
                self._log_metrics(metrics=own, step=runner.epoch_step, loader_key=EPOCH_RUN, suffix="/epoch")


class TensorboardRunsMixin:
    """Mixed into the runner (needs ``run_dir`` and ``_writes_files()``): ``tensorboard_run_dir``, this runner's
    TensorBoard run, claimed on first use (the runner's ``tensorboard_dir`` is in it)."""

    @property
    def tensorboard_root(self) -> str:
        """``<run_dir>/tensorboard``: what ``tensorboard --logdir`` should be given."""
        return os.path.join(self.run_dir, "tensorboard")

    @property
    def tensorboard_run_dir(self) -> str:
        """``<run_dir>/tensorboard/run-<N>``, the folder this runner writes its loaders' summaries under."""
        claimed = getattr(self, "_tensorboard_dir", None)
        if claimed is None:
            if self._writes_files():
                claimed = claim_tensorboard_run(self.tensorboard_root)
            else:  # a process that writes nothing (a later DDP node) must not take a number
                claimed = os.path.join(self.tensorboard_root, f"{RUN_PREFIX}unused")
            self._tensorboard_dir = claimed
        return claimed
