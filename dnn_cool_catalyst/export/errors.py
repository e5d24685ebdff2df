"""The export's error type: a :class:`~dnn_cool_catalyst.errors.RunnerError` (``runner.export`` is a runner step),
in a module of its own so that every export module can raise it."""
from ..errors import RunnerError


class ExportError(RunnerError):
    """An export was asked for something it cannot do (unknown format, no checkpoint, an untraceable model, a
    path it must not write)."""
