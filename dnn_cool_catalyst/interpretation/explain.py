"""Explanation trees: what the model decided for one input, laid out along the flow's preconditions.

The explainer walks the traced graph (the user's flow function is never re-run) and gates on the model's own
*decoded* predictions: a task appears only under the parent whose condition its prediction satisfied, so a
predicted "door open" shows ``door_locked`` nowhere and a predicted "door closed" shows it under ``door_open``.
A node hangs under the latest-added task its condition reads (for chained conditions ``A | c1 | c2`` that is the
later of the two), or under its enclosing flow when it has no condition.

Each node shows the decoded value, the activation and the logit. How a value is shown depends only on shapes,
so custom tasks work unchanged (define ``explain_value(logits, activation, decoded)`` on a task to override):

- one logit per sample (binary, regression): ``name = value (activation a, logit l)``;
- several logits and one decoded value (a choice among classes): the top-k classes with names and probabilities;
- one decoded value per logit (per-class decisions, multilabel): every class with its decision.

Example:
    >>> import torch
    >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
    >>> def gate(flow, x, out):
    ...     out += flow.door_open(x.features)
    ...     out += flow.door_locked(x.features) | ~out.door_open
    ...     return out
    >>> flow = TaskFlow.from_function(gate, [BinaryTask("door_open"), BinaryTask("door_locked")])
    >>> trees = flow.get_treelib_explainer()({"door_open": torch.tensor([-2.0]), "door_locked": torch.tensor([1.0])})
    >>> print(render_tree(trees[0]), end="")
    gate
    └── door_open = 0 (activation 0.119 < threshold 0.500, logit -2.000)
        └── door_locked = 1 (activation 0.731 >= threshold 0.500, logit 1.000) | given ~door_open

With ``targets`` (the labels, e.g. a batch's ``targets`` and ``available``) each node also shows the ground truth
next to the prediction, so a wrong decision can be read off the tree:

    >>> targets = {"door_open": torch.tensor([1.0]), "door_locked": torch.tensor([0.0])}
    >>> available = {"door_open": torch.tensor([True]), "door_locked": torch.tensor([False])}
    >>> tree = flow.get_treelib_explainer()({"door_open": torch.tensor([-2.0]), "door_locked": torch.tensor([3.0])},
    ...                                     targets=(targets, available))[0]
    >>> for line in render_tree(tree).splitlines()[1:]:
    ...     print(line.split(" | ")[0].strip())
    └── door_open = 0 (activation 0.119 < threshold 0.500, logit -2.000) · target 1
    └── door_locked = 1 (activation 0.953 >= threshold 0.500, logit 3.000) · target not labelled
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import torch
from treelib import Tree

from ..graph.batch import output_logits
from ..tasks.base import class_labels
from ..graph.conditions import Condition, EvalContext, conjunction, ref_names
from ..graph.graph import CompiledGraph, FlowNode
from .publishers import format_number


def render_tree(tree: Tree) -> str:
    """The tree as text, children in flow order (treelib sorts them by tag unless told not to)."""
    return tree.show(stdout=False, sorting=False)


def _names(task, n: int) -> List[str]:
    names = getattr(task, "class_names", None)
    # Labels as the DataFrame column holds them: the integer label 2 prints as 2, not '2'.
    return class_labels(task) if names is not None and len(names) == n else [str(i) for i in range(n)]


def _threshold(task, position: Optional[int] = None) -> Optional[float]:
    """The decision threshold the task's decoder applies (to class ``position`` for per-class thresholds)."""
    params = task.get_decoder_params() if hasattr(task, "get_decoder_params") else {}
    if position is None and isinstance(params.get("threshold"), (int, float)):
        return float(params["threshold"])
    per_class = params.get("thresholds")
    if position is not None and isinstance(per_class, (list, tuple)) and position < len(per_class):
        return float(per_class[position])
    return None


def _versus(activation: float, threshold: Optional[float]) -> str:
    """``activation 0.593 < threshold 0.813``: why a thresholded decision came out as it did."""
    if threshold is None:
        return f"activation {activation:.3f}"
    return f"activation {activation:.3f} {'>=' if activation >= threshold else '<'} threshold {threshold:.3f}"


