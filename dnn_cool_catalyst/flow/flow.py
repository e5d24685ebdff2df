"""``TaskFlow``: a traced flow and the objects built from it (module, loss, metrics, decoders, dataset)."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Optional, Union

import torch

from ..graph.batch import ground_truth_masks, output_logits
from ..graph.graph import CompiledGraph, FlowGraph
from ..graph.module import FlowModule, decoded_gating_masks
from ..graph.tracing import FlowDefinitionError, trace
from ..interpretation.explain import TreelibExplainer
from ..measures.evaluation import Evaluator
from ..measures.losses import FlowLoss, PerSampleLoss
from ..measures.metrics import FlowMetrics
from ..tasks.base import Task


class TaskFlow:
    """A flow of tasks with preconditions, traced once.

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst.tasks import BinaryTask, RegressionTask
        >>> def flow_fn(flow, x, out):
        ...     out += flow.person_present(x.features)
        ...     out += flow.face_x(x.features) | out.person_present
        ...     return out
        >>> flow = TaskFlow.from_function(flow_fn, [BinaryTask("person_present", 4), RegressionTask("face_x", 4)])
        >>> batch = {"targets": {"person_present": torch.tensor([1., 0.]), "face_x": torch.tensor([-2., 0.])},
        ...          "available": {"person_present": torch.tensor([True, True]),
        ...                        "face_x": torch.tensor([True, False])}}
        >>> loss = flow.get_loss()(flow.torch()({"features": torch.randn(2, 4)}), batch)
        >>> loss.shape
        torch.Size([])
    """

    def __init__(self, graph: FlowGraph, project=None):
        self.graph = CompiledGraph(graph)
        self.project = project

    @classmethod
    def from_function(cls, fn: Callable, tasks: Union[Iterable[Task], Mapping[str, Task]],
                      flows: Optional[Mapping[str, "TaskFlow"]] = None, name: Optional[str] = None) -> "TaskFlow":
        """Trace ``fn(flow, x, out)`` against the given tasks and already-built nested flows."""
        tasks = dict(tasks) if isinstance(tasks, Mapping) else {t.name: t for t in tasks}
        graphs = {k: f.graph.graph for k, f in (flows or {}).items()}
        return cls(trace(fn, name or fn.__name__, tasks, graphs))

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def tasks(self) -> Dict[str, Task]:
        return self.graph.tasks

    @property
    def task_paths(self) -> Dict[str, str]:
        """Task name → dotted path through nested flows."""
        return self.graph.paths

    def torch(self, members: bool = False) -> FlowModule:
        """A fresh nn.Module with one head per task; feed it the dict of features your backbone computes.
        ``members=True`` for a trunk whose features have a member axis ``(N, k, F)`` (see
        :mod:`dnn_cool_catalyst.graph.members`)."""
        return FlowModule(self.graph, members=members)

    def get_loss(self, weights=None):
        """The masked multi-task loss (an nn.Module); ``weights``: ``None`` (every task 1.0), a dict of fixed
        weights by task name or path, or ``"uncertainty"`` (see :class:`~dnn_cool_catalyst.measures.losses.FlowLoss`).

        ``loss(outputs, batch)`` is a scalar tensor: the weighted sum over tasks of each task's mean loss over the
        samples where it is labelled and its precondition holds (a task with no such sample adds nothing).

        Example (the batch layout every flow object reads: ``targets`` and ``available`` per task name, and the
        model's ``{"logits": {task: tensor}}``; here door_locked is only asked when the door is closed):
            >>> import torch
            >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
            >>> def doors(flow, x, out):
            ...     out += flow.door_open(x.features)
            ...     out += flow.door_locked(x.features) | (~out.door_open)
            ...     return out
            >>> flow = TaskFlow.from_function(doors, [BinaryTask("door_open", 3), BinaryTask("door_locked", 3)])
            >>> outputs = {"logits": {"door_open": torch.tensor([2.0, -1.0, -3.0, 1.0]),
            ...                       "door_locked": torch.tensor([0.5, 1.5, -2.0, 0.0])}}
            >>> batch = {"targets": {"door_open": torch.tensor([1., 0., 0., 0.]),
            ...                      "door_locked": torch.tensor([0., 1., 0., 0.])},
            ...          "available": {"door_open": torch.ones(4, dtype=torch.bool),
            ...                        "door_locked": torch.tensor([False, True, True, False])}}
            >>> loss = flow.get_loss()(outputs, batch)
            >>> loss.shape, round(float(loss), 4)
            (torch.Size([]), 0.6147)
        """
        return FlowLoss(self.graph, weights)

    def get_per_sample_loss(self):
        """``per_sample(outputs, batch)`` → ``{task: {"loss", "index"}, "overall": {"loss", "index"}}``: the loss of
        every sample where the task is valid (``index``: the batch's ``"index"`` entry when present, else the
        position in the batch) and ``overall``, the per-sample sum over tasks (see
        :class:`~dnn_cool_catalyst.measures.losses.PerSampleLoss`); what ``worst_examples`` ranks.

        Example (the batch layout every flow object reads: ``targets`` and ``available`` per task name, and the
        model's ``{"logits": {task: tensor}}``; here door_locked is only asked when the door is closed):
            >>> import torch
            >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
            >>> def doors(flow, x, out):
            ...     out += flow.door_open(x.features)
            ...     out += flow.door_locked(x.features) | (~out.door_open)
            ...     return out
            >>> flow = TaskFlow.from_function(doors, [BinaryTask("door_open", 3), BinaryTask("door_locked", 3)])
            >>> outputs = {"logits": {"door_open": torch.tensor([2.0, -1.0, -3.0, 1.0]),
            ...                       "door_locked": torch.tensor([0.5, 1.5, -2.0, 0.0])}}
            >>> batch = {"targets": {"door_open": torch.tensor([1., 0., 0., 0.]),
            ...                      "door_locked": torch.tensor([0., 1., 0., 0.])},
            ...          "available": {"door_open": torch.ones(4, dtype=torch.bool),
            ...                        "door_locked": torch.tensor([False, True, True, False])}}
            >>> per_sample = flow.get_per_sample_loss()(outputs, batch)
            >>> per_sample["door_locked"]["index"].tolist(), per_sample["overall"]["loss"].shape
            ([1, 2], torch.Size([4]))
        """
        return PerSampleLoss(self.graph)

    def get_metrics(self):
        """Accumulating metrics (:class:`~dnn_cool_catalyst.measures.metrics.FlowMetrics`): ``update(outputs,
        batch)`` per batch adds each task's sufficient statistics over its valid samples; ``compute()`` →
        ``{task: {metric: value}}`` over everything seen since ``reset()``.

        Example (the batch layout every flow object reads: ``targets`` and ``available`` per task name, and the
        model's ``{"logits": {task: tensor}}``; here door_locked is only asked when the door is closed):
            >>> import torch
            >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
            >>> def doors(flow, x, out):
            ...     out += flow.door_open(x.features)
            ...     out += flow.door_locked(x.features) | (~out.door_open)
            ...     return out
            >>> flow = TaskFlow.from_function(doors, [BinaryTask("door_open", 3), BinaryTask("door_locked", 3)])
            >>> outputs = {"logits": {"door_open": torch.tensor([2.0, -1.0, -3.0, 1.0]),
            ...                       "door_locked": torch.tensor([0.5, 1.5, -2.0, 0.0])}}
            >>> batch = {"targets": {"door_open": torch.tensor([1., 0., 0., 0.]),
            ...                      "door_locked": torch.tensor([0., 1., 0., 0.])},
            ...          "available": {"door_open": torch.ones(4, dtype=torch.bool),
            ...                        "door_locked": torch.tensor([False, True, True, False])}}
            >>> metrics = flow.get_metrics()
            >>> metrics.update(outputs, batch)
            >>> metrics.compute()["door_locked"]
            {'accuracy': 1.0, 'f1': 1.0, 'precision': 1.0, 'recall': 1.0}
        """
        return FlowMetrics(self.graph)

    def get_evaluator(self):
        """``evaluate(logits, targets, available, gating="gt"|"decoded")`` → per-task metrics DataFrame."""
        return Evaluator(self)

    def get_treelib_explainer(self):
        """``explainer(outputs, labels=None)`` → one ``treelib.Tree`` per input: the decoded predictions laid
        out along the preconditions they satisfied (see :mod:`dnn_cool_catalyst.interpretation.explain`).

        ``outputs`` is what the flow's module returns for a batch (``{"logits": {task name: tensor}}``, e.g.
        ``model(batch["inputs"])``); ``labels`` optionally names each sample in its tree's root (DataFrame row
        ids). No targets are needed: the trees follow the *decoded* predictions.

        Example (the batch layout every flow object reads: ``targets`` and ``available`` per task name, and the
        model's ``{"logits": {task: tensor}}``; here door_locked is only asked when the door is closed):
            >>> import torch
            >>> from dnn_cool_catalyst import BinaryTask, TaskFlow
            >>> def doors(flow, x, out):
            ...     out += flow.door_open(x.features)
            ...     out += flow.door_locked(x.features) | (~out.door_open)
            ...     return out
            >>> flow = TaskFlow.from_function(doors, [BinaryTask("door_open", 3), BinaryTask("door_locked", 3)])
            >>> outputs = {"logits": {"door_open": torch.tensor([2.0, -1.0, -3.0, 1.0]),
            ...                       "door_locked": torch.tensor([0.5, 1.5, -2.0, 0.0])}}
            >>> batch = {"targets": {"door_open": torch.tensor([1., 0., 0., 0.]),
            ...                      "door_locked": torch.tensor([0., 1., 0., 0.])},
            ...          "available": {"door_open": torch.ones(4, dtype=torch.bool),
            ...                        "door_locked": torch.tensor([False, True, True, False])}}
            >>> trees = flow.get_treelib_explainer()(outputs, labels=["a", "b", "c", "d"])
            >>> len(trees), type(trees[0]).__name__
            (4, 'Tree')
        """
        return TreelibExplainer(self.graph)

    def get_activation(self) -> Callable[[Mapping], Dict[str, torch.Tensor]]:
        """``activation(outputs)`` → per-task activations (probabilities, rescaled values...)."""
        graph = self.graph

        def activation(outputs):
            logits = output_logits(graph, outputs, _batch_size(outputs))
            return {name: graph.tasks[name].activation(value) for name, value in logits.items()}

        return activation

    def get_decoder(self) -> Callable[[Mapping], Dict[str, torch.Tensor]]:
        """``decode(outputs)`` → per-task decoded predictions (thresholded, argmax, rescaled)."""
        graph = self.graph

        def decode(outputs):
            logits = output_logits(graph, outputs, _batch_size(outputs))
            return {name: graph.tasks[name].decode(value) for name, value in logits.items()}

        return decode

    def get_masks(self, outputs=None, batch=None, gating: str = "gt") -> Dict[str, torch.Tensor]:
        """Masks per task: ``gating="gt"`` reads the batch's labels; ``"decoded"`` the model's predictions."""
        if gating == "gt":
            if batch is None:
                raise ValueError("ground-truth gating needs the batch (targets and availability)")
            return ground_truth_masks(self.graph, batch)
        if gating == "decoded":
            if outputs is None:
                raise ValueError("decoded gating needs the model outputs")
            return decoded_gating_masks(self.graph, output_logits(self.graph, outputs, _batch_size(outputs)))
        raise ValueError(f"gating must be 'gt' or 'decoded', got {gating!r}")

    def get_dataset(self):
        """The torch Dataset of the project this flow belongs to, with targets for this flow's tasks."""
        if self.project is None:
            raise FlowDefinitionError(f"flow '{self.name}' was not added to a Project, so it has no data; "
                                      f"build it with @project.add_flow")
        return self.project.get_dataset(self)

    def describe(self) -> dict:
        """JSON-able structure of the flow (task types and conditions), stored with runs."""
        return {"name": self.name, "tasks": [
            {"path": leaf.path, "input": leaf.input_key, **leaf.task.describe(),
             "condition": leaf.full_condition.render() if leaf.full_condition is not None else None}
            for leaf in self.graph.leaves]}

    def __repr__(self) -> str:
        return f"TaskFlow({self.name!r}, tasks={list(self.graph.paths.values())})"


def _batch_size(outputs) -> int:
    logits = outputs["logits"] if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Mapping) \
        else outputs
    return next(iter(logits.values())).shape[0]
