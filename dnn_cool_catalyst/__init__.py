"""dnn_cool_catalyst: multi-task learning with conditional objectives and missing labels."""
from .data import ConverterError, Converters
from .flow import FlowDefinitionError, TaskFlow
from .project import Project
from .tasks import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask, RegressionTask, Task,
                    TaskError, TokenClassificationTask)

__version__ = "0.1.0"

__all__ = ["Project", "Converters", "ConverterError", "TaskFlow", "FlowDefinitionError", "Task", "TaskError", "BinaryTask", "ClassificationTask",
           "MultilabelTask", "BoundedRegressionTask", "RegressionTask", "TokenClassificationTask"]
