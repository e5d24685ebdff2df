"""The task interface.

A task owns everything that is specific to one kind of label: its head module, activation, decoder, element-wise
loss, the sufficient statistics its metrics are computed from, and how its value can be used as a precondition.
The flow, the losses, the metrics and the runner only ever talk to this interface, so a user-defined task is a
subclass that fills in the abstract methods and needs no change anywhere else.

Shapes: ``target`` and ``available`` share one shape per task, ``(N,)`` for one label per sample, ``(N, C)`` for
per-class labels, ``(N, T)`` for per-token labels. ``available`` marks the label elements that exist (NaN in the
DataFrame, padding tokens and unlabelled classes are ``False``). Missing targets must hold a finite filler value
(the converters write 0): the loss masks them out of its value, but a NaN there would still reach the gradient,
and sanitising every target in the training step would cost more than the whole mask algebra.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional

import numpy as np
import torch
from torch import nn

from ..errors import TaskError  # defined there with every library error; re-exported here
from .labels import find_label, kind_of_keys, mismatch_hint, typed_labels


#: Names no task may have (see :meth:`Task.__init__`).
RESERVED_TASK_NAMES = frozenset({"overall"})


def masked_mean(elements: torch.Tensor, mask: torch.Tensor, count: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of ``elements`` where ``mask`` holds, 0 (in the graph) where nothing does; ``count``: ``mask.sum()``
    when the caller has it already."""
    count = mask.sum() if count is None else count
    return torch.where(mask, elements, 0.0).sum() / count.clamp(min=1)


