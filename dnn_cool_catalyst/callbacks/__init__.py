"""Catalyst callbacks, one lifecycle concern each."""
from .criterion import FlowCriterionCallback
from .metrics import FlowMetricsCallback

__all__ = ["FlowCriterionCallback", "FlowMetricsCallback"]
