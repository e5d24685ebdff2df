"""Flow DSL: tracing, the graph, the condition algebra and the nn.Module."""
from .conditions import Condition
from .flow import TaskFlow
from .graph import CompiledGraph, FlowGraph, FlowNode, TaskNode
from .module import FlowModule
from .tracing import FlowDefinitionError

__all__ = ["Condition", "TaskFlow", "CompiledGraph", "FlowGraph", "FlowNode", "TaskNode", "FlowModule",
           "FlowDefinitionError"]
