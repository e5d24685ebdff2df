"""Binary task: one logit, sigmoid, tunable threshold."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..functional import metrics as M
from ..tuning.thresholds import best_threshold
from .base import Task, TaskError, label_key, logit_of, majority_share
from .labels import check_kind, find_label, kind_of_keys, mismatch_hint, typed_labels


def squeeze_single(task: Task, logits: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Accept ``(N,)`` or ``(N, 1)`` logits for single-output tasks; raise naming the task otherwise."""
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)  # a view: cheaper backward than indexing
    if logits.dim() != 1 or logits.shape[0] != batch_size:
        raise TaskError(
            f"{task.type_name} task '{task.name}': expected logits of shape ({batch_size},) or ({batch_size}, 1), "
            f"got {tuple(logits.shape)}"
        )
    return logits


class BinaryTask(Task):
    """``out.task`` holds where the label (or the decoded prediction) is the positive class (1).

    ``labels`` (optional, ``[negative, positive]`` as written in the DataFrame, e.g. ``["male", "female"]``) also
    allows ``out.task == "female"`` / ``out.task == "male"``. ``label_kind`` (``"bool"``, ``"int"``, ``"float"``
    or ``"str"``, see :mod:`.labels`; the converter fits it from the column, default: guessed from ``labels``)
    is how the column holds them: predictions come back as such values, and a condition value must equal one.

    Example:
        >>> import torch
        >>> task = BinaryTask("door_open", in_features=4)
        >>> task.decode(torch.tensor([2.0, -2.0]))
        tensor([1., 0.])
    """

    condition_kinds = frozenset({"bool", "eq"})
    type_name = "binary"
    metric_names = ["accuracy", "f1", "precision", "recall"]
    selection_metric = "accuracy"

    def trivial_baseline(self, labels: torch.Tensor) -> float:
        return majority_share(labels)

    def __init__(self, name: str, in_features=None, threshold: float = 0.5, labels=None,
                 label_kind: Optional[str] = None):
        super().__init__(name, in_features)
        self.threshold = float(threshold)
        if labels is not None and (len(labels) != 2 or label_key(labels[0]) == label_key(labels[1])):
            raise TaskError(f"binary task '{name}': labels must be [negative, positive], two distinct values, got "
                            f"{labels!r}")
        self.labels = None if labels is None else list(labels)
        try:
            self.label_kind = kind_of_keys(self.labels or [0, 1]) if label_kind is None else \
                check_kind(label_kind, f"binary task '{name}'")
        except ValueError as e:
            raise TaskError(str(e)) from None

    def typed_labels(self) -> list:
        """``[negative, positive]`` as the column holds them (``[False, True]`` for a bool column)."""
        return typed_labels(self.label_kind, self.labels if self.labels is not None else [0, 1])

    def out_features(self) -> int:
        return 1

    def check_logits(self, logits, batch_size):
        return squeeze_single(self, logits, batch_size)

    def activation(self, logits):
        return torch.sigmoid(logits)

    def inverse_activation(self, activations):
        return logit_of(activations)

    def decode(self, logits):
        return (torch.sigmoid(logits) >= self.threshold).to(logits.dtype)

    def element_loss(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")

    def resolve_condition_arg(self, kind, arg):
        super().resolve_condition_arg(kind, arg)
        if kind != "eq":
            return arg
        labels = self.typed_labels()
        index = find_label(self.label_kind, self.labels if self.labels is not None else [0, 1], arg)
        if index is None:
            shown = arg.item() if hasattr(arg, "item") else arg
            raise TaskError(f"binary task '{self.name}' has no label {shown!r}; its labels are {labels} (positive "
                            f"class {labels[1]!r}: out.{self.name} holds where the label is {labels[1]!r})"
                            f"{mismatch_hint(self.label_kind, arg)}")
        return index == 1  # True: the positive label

    def condition_label(self, kind, arg):
        if kind != "eq":
            return arg
        return self.typed_labels()[1 if arg else 0]

    def condition(self, value, kind, arg):
        positive = value > 0.5
        return positive if kind == "bool" or arg else ~positive

    def metric_stats(self, logits, target, mask):
        return M.binary_stats(self.decode(logits), target, mask)

    def metric_values(self, stats):
        return M.binary_values(stats)

    def tune(self, logits, target, mask, metric="accuracy", min_recall=None, min_samples=0, min_per_class=0,
             alpha=0.05):
        result = best_threshold(torch.sigmoid(logits[mask]).double().numpy(), target[mask].numpy(), metric=metric,
                                min_recall=min_recall, default=self.threshold, min_samples=min_samples,
                                min_per_class=min_per_class, alpha=alpha)
        return {"threshold": result.threshold}, {"threshold": result.report()}

    def get_decoder_params(self):
        return {"threshold": self.threshold}

    def set_decoder_params(self, params):
        unknown = set(params) - {"threshold"}
        if unknown:
            raise TaskError(f"binary task '{self.name}': unknown decoding parameters {sorted(unknown)}")
        threshold = float(params.get("threshold", self.threshold))
        # The tuner may return a hair above 1 ("predict nothing"), so only finiteness is required.
        if not math.isfinite(threshold):
            raise TaskError(f"binary task '{self.name}': threshold must be a finite number, got {threshold}")
        self.threshold = threshold

    def label_values(self, decoded):
        """The positive label where the prediction is positive, the negative one elsewhere, as the column holds
        them (1/0 without labels).

        >>> BinaryTask("sex", labels=["male", "female"]).label_values(torch.tensor([1.0, 0.0]))
        ['female', 'male']
        >>> BinaryTask("smoker", labels=[0, 1], label_kind="bool").label_values(torch.tensor([1.0, 0.0]))
        [True, False]
        """
        negative, positive = self.typed_labels()
        return [positive if value > 0.5 else negative for value in decoded.tolist()]

    def prediction_kind(self):
        return self.label_kind

    def probabilities(self, activation):
        return {"": activation}  # P(positive)