def _scalar_label(task, decoded) -> str:
    labels = getattr(task, "labels", None)  # a binary task with labels other than 0/1 shows the label
    return repr(labels[int(float(decoded) > 0.5)]) if labels and list(labels) != [0, 1] else format_number(decoded)


def describe_value(task, logits: torch.Tensor, activation: torch.Tensor, decoded: torch.Tensor) -> str:
    """One sample's prediction as text (see the module docstring for the shape rules); thresholded decisions
    show the threshold used (``0 (activation 0.593 < threshold 0.813, logit 0.377)``)."""
    custom = getattr(task, "explain_value", None)
    if custom is not None:
        return custom(logits, activation, decoded)
    if logits.dim() == 0:
        return describe_scalar(task, float(logits), float(activation), float(decoded), _threshold(task))
    if logits.dim() == 1 and decoded.dim() == 0:
        top = torch.argsort(activation, descending=True, stable=True)[:shown_classes(task, logits.shape[0])]
        return describe_class(_names(task, logits.shape[0]), logits.tolist(), activation.tolist(), int(decoded),
                              top.tolist())
    if logits.dim() == 1 and decoded.shape == logits.shape:
        names = _names(task, logits.shape[0])
        chosen = [names[j] for j in range(len(names)) if float(decoded[j]) > 0.5]
        detail = "; ".join(f"{names[j]}: {format_number(decoded[j])}, "
                           f"{_versus(float(activation[j]), _threshold(task, j))}, logit {float(logits[j]):.3f}"
                           for j in range(len(names)))
        return f"{{{', '.join(chosen)}}} ({detail})"
    values = decoded.flatten().tolist()
    shown = ", ".join(format_number(v) for v in values[:16]) + (", ..." if len(values) > 16 else "")
    return f"[{shown}]"


def shown_classes(task, n_classes: int) -> int:
    """How many classes a one-class prediction lists: the task's ``top_k``, and at least two, so the runner-up
    is visible even for top-1 tasks."""
    k = max(1, min(int(getattr(task, "top_k", 1) or 1), n_classes))
    return max(k, min(2, n_classes))


def describe_class(names: Sequence[str], logits: Sequence[float], activation: Sequence[float], decoded: int,
                   top: Sequence[int]) -> str:
    """:func:`describe_value` of a one-class prediction from plain numbers: ``names`` of the classes, the
    sample's ``logits`` and ``activation`` per class, the ``decoded`` class and the ``top`` classes to list."""
    ranked = ", ".join(f"{names[j]!r} {activation[j]:.3f} (logit {logits[j]:.3f})" for j in top)
    return f"{names[decoded]!r} (top-{len(top)}: {ranked})"


def describe_scalar(task, logit: float, activation: float, decoded: float, threshold: Optional[float]) -> str:
    """:func:`describe_value` of a task with one logit per sample, from plain numbers (``threshold``: the task's
    decision threshold, None if it has none), for callers that describe many samples at once."""
    return f"{_scalar_label(task, decoded)} ({_versus(activation, threshold)}, logit {logit:.3f})"


def describe_scalar_target(task, value: float) -> str:
    """:func:`describe_target` of one labelled value, already in label units: a class name or the value."""
    names = getattr(task, "class_names", None)
    if names is not None and len(names) > 1 and task.out_features() == len(names):  # a class id
        return repr(_names(task, len(names))[int(value)])
    return _scalar_label(task, value)


def describe_target(task, target: torch.Tensor, available: torch.Tensor) -> str:
    """One sample's label as text, shown like a decoded prediction (label names, label units); ``not labelled``
    where nothing is available (per class for multilabel tasks: unlabelled classes are marked ``?``).

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst.tasks.regression import BoundedRegressionTask
        >>> describe_target(BoundedRegressionTask("face_x1", lo=0, hi=64), torch.tensor(0.25), torch.tensor(True))
        '16'
    """
    custom = getattr(task, "explain_target", None)
    if custom is not None:
        return custom(target, available)
    available = torch.as_tensor(available).bool()
    if not bool(available.any()):
        return "not labelled"
    value = task.target_in_label_units(target) if hasattr(task, "target_in_label_units") else target
    if value.dim() == 0:
        return describe_scalar_target(task, float(value))
    if value.dim() == 1 and available.shape == value.shape:  # per-class labels
        names = _names(task, value.shape[0])
        chosen = [names[j] for j in range(len(names)) if bool(available[j]) and float(value[j]) > 0.5]
        unknown = [names[j] for j in range(len(names)) if not bool(available[j])]
        return f"{{{', '.join(chosen)}}}" + (f" (? {', '.join(unknown)})" if unknown else "")
    values = value.flatten().tolist()
    return "[" + ", ".join(format_number(v) for v in values[:16]) + (", ..." if len(values) > 16 else "") + "]"


