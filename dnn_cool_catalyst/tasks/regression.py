"""Regression tasks: bounded (sigmoid rescaled to [lo, hi]) and plain (identity)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import metrics as M
from .base import Task, TaskError
from .binary import squeeze_single


class BoundedRegressionTask(Task):
    """Targets are in unit space ``[0, 1]`` (the converter rescales them); the decoder maps back to ``[lo, hi]``.

    The loss is the MSE between the activated value and the unit-space target. Metrics: ``mae`` in unit space and
    ``mae_units`` in label units.

    Example:
        >>> import torch
        >>> BoundedRegressionTask("face_x1", lo=0, hi=64).decode(torch.tensor([0.0]))
        tensor([32.])
    """

    type_name = "bounded_regression"
    metric_names = ["mae", "rmse", "mae_units"]

    def __init__(self, name: str, lo: float = 0.0, hi: float = 1.0, in_features=None):
        super().__init__(name, in_features)
        if not hi > lo:
            raise TaskError(f"bounded regression task '{name}': need hi > lo, got lo={lo}, hi={hi}")
        self.lo, self.hi = float(lo), float(hi)

    def out_features(self):
        return 1

    def check_logits(self, logits, batch_size):
        return squeeze_single(self, logits, batch_size)

    def activation(self, logits):
        return torch.sigmoid(logits)

    def decode(self, logits):
        return self.lo + (self.hi - self.lo) * torch.sigmoid(logits)

    def element_loss(self, logits, target):
        return (torch.sigmoid(logits) - target.to(logits.dtype)) ** 2

    def metric_stats(self, logits, target, mask):
        return M.error_stats(torch.sigmoid(logits), target, mask)

    def metric_values(self, stats):
        values = M.error_values(stats)
        values["mae_units"] = values["mae"] * (self.hi - self.lo)
        return values

    def describe(self):
        return {**super().describe(), "lo": self.lo, "hi": self.hi}


class RegressionTask(Task):
    """Unbounded regression on raw targets; negative values are real labels (availability is explicit).

    Example:
        >>> import torch
        >>> RegressionTask("temperature").decode(torch.tensor([-3.5]))
        tensor([-3.5000])
    """

    type_name = "regression"
    metric_names = ["mae", "rmse"]

    def __init__(self, name: str, in_features=None, loss: str = "mse"):
        super().__init__(name, in_features)
        if loss not in ("mse", "l1"):
            raise TaskError(f"regression task '{name}': loss must be 'mse' or 'l1', got {loss!r}")
        self.loss_name = loss

    def out_features(self):
        return 1

    def check_logits(self, logits, batch_size):
        return squeeze_single(self, logits, batch_size)

    def activation(self, logits):
        return logits

    def decode(self, logits):
        return logits

    def element_loss(self, logits, target):
        fn = F.mse_loss if self.loss_name == "mse" else F.l1_loss
        return fn(logits, target.to(logits.dtype), reduction="none")

    def metric_stats(self, logits, target, mask):
        return M.error_stats(logits, target, mask)

    def metric_values(self, stats):
        return M.error_values(stats)
