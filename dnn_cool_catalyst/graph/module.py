"""The flow as an nn.Module: the task heads, applied to the user's feature dict."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import nn

from ..tasks.base import TaskError
from .graph import CompiledGraph
from .members import MEMBER_LOGITS_KEY, average_members, check_member_logits, check_member_tasks


def decode_condition_sources(graph: CompiledGraph, logits: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Decoded predictions of the tasks that gate others (all decoded gating needs)."""
    return {name: graph.tasks[name].decode(logits[name]) for name in graph.condition_sources}


def decoded_gating_masks(graph: CompiledGraph, logits: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Per-sample masks where each task's condition holds on the decoded predictions of its parents."""
    first = next(iter(logits.values()))
    return graph.masks(decode_condition_sources(graph, logits), None, first.shape[0], first.device)


def head_key(task_name: str) -> str:
    """The key of a task's head in :class:`TaskHeads`: the task name itself, unless that name is an attribute of
    ``nn.ModuleDict`` (``type``, ``values``, ``training``, ``forward``, ``to``, ``cuda``...), which torch refuses
    as a submodule name; those get the prefix ``task:`` (never part of an identifier, so no two tasks share a
    key). Only such names are escaped, so the checkpoints of every other task keep their state-dict keys.

    >>> head_key("door_open"), head_key("type")
    ('door_open', 'task:type')
    """
    return f"task:{task_name}" if hasattr(_EMPTY_MODULE_DICT, task_name) else task_name


class TaskHeads(nn.ModuleDict):
    """The heads by task name: ``heads["type"]`` works for every task name (stored under :func:`head_key`)."""

    def __getitem__(self, task_name: str) -> nn.Module:
        return super().__getitem__(head_key(task_name))

    def __setitem__(self, task_name: str, module: nn.Module) -> None:
        super().__setitem__(head_key(task_name), module)

    def __delitem__(self, task_name: str) -> None:
        super().__delitem__(head_key(task_name))

    def __contains__(self, task_name) -> bool:
        return isinstance(task_name, str) and super().__contains__(head_key(task_name))


_EMPTY_MODULE_DICT = nn.ModuleDict()


class FlowModule(nn.Module):
    """Heads of every task in a flow. ``forward(features)`` returns ``{"logits": {task: tensor}}`` and, in eval
    mode (or with ``decoded_masks=True``), ``"masks"``: where each task is reached when gating on the model's
    own decoded predictions. Training needs no masks from the model: ground-truth gating happens in the loss.

    ``members=True``: the features have a member axis ``(N, k, F)`` (a TabM trunk); the heads give logits
    ``(N, k, ...)``, ``"logits"`` holds the members' averaged prediction and, in training mode,
    ``"member_logits"`` the members' own (see :mod:`dnn_cool_catalyst.graph.members`).

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst import TaskFlow
        >>> from dnn_cool_catalyst.tasks import BinaryTask
        >>> def gate(flow, x, out):
        ...     out += flow.door_open(x.features)
        ...     out += flow.door_locked(x.features) | ~out.door_open
        ...     return out
        >>> flow = TaskFlow.from_function(gate, [BinaryTask("door_open", 8), BinaryTask("door_locked", 8)])
        >>> out = flow.torch().eval()({"features": torch.randn(4, 8)})
        >>> sorted(out["logits"]), out["masks"]["door_locked"].shape
        (['door_locked', 'door_open'], torch.Size([4]))
    """

    def __init__(self, graph: CompiledGraph, members: bool = False):
        super().__init__()
        self.graph = graph
        self.members = members
        if members:
            check_member_tasks(graph.tasks)
        self.heads = TaskHeads({leaf.name: leaf.task.head() for leaf in graph.leaves})

    def forward(self, features: Mapping[str, torch.Tensor], decoded_masks: Optional[bool] = None) -> dict:
        logits, member_logits = {}, {}
        for leaf in self.graph.leaves:
            inputs = features.get(leaf.input_key) if isinstance(features, Mapping) else None
            if inputs is None:
                given = sorted(features) if isinstance(features, Mapping) else type(features).__name__
                raise TaskError(f"task '{leaf.path}' reads x.{leaf.input_key}, but the features given to the flow "
                                f"module have no '{leaf.input_key}' (got {given})")
            raw = self.heads[leaf.name](inputs)
            if self.members:
                member_logits[leaf.name] = check_member_logits(leaf.task, raw, raw.shape[0])
                logits[leaf.name] = average_members(leaf.task, member_logits[leaf.name])
            else:
                logits[leaf.name] = leaf.task.check_logits(raw, raw.shape[0])
        result = {"logits": logits}
        if self.members and self.training:
            result[MEMBER_LOGITS_KEY] = member_logits
        if decoded_masks if decoded_masks is not None else not self.training:
            result["masks"] = decoded_gating_masks(self.graph, logits)
        return result