def _given(condition: Optional[Condition]) -> str:
    if condition is None:
        return ""
    text = condition.render()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return f" | given {text}"


class TreelibExplainer:
    """``explainer(outputs, labels=None)`` → one ``treelib.Tree`` per input of the batch.

    ``outputs`` is the model output (the flow module's ``{"logits": ...}`` or a dict of logits per task);
    ``labels`` optionally names each input in its root's tag (e.g. DataFrame row ids); ``targets``, optionally
    ``(targets, available)`` dicts per task as a batch holds them, adds each task's ground truth to its node."""

    def __init__(self, graph: CompiledGraph):
        self.graph = graph
        self._order = {leaf.name: i for i, leaf in enumerate(graph.leaves)}

    @torch.no_grad()
    def __call__(self, outputs, labels: Optional[Sequence] = None, targets=None) -> List[Tree]:
        graph = self.graph
        first = outputs["logits"] if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Mapping) \
            else outputs
        n = next(iter(first.values())).shape[0]
        if labels is not None and len(labels) != n:
            raise ValueError(f"flow '{graph.name}': {len(labels)} labels for a batch of {n} inputs")
        logits = {k: v.detach().float().cpu() for k, v in output_logits(graph, outputs, n).items()}
        decoded = {name: graph.tasks[name].decode(value) for name, value in logits.items()}
        activations = {name: graph.tasks[name].activation(value) for name, value in logits.items()}
        # With available=None the masks are exactly the per-sample "reached" masks conditions read.
        reached = graph.masks(decoded, None, n)
        ctx = EvalContext(decoded, reached)
        holds: Dict[str, List[bool]] = {}
        self._collect_holds(graph.graph.children, "", None, ctx, holds)

        trees = []
        for i in range(n):
            tree = Tree()
            root = graph.name if labels is None else f"{graph.name} [{labels[i]}]"
            tree.create_node(root, "")
            self._grow(tree, graph.graph.children, "", "", i, holds, logits, activations, decoded, targets)
            trees.append(tree)
        return trees

    def _collect_holds(self, children, prefix, outer, ctx, holds) -> None:
        """Per node path: for which samples its full condition holds, computed once for the whole batch."""
        for child in children:
            path = f"{prefix}{child.name}"
            full = conjunction(outer, child.condition)
            holds[path] = ctx.holds(full).tolist() if full is not None else None
            if isinstance(child, FlowNode):
                self._collect_holds(child.graph.children, f"{path}.", full, ctx, holds)

    def _anchor(self, tree: Tree, condition: Optional[Condition], fallback: str) -> str:
        """The node to hang a child under: the latest-added task its condition reads that is in the tree."""
        paths = self.graph.paths
        present = [name for name in ref_names(condition) if tree.contains(paths[name])]
        if not present:
            return fallback
        return paths[max(present, key=self._order.__getitem__)]

    def _grow(self, tree, children, prefix, parent, i, holds, logits, activations, decoded, targets=None) -> None:
        for child in children:
            path = f"{prefix}{child.name}"
            if holds[path] is not None and not holds[path][i]:
                continue
            anchor = self._anchor(tree, child.condition, parent)
            if isinstance(child, FlowNode):
                tree.create_node(f"{child.name} [flow]{_given(child.condition)}", path, parent=anchor)
                self._grow(tree, child.graph.children, f"{path}.", path, i, holds, logits, activations, decoded,
                           targets)
                continue
            name = child.name
            value = describe_value(child.task, logits[name][i], activations[name][i], decoded[name][i])
            if targets is not None and name in targets[0]:
                target = describe_target(child.task, targets[0][name][i].cpu(), targets[1][name][i].cpu())
                value += f" · target {target}"
            tree.create_node(f"{name} = {value}{_given(child.condition)}", path, parent=anchor)
