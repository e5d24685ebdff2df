"""The flow DSL's facade, :class:`TaskFlow`, with the names of :mod:`dnn_cool_catalyst.graph` users reach it by."""
from ..graph.conditions import Condition
from ..graph.graph import CompiledGraph, FlowGraph, FlowNode, TaskNode
from ..graph.module import FlowModule
from ..graph.tracing import FlowDefinitionError
from .flow import TaskFlow

__all__ = ["Condition", "TaskFlow", "CompiledGraph", "FlowGraph", "FlowNode", "TaskNode", "FlowModule",
           "FlowDefinitionError"]
