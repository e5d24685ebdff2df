"""The traced flow: an explicit, ordered graph of task nodes with their inputs and preconditions.

Every consumer (the nn.Module, losses, metrics, datasets, tuning, evaluation, explanations) walks this graph;
the user's flow function runs exactly once, when it is traced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Union

import torch

from ..tasks.base import Task, broadcast_to_elements, sample_mask
from .conditions import Condition, EvalContext, conjunction, ref_names


@dataclass
class TaskNode:
    """One task in a flow. ``condition`` is local to the flow that added it; ``full_condition`` also includes
    the conditions of every enclosing nested flow."""

    task: Task
    input_key: str
    path: str
    condition: Optional[Condition] = None
    full_condition: Optional[Condition] = None

    @property
    def name(self) -> str:
        return self.task.name


@dataclass
class FlowNode:
    """A nested flow, added to its parent under an optional condition that applies to all its tasks."""

    graph: "FlowGraph"
    path: str
    condition: Optional[Condition] = None

    @property
    def name(self) -> str:
        return self.graph.name


@dataclass
class FlowGraph:
    name: str
    children: List[Union[TaskNode, FlowNode]] = field(default_factory=list)

    def leaves(self, prefix: str = "", outer: Optional[Condition] = None) -> List[TaskNode]:
        """All tasks in execution order, with dotted paths and their full conditions."""
        result = []
        for child in self.children:
            path = f"{prefix}{child.name}"
            condition = conjunction(outer, child.condition)
            if isinstance(child, FlowNode):
                result.extend(child.graph.leaves(prefix=f"{path}.", outer=condition))
            else:
                result.append(TaskNode(child.task, child.input_key, path, child.condition, condition))
        return result


class CompiledGraph:
    """A flattened :class:`FlowGraph`, ready for tensors. Leaves are topologically ordered by construction:
    a condition may only read tasks added before it."""

    def __init__(self, graph: FlowGraph):
        self.graph = graph
        self.leaves: List[TaskNode] = graph.leaves()
        self.tasks: Dict[str, Task] = {leaf.name: leaf.task for leaf in self.leaves}
        self.paths: Dict[str, str] = {leaf.name: leaf.path for leaf in self.leaves}
        # Tasks whose value some condition reads: only these need decoding for decoded gating.
        self.condition_sources: Dict[str, None] = {}
        for leaf in self.leaves:
            self.condition_sources.update(ref_names(leaf.full_condition))

    @property
    def name(self) -> str:
        return self.graph.name

    def masks(self, values: Mapping[str, torch.Tensor], available: Optional[Mapping[str, torch.Tensor]],
              batch_size: int, device=None) -> Dict[str, torch.Tensor]:
        """Element masks of every task: ``available ∧ condition``.

        ``values`` are the tasks' values in target space (targets for ground-truth gating, decoded predictions
        for decoded gating). With ``available=None`` (pure decoded gating) a task's mask is where its condition
        holds; a condition on B also requires B's own mask, so gating propagates down chains.
        """
        sample_masks: Dict[str, torch.Tensor] = {}
        element_masks: Dict[str, torch.Tensor] = {}
        ctx = EvalContext(values, sample_masks)
        everyone = None
        for leaf in self.leaves:
            reach = ctx.holds(leaf.full_condition) if leaf.full_condition is not None else None
            if available is None:
                if reach is None:
                    if everyone is None:
                        everyone = torch.ones(batch_size, dtype=torch.bool, device=device)
                    reach = everyone
                element_masks[leaf.name] = sample_masks[leaf.name] = reach
                continue
            avail = available[leaf.name]
            mask = avail if reach is None else avail & broadcast_to_elements(reach, avail)
            element_masks[leaf.name] = mask
            if leaf.name in self.condition_sources:
                sample_masks[leaf.name] = sample_mask(mask)
        return element_masks
