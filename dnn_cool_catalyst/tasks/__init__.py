"""Task types. Subclass :class:`Task` for your own; the core never special-cases a type."""
from .base import Task, TaskError
from .binary import BinaryTask
from .classification import ClassificationTask
from .multilabel import MultilabelTask
from .regression import BoundedRegressionTask, RegressionTask
from .tokens import TokenClassificationTask

__all__ = ["Task", "TaskError", "BinaryTask", "ClassificationTask", "MultilabelTask", "BoundedRegressionTask",
           "RegressionTask", "TokenClassificationTask"]
