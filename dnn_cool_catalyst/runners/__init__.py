"""The Catalyst runner driven by a flow."""
from .runner import DnnCoolSupervisedRunner, RunnerError

__all__ = ["DnnCoolSupervisedRunner", "RunnerError"]
