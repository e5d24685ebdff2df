"""Single-label classification: softmax, top-k ranking, conditions on a class."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..functional import metrics as M
from .base import Task, TaskError, class_labels, log_of, majority_share, names_kind, resolve_class
from .labels import check_kind


def _checked_kind(kind: str, where: str) -> str:
    try:
        return check_kind(kind, where)
    except ValueError as e:
        raise TaskError(str(e)) from None


class ClassificationTask(Task):
    """``out.task == 3`` or ``out.task == "red"`` holds where the label (or top-1 prediction) is that class.

    Example:
        >>> import torch
        >>> task = ClassificationTask("shirt_type", n_classes=3, class_names=["red", "green", "blue"], top_k=2)
        >>> task.rank(torch.tensor([[0.1, 2.0, 1.0]]))
        tensor([[1, 2]])
    """

    condition_kinds = frozenset({"eq"})
    type_name = "classification"
    selection_metric = "accuracy"

    def trivial_baseline(self, labels: torch.Tensor) -> float:
        return majority_share(labels)

    def __init__(self, name: str, n_classes: int, class_names: Optional[Sequence[str]] = None, in_features=None,
                 top_k: int = 1, label_kind: Optional[str] = None):
        super().__init__(name, in_features)
        if n_classes < 2:
            raise TaskError(f"classification task '{name}' needs at least 2 classes, got {n_classes}")
        if class_names is not None and len(class_names) != n_classes:
            raise TaskError(f"classification task '{name}': {len(class_names)} class names for {n_classes} classes")
        self.n_classes = int(n_classes)
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        # How the column holds the labels (see .labels); guessed from the names when not given (["1", "2"]: int).
        self.label_kind = None if label_kind is None else _checked_kind(label_kind, f"classification task '{name}'")
        self.top_k = max(1, min(int(top_k), self.n_classes))

    @property
    def metric_names(self):
        names = ["accuracy", "f1", "precision", "recall"]
        return names + ([f"accuracy@{self.top_k}"] if self.top_k > 1 else [])

    def out_features(self) -> int:
        return self.n_classes

    def check_logits(self, logits, batch_size):
        if logits.dim() != 2 or logits.shape != (batch_size, self.n_classes):
            raise TaskError(f"classification task '{self.name}': expected logits of shape "
                            f"({batch_size}, {self.n_classes}), got {tuple(logits.shape)}")
        return logits

    def activation(self, logits):
        return torch.softmax(logits, dim=-1)

    def inverse_activation(self, activations):
        return log_of(activations)

    def decode(self, logits):
        return logits.argmax(dim=-1)

    def rank(self, logits, k: Optional[int] = None):
        """Indices of the ``k`` (default ``top_k``) most likely classes, best first."""
        return logits.topk(k or self.top_k, dim=-1).indices

    def element_loss(self, logits, target):
        return F.cross_entropy(logits, target.long(), reduction="none")

    def resolve_condition_arg(self, kind, arg):
        super().resolve_condition_arg(kind, arg)
        return resolve_class(self, arg)

    def condition(self, value, kind, arg):
        return value.long() == arg

    def metric_stats(self, logits, target, mask):
        confusion = M.confusion_stats(self.decode(logits), target, mask, self.n_classes)
        in_top_k = (self.rank(logits) == target.long().unsqueeze(-1)).any(-1) & mask
        return torch.cat([confusion, in_top_k.sum().to(M.STATS_DTYPE).reshape(1)])

    def metric_values(self, stats):
        values = M.confusion_values(stats[:-1], self.n_classes)
        if self.top_k > 1:
            values[f"accuracy@{self.top_k}"] = M.safe_div(float(stats[-1]), float(stats[:-1].sum()))
        return values

    def describe(self):
        return {**super().describe(), "class_names": self.class_names}

    def label_values(self, decoded):
        """The predicted class as its label, as the column holds it (``"3"`` -> 3 on an integer column, 3.0 on a
        float one), the id without names.

        >>> task = ClassificationTask("rate", 3, class_names=["1", "2", "5"], label_kind="float")
        >>> task.label_values(torch.tensor([2, 0]))
        [5.0, 1.0]
        """
        labels = class_labels(self)
        return [labels[i] for i in decoded.long().tolist()]

    def prediction_kind(self):
        return "int" if self.class_names is None else names_kind(self)

    def probabilities(self, activation):
        names = self.class_names or [str(i) for i in range(self.n_classes)]
        return {f"[{name}]": activation[:, i] for i, name in enumerate(names)}