def per_sample_mean(elements: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sample's mean of ``elements`` ``(N, ...)`` where ``mask`` holds, 0 where nothing does: ``(N,)``."""
    elements = torch.where(mask, elements, 0.0)
    if elements.dim() == 1:
        return elements
    weights = mask.to(elements.dtype).flatten(1).sum(1)
    return elements.flatten(1).sum(1) / weights.clamp(min=1.0)


def majority_share(labels: torch.Tensor) -> float:
    """Accuracy of always answering the most frequent of these class labels."""
    labels = labels.reshape(-1).round().long()
    return float(torch.bincount(labels - labels.min()).max()) / float(labels.numel())


class Task:
    #: How the task may be used as a precondition: ``"bool"`` allows ``out.task`` / ``~out.task``,
    #: ``"eq"`` allows ``out.task == value``. An empty set means the task cannot gate other tasks.
    condition_kinds: FrozenSet[str] = frozenset()
    #: Short type name used in messages and in saved run metadata.
    type_name: str = "task"
    #: Names of the metric values :meth:`metric_values` returns, in order.
    metric_names: List[str] = []
    #: The metrics where lower is better (errors); every other metric is maximised by model selection.
    minimized_metrics: FrozenSet[str] = frozenset()
    #: The metric ``train(valid_metric="task_mean")`` averages over tasks: higher is better and it is comparable
    #: across tasks (a rate or a fraction of explained variance, 1 = perfect). ``None``: the task is left out.
    selection_metric: Optional[str] = None

    def trivial_baseline(self, labels: torch.Tensor) -> Optional[float]:
        """The ``selection_metric`` a model that learned nothing reaches on these labelled samples (``None``: no
        such floor, so early stopping never waits for this task to beat it)."""
        return None

    def __init__(self, name: str, in_features: Optional[int] = None):
        if not isinstance(name, str) or not name.isidentifier():
            raise TaskError(f"task name must be a Python identifier, got {name!r}")
        if name.startswith("_"):
            raise TaskError(f"task name {name!r} starts with '_': such names are reserved (out._x and flow._x are "
                            f"private attributes); rename the task or column")
        if name in RESERVED_TASK_NAMES:
            raise TaskError(f"task name {name!r} is reserved: worst_examples(split, 'overall') is the per-sample loss "
                            f"summed over all tasks; rename the task or column")
        self.name = name
        self.in_features = in_features

    # -- model side -------------------------------------------------------------------------------
    def out_features(self) -> int:
        """Width of the head's last dimension."""
        raise NotImplementedError

    def head(self) -> nn.Module:
        """A fresh head mapping features ``(N, ..., F)`` to logits. ``in_features=None`` makes it lazy."""
        if self.in_features is None:
            return nn.LazyLinear(self.out_features())
        return nn.Linear(self.in_features, self.out_features())

    def check_logits(self, logits: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Return logits in this task's canonical shape, or raise :class:`TaskError` naming the task."""
        raise NotImplementedError

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse_activation(self, activations: torch.Tensor) -> torch.Tensor:
        """Logits whose :meth:`activation` gives ``activations`` back (up to clipping of probabilities 0 and 1).
        Ensembles average activations and evaluate the average as if one model had produced it; a task without
        an inverse cannot be ensembled."""
        raise TaskError(f"{self.type_name} task '{self.name}' ({type(self).__name__}) does not define "
                        f"inverse_activation(), which ensembles need to evaluate averaged activations")

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Prediction in the same space (and shape) as the target, used by metrics and decoded gating."""
        raise NotImplementedError

    # -- loss -------------------------------------------------------------------------------------
    def element_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Un-reduced loss with the target's shape."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss over the masked label elements; exactly 0 (still in the graph) when none is valid."""
        return masked_mean(self.element_loss(logits, target), mask)

    def per_sample_loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Loss of each sample ``(N,)``: mean over its valid label elements, 0 where it has none."""
        return per_sample_mean(self.element_loss(logits, target), mask)

    # -- preconditions ----------------------------------------------------------------------------
    def resolve_condition_arg(self, kind: str, arg):
        """Validate a condition at flow definition time; returns the argument :meth:`condition` receives."""
        if kind not in self.condition_kinds:
            allowed = {"bool": f"out.{self.name}", "eq": f"out.{self.name} == <value>"}
            usable = " or ".join(allowed[k] for k in sorted(self.condition_kinds))
            hint = (f"use {usable} (in parentheses when combined with |)" if usable
                    else "it cannot be used as a precondition")
            form = allowed.get(kind, kind)
            raise TaskError(f"{self.type_name} task '{self.name}' does not support the condition {form}: {hint}")
        return arg

    def condition_label(self, kind: str, arg):
        """How the resolved ``arg`` of an ``eq`` condition is shown (flow.json, explanations): the label value as
        the column holds it."""
        names = getattr(self, "class_names", None)
        if kind == "eq" and names is not None and isinstance(arg, int):
            return class_labels(self)[arg]
        return arg

    def condition(self, value: torch.Tensor, kind: str, arg) -> torch.Tensor:
        """Per-sample boolean ``(N,)``: whether ``value`` (a target or a decoded prediction) satisfies it."""
        raise NotImplementedError

    # -- metrics ----------------------------------------------------------------------------------
    def metric_stats(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sufficient statistics of one batch as a 1-D float64 tensor; they add up across batches and devices."""
        raise NotImplementedError

    def metric_values(self, stats: torch.Tensor) -> Dict[str, float]:
        """Dataset-level metric values from summed :meth:`metric_stats`."""
        raise NotImplementedError

    # -- state fitted on the training split (e.g. target scaling) ---------------------------------------
    def fit_targets(self, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Fit state on the training split's targets (``mask`` marks the elements the loss sees). The runner
        calls it once per run, before training; the default task has nothing to fit."""

    def get_fitted_state(self) -> dict:
        """JSON-able state from :meth:`fit_targets` (saved in the run directory); empty when there is none."""
        return {}

    def set_fitted_state(self, state: dict) -> None:
        """Restore :meth:`get_fitted_state` output; raises :class:`TaskError` naming the bad field."""
        if state:
            raise TaskError(f"task '{self.name}' has no fitted state, got fields {sorted(state)}")

    def reset_fitted_state(self) -> None:
        """Back to the unfitted state (identity scaling)."""

    # -- tunable decoding parameters (thresholds) ------------------------------------------------
    def target_in_label_units(self, target: torch.Tensor) -> torch.Tensor:
        """A stored target in the units :meth:`decode` predicts in (shown next to predictions); identity unless
        the converter rescaled the labels."""
        return target

    def get_decoder_params(self) -> dict:
        """JSON-able decoding parameters (e.g. thresholds); empty when the task has none."""
        return {}

    def set_decoder_params(self, params: dict) -> None:
        if params:
            raise TaskError(f"task '{self.name}' has no decoding parameters, got {sorted(params)}")

    def tune(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, metric: str = "accuracy",
             min_recall: Optional[float] = None, min_samples: int = 0, min_per_class: int = 0,
             alpha: Optional[float] = 0.05):
        """Tune the decoding parameters on stored outputs, using only the masked elements. With fewer than
        ``min_samples`` masked samples (or fewer than ``min_per_class`` of either class) the current ones stay; so
        they do when the gain is not significant at level ``alpha`` (None: no such test).

        Returns ``(params, report)``: the parameters for :meth:`set_decoder_params` and a JSON-able report per
        tuned quantity (``threshold``, ``value``, ``num_samples``, ``tuned``, ``reason`` and, where searched, the
        best interval ``lower``/``upper``, ``candidate``, ``best_value``, ``kept``, ``p_value``, ``b``, ``c``: see
        :class:`~dnn_cool_catalyst.tuning.thresholds.ThresholdResult`). Tasks without parameters return empty dicts."""
        return {}, {}

    # -- predictions in label space (runner.predict) ----------------------------------------------------
    def label_values(self, decoded: torch.Tensor) -> list:
        """Decoded predictions (what :meth:`decode` returns) as the labels a user wrote, one Python value per
        sample, of the kind :meth:`prediction_kind` names. Default: the decoded numbers themselves (regression values
        are already in label units)."""
        return decoded.tolist()

    def prediction_kind(self) -> Optional[str]:
        """The label kind (:data:`~dnn_cool_catalyst.tasks.labels.LABEL_KINDS`) of :meth:`label_values`, whose
        nullable pandas dtype ``runner.predict`` gives this task's column (``pd.NA`` where the task does not
        apply, so a gated task keeps its dtype); None: a column of objects (e.g. lists of labels)."""
        return None

    def probabilities(self, activation: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-sample probabilities ``(N,)`` worth reporting, keyed by a column suffix: ``""`` for a single one
        (a binary task's P(positive)), ``"[<label>]"`` per class. Default: none (regression)."""
        return {}

    def describe(self) -> dict:
        """JSON-able description, stored with runs to detect a run directory of a different flow."""
        return {"type": self.type_name, "out_features": self.out_features()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def without_inverse_activation(tasks: Dict[str, Task]) -> List[str]:
    """Names of ``tasks`` whose class defines no :meth:`Task.inverse_activation`: their averaged activations
    (fold ensembles, test-time augmentation) cannot be turned back into logits."""
    return [name for name, task in tasks.items() if type(task).inverse_activation is Task.inverse_activation]


def logit_of(probabilities: torch.Tensor) -> torch.Tensor:
    """Inverse of the sigmoid, in float64 so that ``sigmoid(logit_of(p))`` gives ``p`` back to float32 precision;
    0 and 1 are clipped to 1e-12 and 1 - 1e-12 (finite logits).

    >>> torch.sigmoid(logit_of(torch.tensor([0.25, 0.5, 0.75]))).float()
    tensor([0.2500, 0.5000, 0.7500])
    >>> logit_of(torch.tensor([0.0, 1.0])).float()
    tensor([-27.6310,  27.6310])
    """
    return torch.logit(probabilities.double(), eps=1e-12)


def log_of(probabilities: torch.Tensor) -> torch.Tensor:
    """Inverse of the softmax over the last dimension (up to a constant per row, which softmax ignores), in float64;
    a probability 0 becomes a very negative finite logit.

    >>> torch.softmax(log_of(torch.tensor([[0.5, 0.5, 0.0]])), dim=-1).float()
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    return torch.log(probabilities.double().clamp_min(1e-300))


def label_key(value) -> Optional[str]:
    """The string a label value is stored under in ``class_names`` (``1``, ``1.0`` and ``"1"`` -> ``"1"``);
    ``None`` for a value no label can be (a fraction, a list...)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def class_labels(task: Task) -> list:
    """A task's class names as the labels its column holds (its ``label_kind``, else guessed from the names:
    ``["1", "2"]`` -> ``[1, 2]``), class ids without names.

    >>> from dnn_cool_catalyst.tasks import ClassificationTask
    >>> class_labels(ClassificationTask("rate", 2, class_names=["1", "5"], label_kind="float"))
    [1.0, 5.0]
    """
    names = getattr(task, "class_names", None)
    if names is None:
        return list(range(task.out_features()))
    return typed_labels(names_kind(task), names)


def names_kind(task: Task) -> str:
    """The label kind of a task's class names: its ``label_kind`` when set, else guessed from the names."""
    return getattr(task, "label_kind", None) or kind_of_keys(task.class_names)


def resolve_class(task: Task, arg) -> int:
    """The class id of ``out.task == arg``: ``arg`` is a LABEL VALUE as written in the DataFrame (``1`` means the
    label 1, not class id 1). Only a task built without ``class_names`` takes class ids."""
    names = getattr(task, "class_names", None)
    if names is None:
        if isinstance(arg, np.integer):
            arg = int(arg)
        if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg < task.n_classes:
            raise TaskError(f"{task.type_name} task '{task.name}' has no class names, so a condition value must be a "
                            f"class id in [0, {task.n_classes}), got {arg!r}")
        return arg
    kind = names_kind(task)
    index = find_label(kind, names, arg)
    if index is None:
        shown = arg.item() if isinstance(arg, np.generic) else arg
        raise TaskError(f"{task.type_name} task '{task.name}' has no class named {shown!r}: a condition value is a "
                        f"label value as the column holds it, and its labels are {class_labels(task)}"
                        f"{mismatch_hint(kind, arg)}")
    return index


def sample_mask(mask: torch.Tensor) -> torch.Tensor:
    """Per-sample view of an element mask: a sample counts if any of its label elements is valid."""
    return mask if mask.dim() == 1 else mask.flatten(1).any(1)


def broadcast_to_elements(sample_bool: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample ``(N,)`` boolean against an element mask of shape ``(N, ...)``."""
    if like.dim() == 1:
        return sample_bool
    return sample_bool.view(sample_bool.shape[0], *([1] * (like.dim() - 1)))
