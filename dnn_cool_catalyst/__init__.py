"""dnn_cool_catalyst: multi-task learning with conditional objectives and missing labels."""
from .data import Converters
from .errors import (ArtifactError, CheckpointError, ConfigError, ConverterError, FittedStateError,
                     FlowDefinitionError, NonFiniteError, RunnerError, TaskError, UnsafeFileError,
                     ValidMetricError)
from .flow import TaskFlow
from .project import Project
from .tasks import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask, RegressionTask, Task,
                    TokenClassificationTask)

__version__ = "0.1.0"

# Under Catalyst's `catalyst-run` (which imports this package when it resolves the config's first target of
# ours): refuse arguments it would ignore and check the config, as dnn-cool-run does. Elsewhere: nothing.
from .config.catalyst_run import guard_catalyst_run  # noqa: E402

guard_catalyst_run()

__all__ = ["Project", "Converters", "ConverterError", "TaskFlow", "FlowDefinitionError", "Task", "TaskError", "BinaryTask", "ClassificationTask",
           "MultilabelTask", "BoundedRegressionTask", "RegressionTask", "TokenClassificationTask",
           # every library error (dnn_cool_catalyst.errors)
           "RunnerError", "CheckpointError", "ArtifactError", "FittedStateError", "ValidMetricError", "ConfigError",
           "NonFiniteError", "UnsafeFileError"]
