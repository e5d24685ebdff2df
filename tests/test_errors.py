"""One errors module: every library error importable from the package root and from its old module, the same class."""
import importlib
import subprocess
import sys

import pytest

import dnn_cool_catalyst
from dnn_cool_catalyst import errors

OLD_PATHS = {
    "ConverterError": ["dnn_cool_catalyst.data", "dnn_cool_catalyst.data.value_converter"],
    "TaskError": ["dnn_cool_catalyst.tasks", "dnn_cool_catalyst.tasks.base"],
    "FlowDefinitionError": ["dnn_cool_catalyst.flow", "dnn_cool_catalyst.graph.tracing"],
    "RunnerError": ["dnn_cool_catalyst.runners", "dnn_cool_catalyst.runners.errors",
                    "dnn_cool_catalyst.runners.runner"],
    "CheckpointError": ["dnn_cool_catalyst.callbacks.checkpoint"],
    "ArtifactError": ["dnn_cool_catalyst.run.artifacts"],
    "FittedStateError": ["dnn_cool_catalyst.run.fitted"],
    "ValidMetricError": ["dnn_cool_catalyst.callbacks.selection"],
    "ConfigError": ["dnn_cool_catalyst.config", "dnn_cool_catalyst.config.validate"],
    "NonFiniteError": ["dnn_cool_catalyst.callbacks", "dnn_cool_catalyst.callbacks.nan_guard"],
    "UnsafeFileError": ["dnn_cool_catalyst.safe_read"],
}


def test_every_error_is_exported_from_the_root_and_defined_once():
    assert sorted(OLD_PATHS) == sorted(errors.__all__)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert getattr(dnn_cool_catalyst, name) is cls, name
        assert name in dnn_cool_catalyst.__all__
        assert cls.__module__ == "dnn_cool_catalyst.errors"
        for module in OLD_PATHS[name]:
            assert getattr(importlib.import_module(module), name) is cls, f"{module}.{name}"


def test_value_errors_except_the_non_finite_one():
    for name in errors.__all__:
        expected = FloatingPointError if name == "NonFiniteError" else ValueError
        assert issubclass(getattr(errors, name), expected), name


def test_raised_errors_are_caught_by_the_root_class():
    from dnn_cool_catalyst import RunnerError
    from dnn_cool_catalyst.project import check_runner_name

    with pytest.raises(RunnerError, match="runner_name must be a single directory"):
        check_runner_name("../evil")


@pytest.mark.parametrize("module", ["dnn_cool_catalyst.interpretation.examples", "dnn_cool_catalyst.runners.runner"])
def test_runner_modules_import_alone_without_a_cycle(module):
    # a fresh interpreter importing the module first: an import cycle would fail with a partially initialised module
    code = f"import {module}, dnn_cool_catalyst.errors as e; assert {module}.RunnerError is e.RunnerError"
    subprocess.run([sys.executable, "-c", code], check=True)
