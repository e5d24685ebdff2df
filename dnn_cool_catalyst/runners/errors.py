"""The runner's error type (defined with every library error in :mod:`dnn_cool_catalyst.errors`); this old import
path keeps working."""
from ..errors import RunnerError

__all__ = ["RunnerError"]
