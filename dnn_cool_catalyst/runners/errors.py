"""The runner's error type, in a module of its own so that helpers of the runner can raise it without an import
cycle (``runner.py`` imports them)."""


class RunnerError(ValueError):
    """The runner was misused (wrong order of steps, a run directory of another flow, an empty split...)."""
