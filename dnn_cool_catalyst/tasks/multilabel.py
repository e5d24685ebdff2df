"""Multilabel classification: one sigmoid per class with its own availability and tunable threshold."""
from __future__ import annotations

import math

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..functional import metrics as M
from ..tuning.thresholds import best_thresholds
from .base import Task, TaskError, class_labels, logit_of, resolve_class


class MultilabelTask(Task):
    """Targets and availability are ``(N, C)``; ``out.task == "glasses"`` holds where that class is present.

    Example:
        >>> import torch
        >>> task = MultilabelTask("facial_characteristics", 2, class_names=["glasses", "beard"])
        >>> task.set_decoder_params({"thresholds": [0.5, 0.9]})
        >>> task.decode(torch.tensor([[0.0, 1.0]]))
        tensor([[1., 0.]])
    """

    condition_kinds = frozenset({"eq"})
    type_name = "multilabel"
    metric_names = ["accuracy", "f1", "precision", "recall"]
    selection_metric = "accuracy"

    def __init__(self, name: str, n_classes: int, class_names: Optional[Sequence[str]] = None, in_features=None,
                 thresholds: Optional[Sequence[float]] = None):
        super().__init__(name, in_features)
        if n_classes < 1:
            raise TaskError(f"multilabel task '{name}' needs at least 1 class, got {n_classes}")
        if class_names is not None and len(class_names) != n_classes:
            raise TaskError(f"multilabel task '{name}': {len(class_names)} class names for {n_classes} classes")
        self.n_classes = int(n_classes)
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.label_kind = "str"  # a multilabel cell lists text labels ("a, b"), so its labels are text
        self.thresholds = [0.5] * self.n_classes
        if thresholds is not None:
            self.set_decoder_params({"thresholds": thresholds})
        self._threshold_cache = {}

    def out_features(self):
        return self.n_classes

    def check_logits(self, logits, batch_size):
        if logits.dim() != 2 or logits.shape != (batch_size, self.n_classes):
            raise TaskError(f"multilabel task '{self.name}': expected logits of shape "
                            f"({batch_size}, {self.n_classes}), got {tuple(logits.shape)}")
        return logits

    def activation(self, logits):
        return torch.sigmoid(logits)

    def inverse_activation(self, activations):
        return logit_of(activations)

    def _threshold_tensor(self, like):
        key = (like.device, like.dtype)
        cached = self._threshold_cache.get(key)
        if cached is None:
            cached = torch.tensor(self.thresholds, device=like.device, dtype=like.dtype)
            self._threshold_cache[key] = cached
        return cached

    def decode(self, logits):
        return (torch.sigmoid(logits) >= self._threshold_tensor(logits)).to(logits.dtype)

    def element_loss(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")

    def resolve_condition_arg(self, kind, arg):
        super().resolve_condition_arg(kind, arg)
        return resolve_class(self, arg)

    def condition(self, value, kind, arg):
        return value[:, arg] > 0.5

    def metric_stats(self, logits, target, mask):
        # Micro-averaged over every available (sample, class) label.
        return M.binary_stats(self.decode(logits), target, mask)

    def metric_values(self, stats):
        return M.binary_values(stats)

    def tune(self, logits, target, mask, metric="accuracy", min_recall=None, min_samples=0, min_per_class=0,
             alpha=0.05):
        # Each class's current threshold is what it keeps when it cannot be tuned or the gain is within noise.
        results = best_thresholds(torch.sigmoid(logits).double().numpy(), target.numpy(), mask.numpy(), metric=metric,
                                  min_recall=min_recall, default=self.thresholds, min_samples=min_samples,
                                  min_per_class=min_per_class, alpha=alpha)
        thresholds = [r.threshold for r in results]
        names = self.class_names or [str(i) for i in range(self.n_classes)]
        report = {name: r.report() for name, r in zip(names, results)}
        return {"thresholds": thresholds}, report

    def get_decoder_params(self):
        return {"thresholds": list(self.thresholds)}

    def set_decoder_params(self, params):
        unknown = set(params) - {"thresholds"}
        if unknown:
            raise TaskError(f"multilabel task '{self.name}': unknown decoding parameters {sorted(unknown)}")
        if "thresholds" not in params:
            return
        thresholds = [float(t) for t in params["thresholds"]]
        if len(thresholds) != self.n_classes or not all(math.isfinite(t) for t in thresholds):
            raise TaskError(f"multilabel task '{self.name}': expected {self.n_classes} finite thresholds, "
                            f"got {params['thresholds']!r}")
        self.thresholds = thresholds
        self._threshold_cache = {}

    def describe(self):
        return {**super().describe(), "class_names": self.class_names}

    def label_values(self, decoded):
        """Per sample, the list of the labels predicted present (class ids without names), in class order."""
        labels = class_labels(self)
        return [[labels[j] for j, on in enumerate(row) if on > 0.5] for row in decoded.tolist()]

    def probabilities(self, activation):
        names = self.class_names or [str(i) for i in range(self.n_classes)]
        return {f"[{name}]": activation[:, i] for i, name in enumerate(names)}
