"""Tracing a user's flow function once into a :class:`FlowGraph`.

The function is called with three stand-ins: ``flow`` (attribute access yields callables for tasks and
already-registered nested flows), ``x`` (attribute access names an input of the feature dict) and ``out``
(``out += call`` records a node, ``out.task`` references a task added earlier). Every mistake we can see in the
definition is raised here, at definition time, with the task and flow named.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional

from ..errors import FlowDefinitionError  # defined there with every library error; re-exported here
from ..tasks.base import Task
from .conditions import Condition, TaskRef, conjunction, ref_names
from .graph import FlowGraph, FlowNode, TaskNode


class InputRef:
    """``x.features``: the name of an entry of the feature dict the heads read."""

    def __init__(self, key: str):
        self.key = key

    def __repr__(self):
        return f"x.{self.key}"


class XStandIn:
    def __getattr__(self, key: str) -> InputRef:
        if key.startswith("__"):
            raise AttributeError(key)
        return InputRef(key)

    def __repr__(self):
        return "x"


class Call:
    """A task or nested flow applied to its input, possibly followed by ``| condition`` (chained: AND)."""

    def __init__(self, name: str, target, input_ref, condition: Optional[Condition] = None):
        self.name, self.target, self.input_ref, self.condition = name, target, input_ref, condition

    def __or__(self, condition) -> "Call":
        if isinstance(condition, Call):
            raise FlowDefinitionError(f"'{self.name}' | '{condition.name}': the right side of | must be a condition "
                                      f"on out (e.g. out.{condition.name}), not a task call")
        if not isinstance(condition, Condition):
            raise FlowDefinitionError(f"'{self.name}' | {condition!r}: expected a condition such as out.door_open, "
                                      f"~out.door_open or (out.shirt_type == 3)")
        return Call(self.name, self.target, self.input_ref, conjunction(self.condition, condition.checked()))

    def __bool__(self):
        raise FlowDefinitionError(f"'{self.name}': a traced call has no truth value; use out += ... | condition")


class FlowStandIn:
    def __init__(self, flow_name: str, tasks: Mapping[str, Task], flows: Mapping[str, FlowGraph]):
        self._flow_name, self._tasks, self._flows = flow_name, tasks, flows

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._tasks:
            task = self._tasks[name]

            def call_task(input_ref=None):
                if not isinstance(input_ref, InputRef):
                    also = (f"; '{name}' is also the name of a flow, but flow.{name} means the task: a flow named "
                            f"like a task cannot be nested, rename it (add_flow(name=...))"
                            if name in self._flows else "")
                    raise FlowDefinitionError(
                        f"in flow '{self._flow_name}': task '{name}' must be called with one input of x "
                        f"(e.g. flow.{name}(x.features)), got {type(input_ref).__name__}{also}")
                return Call(name, task, input_ref)

            return call_task
        if name in self._flows:
            graph = self._flows[name]

            def call_flow(x=None):
                if not isinstance(x, XStandIn):
                    raise FlowDefinitionError(
                        f"in flow '{self._flow_name}': nested flow '{name}' must be called with the whole x "
                        f"(flow.{name}(x)), got {type(x).__name__}")
                return Call(name, graph, x)

            return call_flow
        if name == self._flow_name:
            raise FlowDefinitionError(f"flow '{name}' calls itself: a flow cannot contain itself (cycle)")
        raise FlowDefinitionError(
            f"in flow '{self._flow_name}': unknown task or flow '{name}'. Known tasks: {sorted(self._tasks)}; "
            f"known flows: {sorted(self._flows)} (a nested flow must be added before the flow that uses it)")


class OutStandIn:
    def __init__(self, flow_name: str, tasks: Mapping[str, Task], flows: Mapping[str, FlowGraph]):
        self._flow_name, self._tasks, self._flows = flow_name, tasks, flows
        self._calls: List[Call] = []

    def __getattr__(self, name: str) -> TaskRef:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._tasks:
            # Before the flows: a flow may be named like one of its tasks (flow 'is_interesting' with task
            # 'is_interesting'); out.<name> then means the task, as flow.<name>(x.<input>) does.
            return TaskRef(self._tasks[name])
        if name in self._flows:
            raise FlowDefinitionError(f"in flow '{self._flow_name}': out.{name} is a nested flow and cannot be a "
                                      f"precondition; use one of its tasks' parent conditions instead")
        if name not in self._tasks:
            raise FlowDefinitionError(f"in flow '{self._flow_name}': out.{name} refers to an unknown task; known "
                                      f"tasks: {sorted(self._tasks)}")
        return TaskRef(self._tasks[name])

    def __iadd__(self, call) -> "OutStandIn":
        if not isinstance(call, Call):
            raise FlowDefinitionError(f"in flow '{self._flow_name}': out += expects flow.<task>(x.<input>) "
                                      f"[| condition], got {type(call).__name__}")
        self._calls.append(call)
        return self


def _task_names(target) -> List[str]:
    return [leaf.name for leaf in target.leaves()] if isinstance(target, FlowGraph) else [target.name]


def trace(fn: Callable, name: str, tasks: Mapping[str, Task], flows: Mapping[str, FlowGraph]) -> FlowGraph:
    """Run ``fn(flow, x, out)`` once and return its graph, or raise :class:`FlowDefinitionError`."""
    out = OutStandIn(name, tasks, flows)
    returned = fn(FlowStandIn(name, tasks, flows), XStandIn(), out)
    if returned is not None and returned is not out:
        raise FlowDefinitionError(f"flow '{name}' must return out (or nothing), got {type(returned).__name__}")
    if not out._calls:
        raise FlowDefinitionError(f"flow '{name}' adds no task: write out += flow.<task>(x.<input>)")

    # Which call adds each task, so we can tell "added later" from "never added" and catch duplicates.
    position: Dict[str, int] = {}
    for i, call in enumerate(out._calls):
        for task_name in _task_names(call.target):
            if task_name in position:
                raise FlowDefinitionError(f"in flow '{name}': task '{task_name}' is added twice")
            position[task_name] = i

    graph = FlowGraph(name)
    for i, call in enumerate(out._calls):
        own = set(_task_names(call.target))
        for ref in ref_names(call.condition):
            if ref in own:
                raise FlowDefinitionError(f"in flow '{name}': '{call.name}' is conditioned on its own task "
                                          f"'{ref}' (cycle)")
            if ref not in position:
                raise FlowDefinitionError(f"in flow '{name}': '{call.name}' has a precondition on task '{ref}', "
                                          f"which this flow never adds; add it with out += flow.{ref}(...) first")
            if position[ref] > i:
                raise FlowDefinitionError(f"in flow '{name}': '{call.name}' has a precondition on task '{ref}', "
                                          f"which is added later; add '{ref}' before '{call.name}'")
        if isinstance(call.target, FlowGraph):
            graph.children.append(FlowNode(call.target, call.name, call.condition))
        else:
            graph.children.append(TaskNode(call.target, call.input_ref.key, call.name, call.condition))
    return graph
