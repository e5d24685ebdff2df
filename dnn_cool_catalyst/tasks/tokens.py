"""Token classification (also masked language modelling): one softmax per token of a padded sequence."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..functional import metrics as M
from .base import Task, TaskError, log_of


class TokenClassificationTask(Task):
    """Features ``(N, T, F)``, logits ``(N, T, C)``, targets and availability ``(N, T)``; padding is unavailable.

    Example:
        >>> import torch
        >>> task = TokenClassificationTask("pos_tags", n_classes=3)
        >>> task.decode(torch.tensor([[[0., 5., 0.], [9., 0., 0.]]]))
        tensor([[1, 0]])
    """

    type_name = "token_classification"
    metric_names = ["token_accuracy"]
    selection_metric = "token_accuracy"

    def __init__(self, name: str, n_classes: int, class_names: Optional[Sequence[str]] = None, in_features=None):
        super().__init__(name, in_features)
        if n_classes < 2:
            raise TaskError(f"token classification task '{name}' needs at least 2 classes, got {n_classes}")
        self.n_classes = int(n_classes)
        self.class_names = [str(c) for c in class_names] if class_names is not None else None

    def out_features(self):
        return self.n_classes

    def check_logits(self, logits, batch_size):
        if logits.dim() != 3 or logits.shape[0] != batch_size or logits.shape[2] != self.n_classes:
            raise TaskError(f"token classification task '{self.name}': expected logits of shape "
                            f"({batch_size}, T, {self.n_classes}), got {tuple(logits.shape)}")
        return logits

    def activation(self, logits):
        return torch.softmax(logits, dim=-1)

    def inverse_activation(self, activations):
        return log_of(activations)

    def decode(self, logits):
        return logits.argmax(dim=-1)

    def element_loss(self, logits, target):
        return F.cross_entropy(logits.transpose(1, 2), target.long(), reduction="none")

    def metric_stats(self, logits, target, mask):
        correct = (self.decode(logits) == target.long()) & mask
        return torch.stack([correct.sum(), mask.sum()]).to(M.STATS_DTYPE)

    def metric_values(self, stats):
        return {"token_accuracy": M.safe_div(float(stats[0]), float(stats[1]))}

    def describe(self):
        return {**super().describe(), "class_names": self.class_names}
