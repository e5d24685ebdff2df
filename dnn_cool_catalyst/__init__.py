"""dnn_cool_catalyst: multi-task learning with conditional objectives and missing labels."""
from .flow import FlowDefinitionError, TaskFlow
from .tasks import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask, RegressionTask, Task,
                    TaskError, TokenClassificationTask)

__version__ = "0.1.0"

__all__ = ["TaskFlow", "FlowDefinitionError", "Task", "TaskError", "BinaryTask", "ClassificationTask",
           "MultilabelTask", "BoundedRegressionTask", "RegressionTask", "TokenClassificationTask"]
