"""Regression tasks: bounded (sigmoid rescaled to [lo, hi]) and plain (identity)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional import metrics as M
from .base import Task, TaskError, logit_of
from .binary import squeeze_single


class BoundedRegressionTask(Task):
    """Targets are in unit space ``[0, 1]`` (the converter rescales them); the decoder maps back to ``[lo, hi]``.

    The loss is the MSE between the activated value and the unit-space target. Metrics: ``mae``, ``rmse`` and
    ``r2`` in unit space, ``mae_units`` and ``rmse_units`` in label units.

    Example:
        >>> import torch
        >>> BoundedRegressionTask("face_x1", lo=0, hi=64).decode(torch.tensor([0.0]))
        tensor([32.])
    """

    type_name = "bounded_regression"
    metric_names = ["mae", "rmse", "r2", "mae_units", "rmse_units"]
    minimized_metrics = frozenset({"mae", "rmse", "mae_units", "rmse_units"})
    selection_metric = "r2"

    def trivial_baseline(self, labels: torch.Tensor) -> float:
        return 0.0  # R^2 of predicting the mean

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

    def inverse_activation(self, activations):
        return logit_of(activations)

    def decode(self, logits):
        return self.lo + (self.hi - self.lo) * torch.sigmoid(logits)

    def target_in_label_units(self, target):
        return self.lo + (self.hi - self.lo) * target

    def element_loss(self, logits, target):
        return (torch.sigmoid(logits) - target.to(logits.dtype)) ** 2

    def metric_stats(self, logits, target, mask):
        return M.error_stats(torch.sigmoid(logits), target, mask)

    def metric_values(self, stats):
        values = M.error_values(stats)
        values["mae_units"] = values["mae"] * (self.hi - self.lo)
        values["rmse_units"] = values["rmse"] * (self.hi - self.lo)
        return values

    def describe(self):
        return {**super().describe(), "lo": self.lo, "hi": self.hi}

    def prediction_kind(self):
        return "float"  # a value in label units


class RegressionTask(Task):
    """Unbounded regression; negative values are real labels (availability is explicit).

    The head predicts in *standard units*: the loss compares it with ``(target - mean) / std``, where ``mean`` and
    ``std`` are fitted on the training split by :meth:`fit_targets` (the runner does it once per run and saves
    them). :meth:`activation` and :meth:`decode` map back to label units, so predictions, stored outputs and the
    metrics (``mae``, ``rmse`` in label units; ``r2``) are in the units of the labels. Unfitted, the scaling is
    the identity. A constant training column (std 0) keeps std 1: nothing is divided by zero.

    Example:
        >>> import torch
        >>> task = RegressionTask("temperature")
        >>> task.decode(torch.tensor([-3.5]))
        tensor([-3.5000])
        >>> task.fit_targets(torch.tensor([10., 30., -99.]), torch.tensor([True, True, False]))
        >>> task.get_fitted_state()
        {'mean': 20.0, 'std': 10.0}
        >>> task.decode(torch.tensor([-1.0, 0.5]))
        tensor([10., 25.])
    """

    type_name = "regression"
    metric_names = ["mae", "rmse", "r2"]
    minimized_metrics = frozenset({"mae", "rmse"})
    selection_metric = "r2"

    def trivial_baseline(self, labels: torch.Tensor) -> float:
        return 0.0  # R^2 of predicting the mean

    def __init__(self, name: str, in_features=None, loss: str = "mse"):
        super().__init__(name, in_features)
        if loss not in ("mse", "l1"):
            raise TaskError(f"regression task '{name}': loss must be 'mse' or 'l1', got {loss!r}")
        self.loss_name = loss
        self.reset_fitted_state()

    def out_features(self):
        return 1

    def check_logits(self, logits, batch_size):
        return squeeze_single(self, logits, batch_size)

    # -- scaling fitted on the training split --------------------------------------------------------------
    def reset_fitted_state(self):
        self.mean, self.std = 0.0, 1.0

    def fit_targets(self, target, mask):
        values = target[mask].double()
        if values.numel() == 0:
            self.reset_fitted_state()
            return
        mean = float(values.mean())
        std = float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
        # A constant column (or a single label): keep unit scale rather than divide by ~0.
        self.mean, self.std = mean, std if std > 1e-12 * max(1.0, abs(mean)) else 1.0

    def get_fitted_state(self):
        return {"mean": self.mean, "std": self.std}

    def set_fitted_state(self, state):
        if not isinstance(state, dict):
            raise TaskError(f"regression task '{self.name}': fitted state must be a dict with 'mean' and 'std', "
                            f"got {type(state).__name__}")
        unknown = set(state) - {"mean", "std"}
        if unknown:
            raise TaskError(f"regression task '{self.name}': unknown fitted state field(s) {sorted(unknown)}")
        for key in ("mean", "std"):
            value = state.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TaskError(f"regression task '{self.name}': fitted '{key}' must be a finite number, got "
                                f"{value!r}")
        if not state["std"] > 0:
            raise TaskError(f"regression task '{self.name}': fitted 'std' must be > 0, got {state['std']!r}")
        self.mean, self.std = float(state["mean"]), float(state["std"])

    def _to_units(self, logits):
        if self.mean == 0.0 and self.std == 1.0:
            return logits
        return logits * self.std + self.mean

    # -- model outputs -------------------------------------------------------------------------------------
    def activation(self, logits):
        return self._to_units(logits)

    def inverse_activation(self, activations):
        # Back to the standardised scale of this task's current fitted state.
        return (activations.double() - self.mean) / self.std

    def decode(self, logits):
        return self._to_units(logits)

    def element_loss(self, logits, target):
        fn = F.mse_loss if self.loss_name == "mse" else F.l1_loss
        standard = (target.to(logits.dtype) - self.mean) / self.std
        return fn(logits, standard, reduction="none")

    def metric_stats(self, logits, target, mask):
        return M.error_stats(self._to_units(logits), target, mask)

    def metric_values(self, stats):
        return M.error_values(stats)

    def prediction_kind(self):
        return "float"  # a value in label units
