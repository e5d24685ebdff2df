"""Catalyst callbacks, one lifecycle concern each."""
from .criterion import FlowCriterionCallback
from ..interpretation.callback import InterpretationCallback
from .metrics import FlowMetricsCallback
from .nan_guard import NanGuardCallback, NonFiniteError

__all__ = ["FlowCriterionCallback", "InterpretationCallback", "FlowMetricsCallback", "NanGuardCallback",
           "NonFiniteError"]
