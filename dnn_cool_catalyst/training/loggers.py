"""The TensorBoard logger of a training: readable run names and one lr scalar per epoch.

Where it writes is the run directory's business (``tensorboard/run-<N>/...``, see
:mod:`dnn_cool_catalyst.run.tensorboard`); this module decides what goes into the event files.

Example:
    >>> [is_optimizer_stat(key) for key in ("lr", "lr/adam", "loss", "momentum")]
    [True, True, False, True]
"""
from __future__ import annotations

import re
from typing import Dict

from catalyst.loggers.tensorboard import TensorboardLogger
from tensorboardX.proto.summary_pb2 import Summary

#: The run Catalyst calls ``_epoch_`` (metrics of the whole epoch, not of one loader) is written as this one.
EPOCH_RUN = "epoch"
#: Logged by Catalyst's optimizer callback on every loader and by its scheduler callback per epoch: kept once.
_OPTIMIZER_STATS = ("lr", "momentum")
#: Characters TensorBoard does not take in a tag (replaced by ``_``, as tensorboardX's ``add_scalar`` does).
_NOT_IN_TAGS = re.compile(r"[^-/\w.]")


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
