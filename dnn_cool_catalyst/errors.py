"""Every error the library raises on purpose, in one module without dependencies.

All of them except :class:`NonFiniteError` are ``ValueError`` s: catching ``ValueError`` catches every "you gave me
something I cannot use" error at once, and catching one class here catches only that kind. Each is also importable
from the package root and from the module that used to define it (``dnn_cool_catalyst.data.ConverterError`` and
``from dnn_cool_catalyst import ConverterError`` are the same class).

Example:
    >>> from dnn_cool_catalyst import RunnerError, TaskError
    >>> issubclass(RunnerError, ValueError) and issubclass(TaskError, ValueError)
    True
    >>> try:
    ...     raise RunnerError("unknown split 'tset'")
    ... except ValueError as e:
    ...     print(type(e).__name__, e)
    RunnerError unknown split 'tset'
"""


class ConverterError(ValueError):
    """Bad input data or configuration; the message names the column and says what was expected."""


class TaskError(ValueError):
    """A task was given something it cannot use (wrong logits shape, unknown class, bad condition)."""


class FlowDefinitionError(ValueError):
    """The flow function is malformed: unknown task, bad precondition, cycle, duplicate flow..."""


class RunnerError(ValueError):
    """The runner was misused (wrong order of steps, a run directory of another flow, an empty split...)."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or holds something other than tensors and plain values."""


class ArtifactError(ValueError):
    """A stored inference output is missing, incomplete, not ours or out of date; the message names the file."""


class FittedStateError(ValueError):
    """``fitted_targets.json`` is unreadable or does not fit the flow; the runner re-raises it as RunnerError."""


class ValidMetricError(ValueError):
    """``valid_metric`` names no loss, task or metric of the flow; the runner re-raises it as RunnerError."""


class ConfigError(ValueError):
    """A config is malformed: the message names the file(s) and the key path."""


class UnsafeFileError(ValueError):
    """A file written by another process is too large, nested too deep or expands too much to be read safely (a
    damaged or hostile file); the message names the file and the limit it broke."""


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf logits (or loss); the message names the task, loader, epoch and batch."""


__all__ = ["ArtifactError", "CheckpointError", "ConfigError", "ConverterError", "FittedStateError",
           "FlowDefinitionError", "NonFiniteError", "RunnerError", "TaskError", "UnsafeFileError",
           "ValidMetricError"]
