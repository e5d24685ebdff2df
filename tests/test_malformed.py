"""The malformed-input catalogue (issue #7).

Each case feeds the library one malformed input and checks the error type and that the message names the
offending column / task / file *and* says what was expected. Related checks elsewhere: tests/test_converters.py
(per-converter edge cases), tests/test_flow_dsl.py (every flow-definition error form), tests/test_runner.py
(misuse), tests/test_recovery.py (truncated and unsafe artifacts).
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import FlowDefinitionError, Project, TaskError
from dnn_cool_catalyst.callbacks.checkpoint import CheckpointError
from dnn_cool_catalyst.callbacks.nan_guard import NonFiniteError
from dnn_cool_catalyst.data import ConverterError, Converters
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import numbers_frame, numbers_model

from malformed_kit import (SAMPLES, check_refused, numbers_project, numbers_runner, raises,  # noqa: F401
                           run, trained_dir)  # fixtures

NAN = float("nan")


# -- builders ------------------------------------------------------------------------------------------------------

def people(n=12):
    """Every column type: numeric input, binary, category, multilabel, bounded and plain regression."""
    x = np.arange(n, dtype=float)
    return pd.DataFrame({
        "age": x,
        "is_adult": (x > 5).astype(float),
        "shirt": np.where(x % 3 == 0, "red", "blue"),
        "tags": np.where(x % 2 == 0, "glasses,beard", "beard"),
        "size": x / n,
        "temperature": x - 20.0,
    })


def build(df, inputs="age", outputs=("is_adult",), tmp_path=None, **types):
    converters = Converters()
    converters.type.type_mapping.update(types)
    return Project(df, inputs, list(outputs), converters=converters, project_dir=tmp_path)


# -- DataFrame problems --------------------------------------------------------------------------------------------

def missing_input_column(tmp_path):
    build(people(), inputs="agee", tmp_path=tmp_path)


def unknown_output_column(tmp_path):
    build(people(), outputs=["is_adult", "is_child"], tmp_path=tmp_path)


def duplicate_columns(tmp_path):
    df = people()
    df.columns = ["age", "is_adult", "shirt", "tags", "is_adult", "temperature"]
    build(df, tmp_path=tmp_path)


def column_both_input_and_output(tmp_path):
    build(people(), inputs=["age"], outputs=["age", "is_adult"], tmp_path=tmp_path)


def strings_in_binary_column(tmp_path):
    build(people().assign(is_adult=["yes", "no", "maybe"] * 4), tmp_path=tmp_path, is_adult="binary")


def strings_in_continuous_column(tmp_path):
    build(people().assign(size=["small", 0.5] * 6), outputs=["size"], tmp_path=tmp_path, size="continuous")


def strings_in_numeric_input(tmp_path):
    build(people().assign(age=["young", "old"] * 6), tmp_path=tmp_path, age="numeric")


def non_numeric_regression_cells(tmp_path):
    df = people().astype({"temperature": object})
    df.loc[4, "temperature"] = "3 celsius"
    build(df, outputs=["temperature"], tmp_path=tmp_path, temperature="regression")


def all_nan_output_column(tmp_path):
    build(people().assign(is_adult=NAN), tmp_path=tmp_path)


def empty_dataframe(tmp_path):
    build(people().iloc[:0], tmp_path=tmp_path)


def nan_in_numeric_input(tmp_path):
    build(people().assign(age=[0.0, 1.0, 2.0, NAN] + [4.0] * 8), tmp_path=tmp_path)


def inf_in_numeric_input(tmp_path):
    build(people().assign(age=[0.0, np.inf] + [4.0] * 10), tmp_path=tmp_path)


def input_overflowing_tabular_standardisation(tmp_path):
    from dnn_cool_catalyst.tabular import tabular_model

    project = build(people().assign(age=[1e38] * 6 + [-1e38] * 6), tmp_path=tmp_path)  # finite in float32

    @project.add_flow
    def adults(flow, x, out):
        out += flow.is_adult(x.features)
        return out

    tabular_model(project)


def inf_in_regression_label(tmp_path):
    build(people().assign(temperature=[1.0, -np.inf] + [4.0] * 10), outputs=["temperature"], tmp_path=tmp_path,
          temperature="regression")


def ragged_array_input(tmp_path):
    df = people().assign(embedding=[[0.0, 1.0]] * 11 + [[0.0, 1.0, 2.0]])
    build(df, inputs="embedding", tmp_path=tmp_path)


def unseen_class_at_inference(tmp_path):
    build(people(), outputs=["is_adult", "shirt"], tmp_path=tmp_path, shirt="category")  # fits and saves the classes
    later = people().assign(shirt=["red", "green"] * 6)
    build(later, outputs=["is_adult", "shirt"], tmp_path=tmp_path, shirt="category")


def multilabel_unknown_label(tmp_path):
    build(people(), outputs=["tags"], tmp_path=tmp_path)
    build(people().assign(tags=["beard,hat"] * 12), outputs=["tags"], tmp_path=tmp_path)


def bounded_regression_outside_bounds(tmp_path):
    build(people(), outputs=["size"], tmp_path=tmp_path, size="continuous")  # bounds fitted: [0, 11/12]
    build(people().assign(size=[0.5] * 11 + [1.5]), outputs=["size"], tmp_path=tmp_path)


def corrupted_converter_state(tmp_path):
    build(people(), tmp_path=tmp_path)
    (tmp_path / "converters.json").write_text('{"version": 1, "columns": {"is_adult": ')
    build(people(), tmp_path=tmp_path)


# -- flow problems -------------------------------------------------------------------------------------------------

def flow_project(tmp_path):
    return build(people(), outputs=["is_adult", "shirt", "temperature"], tmp_path=tmp_path,
                 temperature="regression")


def unknown_task(tmp_path):
    @flow_project(tmp_path).add_flow
    def person(flow, x, out):
        out += flow.is_adlt(x.age)


def precondition_on_a_task_never_added(tmp_path):
    @flow_project(tmp_path).add_flow
    def person(flow, x, out):
        out += flow.shirt(x.age) | out.is_adult


def task_conditioned_on_itself(tmp_path):
    @flow_project(tmp_path).add_flow
    def person(flow, x, out):
        out += flow.is_adult(x.age) | out.is_adult


def flow_containing_itself(tmp_path):
    @flow_project(tmp_path).add_flow
    def person(flow, x, out):
        out += flow.is_adult(x.age)
        out += flow.person(x)


def condition_on_a_regression_task(tmp_path):
    @flow_project(tmp_path).add_flow
    def person(flow, x, out):
        out += flow.temperature(x.age)
        out += flow.is_adult(x.age) | out.temperature


def flow_registered_twice(tmp_path):
    project = flow_project(tmp_path)

    def person(flow, x, out):
        out += flow.is_adult(x.age)

    project.add_flow(person)
    project.add_flow(person)


def nested_flow_called_with_a_tensor(tmp_path):
    project = flow_project(tmp_path)

    @project.add_flow
    def clothes(flow, x, out):
        out += flow.shirt(x.age)

    @project.add_flow
    def person(flow, x, out):
        out += flow.is_adult(x.age)
        out += flow.clothes(torch.zeros(3)) | out.is_adult


# -- model problems ------------------------------------------------------------------------------------------------

def model_output_missing_a_task(tmp_path):
    _, flow = numbers_project(tmp_path, samples=20)
    outputs = {name: torch.zeros(4) for name in flow.tasks if name != "multiple_three"}
    flow.get_decoder()(outputs)


def logits_of_the_wrong_shape(tmp_path):
    _, flow = numbers_project(tmp_path, samples=20)
    outputs = {name: torch.zeros(4) for name in flow.tasks}
    outputs["is_even"] = torch.zeros(4, 3)  # a binary task has one logit per sample
    flow.get_activation()(outputs)


def features_missing_an_input_key(tmp_path):
    _, flow = numbers_project(tmp_path, samples=20)
    flow.torch()({"feature": torch.zeros(4, 8)})


class PoisonedModel(torch.nn.Module):
    """Emits NaN logits for ``multiple_three`` on one input value."""

    def __init__(self, inner, value):
        super().__init__()
        self.inner, self.value = inner, value

    def forward(self, inputs):
        out = self.inner(inputs)
        logits = out["logits"]["multiple_three"]
        poisoned = (inputs["number"] == self.value)[:, None].expand_as(logits.reshape(len(logits), -1))
        out["logits"]["multiple_three"] = torch.where(poisoned.reshape(logits.shape), float("nan"), logits)
        return out


def nan_logits_during_training(tmp_path):
    runner = numbers_runner(tmp_path)
    position = runner.splits["train"][3]
    value = float(runner.dataset.data.inputs["number"][position])
    runner.model = PoisonedModel(runner.model, value)
    try:
        runner.train(num_epochs=2)
    finally:
        # Stopped at the end of the first training loader: no checkpoint of NaN weights exists.
        assert not any(Path(runner.checkpoint_dir).glob("*.pth"))


# -- files ---------------------------------------------------------------------------------------------------------

def _images(tmp_path, n=4):
    from PIL import Image

    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (4, 4), color=(i * 40, 0, 0)).save(path)
        paths.append(str(path))
    return pd.DataFrame({"img": paths, "is_dark": [1.0, 1.0, 0.0, 0.0]})


def missing_image_file(tmp_path):
    df = _images(tmp_path)
    os.remove(df.img[2])
    build(df, inputs="img", outputs=["is_dark"], tmp_path=tmp_path)


def unreadable_image_file(tmp_path):
    df = _images(tmp_path)
    Path(df.img[1]).write_bytes(b"\x89PNG but not really")
    project = build(df, inputs="img", outputs=["is_dark"], tmp_path=tmp_path)

    @project.add_flow
    def dark(flow, x, out):
        out += flow.is_dark(x.img)

    project.get_dataset()[1]  # images load lazily; the bad one fails when read, naming its path


def corrupted_tuned_parameters(run):
    Path(run.run_dir, "tuned.json").write_text('{"params": {"is_interesting": {"threshold": 0.')
    run.evaluate()


def tuned_parameters_nested_100000_deep(run):
    Path(run.run_dir, "tuned.json").write_text('{"params": ' + "[" * 100_000 + "]" * 100_000 + "}")
    run.evaluate()


def tuned_parameters_of_another_flow(run):
    Path(run.run_dir, "tuned.json").write_text(json.dumps({"params": {"door_open": {"threshold": 0.3}}}))
    run.load_tuned()


def run_directory_of_another_flow(run):
    df = numbers_frame(40)
    project = Project(df, "number", ["is_even"], project_dir=Path(run.run_dir).parent / "other_project")

    @project.add_flow
    def evens(flow, x, out):
        out += flow.is_even(x.features)

    from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner
    DnnCoolSupervisedRunner(numbers_model(evens), evens, run_dir=run.run_dir)


def checkpoint_of_another_model(run):
    wider = numbers_runner(Path(run.run_dir).parent, hidden=16)
    wider.infer()


def truncated_checkpoint(run):
    path = Path(run.checkpoint_dir, "runner.best.pth")
    path.write_bytes(path.read_bytes()[:1000])
    run.infer()


def resume_from_a_checkpoint_of_another_model(run):
    numbers_runner(Path(run.run_dir).parent, hidden=16).train(num_epochs=2, resume=True)


def resume_from_a_truncated_checkpoint(run):
    path = Path(run.checkpoint_dir, "runner.last.pth")
    path.write_bytes(path.read_bytes()[:1000])
    run.train(num_epochs=2, resume=True)


def truncated_inference_output(run):
    path = Path(run.infer_dir, "valid", "is_even.npz")
    path.write_bytes(path.read_bytes()[:100])
    run.tune()


def splits_of_another_dataset(run):
    path = Path(run.run_dir, "splits.json")
    saved = json.loads(path.read_text())
    saved["num_samples"] = 999
    path.write_text(json.dumps(saved))
    numbers_runner(Path(run.run_dir).parent)


# -- runner misuse -------------------------------------------------------------------------------------------------

def tune_before_infer(tmp_path):
    numbers_runner(tmp_path).tune()


def infer_before_train(tmp_path):
    numbers_runner(tmp_path).infer()


def evaluate_on_a_split_that_does_not_exist(run):
    run.evaluate(loader="holdout")


def evaluate_with_an_unknown_gating(run):
    run.evaluate(gating="predicted")


def train_for_zero_epochs(tmp_path):
    numbers_runner(tmp_path).train(num_epochs=0)


def loss_weights_for_an_unknown_task(tmp_path):
    numbers_runner(tmp_path, loss_weights={"is_odd": 2.0}).train(num_epochs=1)


def bad_split_fractions(tmp_path):
    numbers_runner(tmp_path, split_fractions=(0.8, 0.3, 0.1))


# -- the catalogue -------------------------------------------------------------------------------------------------

DATAFRAME = [
    (missing_input_column, raises(ConverterError, "input column 'agee' is not in the DataFrame",
                                  "available columns: \\['age'")),
    (unknown_output_column, raises(ConverterError, "output column 'is_child' is not in the DataFrame")),
    (duplicate_columns, raises(ConverterError, "duplicate column names: \\['is_adult'\\]")),
    (column_both_input_and_output, raises(ConverterError, "\\['age'\\] are both input and output columns")),
    (strings_in_binary_column, raises(ConverterError, "binary column 'is_adult': expected",
                                                     "3 distinct labels \\['yes', 'no', 'maybe'\\]")),
    (strings_in_continuous_column, raises(ConverterError, "continuous column 'size': expected numbers",
                                          "'small'")),
    (strings_in_numeric_input, raises(ConverterError, "numeric input column 'age': expected numbers",
                                      "'young'")),
    (non_numeric_regression_cells, raises(ConverterError, "regression column 'temperature': expected numbers",
                                          "'3 celsius'")),
    (all_nan_output_column, raises(ConverterError, "column 'is_adult'", "all values are NaN")),
    (empty_dataframe, raises(ConverterError, "DataFrame is empty \\(0 rows\\)")),
    (nan_in_numeric_input, raises(ConverterError, "numeric input column 'age' has 1 missing value\\(s\\) at rows "
                                                  "\\[3\\]", "cannot have NaN")),
    (inf_in_numeric_input, raises(ConverterError, "numeric input column 'age': infinite value at row 1",
                                  "must be finite")),
    (input_overflowing_tabular_standardisation, raises(ConverterError, "input column 'age': values up to 1e\\+38 "
                                                       "overflow float32 when standardised", "rescale the column")),
    (inf_in_regression_label, raises(ConverterError, "regression column 'temperature': infinite value -inf at "
                                                     "row 1", "NaN for a missing label")),
    (ragged_array_input, raises(ConverterError, "array input column 'embedding': cells have different shapes",
                                "\\(2,\\) at row 0 and \\(3,\\) at row 11")),
    (unseen_class_at_inference, raises(ConverterError, "category column 'shirt': unknown class\\(es\\) "
                                                       "\\['green'\\]", "known classes are \\['blue', 'red'\\]",
                                       "converters.json")),
    (multilabel_unknown_label, raises(ConverterError, "multilabel column 'tags': unknown label\\(s\\) \\['hat'\\]",
                                      "known labels are \\['beard', 'glasses'\\]")),
    (bounded_regression_outside_bounds, raises(ConverterError, "continuous column 'size': value 1.5 at row 11",
                                               "outside the bounds \\[0.0, 0.91")),
    (corrupted_converter_state, raises(ConverterError, "converter state file '.*converters.json'",
                                       "fix or delete it")),
]
FLOW = [
    (unknown_task, raises(FlowDefinitionError, "flow 'person': unknown task or flow 'is_adlt'",
                          "Known tasks: \\['is_adult'")),
    (precondition_on_a_task_never_added, raises(FlowDefinitionError, "'shirt' has a precondition on task "
                                                                     "'is_adult', which this flow never adds")),
    (task_conditioned_on_itself, raises(FlowDefinitionError, "'is_adult' is conditioned on its own task "
                                                             "'is_adult' \\(cycle\\)")),
    (flow_containing_itself, raises(FlowDefinitionError, "flow 'person' calls itself", "cycle")),
    (condition_on_a_regression_task, raises(TaskError, "regression task 'temperature' does not support the "
                                                       "condition out.temperature",
                                            "cannot be used as a precondition")),
    (flow_registered_twice, raises(FlowDefinitionError, "a flow named 'person' is already added",
                                   "must be unique")),
    (nested_flow_called_with_a_tensor, raises(FlowDefinitionError, "nested flow 'clothes' must be called with the "
                                                                   "whole x \\(flow.clothes\\(x\\)\\), got Tensor")),
]
MODEL = [
    (model_output_missing_a_task, raises(TaskError, "no logits for task 'numerical_flow.multiple_three'",
                                         "keys present")),
    (logits_of_the_wrong_shape, raises(TaskError, "'is_even'", "expected logits of shape \\(4,\\)")),
    (features_missing_an_input_key, raises(TaskError, "task 'is_interesting' reads x.features",
                                           "no 'features' \\(got \\['feature'\\]\\)")),
    (nan_logits_during_training, raises(NonFiniteError, "task 'numerical_flow.multiple_three' produced NaN or inf "
                                                        "logits", "loader 'train', epoch 1, batch \\d+ of \\d+",
                                        "dataset positions \\[\\d+\\]")),
]
FILES = [
    (missing_image_file, raises(ConverterError, "img input column 'img': 1 file\\(s\\) not found",
                                "img2.png")),
    (unreadable_image_file, raises(ConverterError, "img input column 'img': cannot read image", "img1.png")),
    (tuned_parameters_nested_100000_deep, raises(RunnerError, "tuned.json", "nested deeper than 100 levels")),
    (corrupted_tuned_parameters, raises(RunnerError, "tuned parameters file .*tuned.json is corrupted",
                                        "run runner.tune\\(\\) again")),
    (tuned_parameters_of_another_flow, raises(RunnerError, "tuned.json does not fit this flow",
                                              "task\\(s\\) \\['door_open'\\]")),
    (run_directory_of_another_flow, raises(RunnerError, "run directory .*run belongs to a different flow "
                                                        "\\('is_interesting'", "choose another runner_name")),
    (checkpoint_of_another_model, raises(RunnerError, "checkpoint .*runner.best.pth does not fit this model",
                                         "size mismatch for trunk")),
    (truncated_checkpoint, raises(RunnerError, "checkpoint .*runner.best.pth cannot be read as a weights-only "
                                               "checkpoint")),
    (resume_from_a_checkpoint_of_another_model, raises(CheckpointError, "checkpoint .*runner.last.pth does not "
                                                                         "fit this run", "size mismatch")),
    (resume_from_a_truncated_checkpoint, raises(CheckpointError, "checkpoint .*runner.last.pth cannot be read as "
                                                                 "a weights-only checkpoint")),
    (truncated_inference_output, raises(RunnerError, "inference output .*valid.is_even.npz cannot be read",
                                        "run runner.infer\\(\\) again")),
    (splits_of_another_dataset, raises(RunnerError, "saved splits .*splits.json: field 'num_samples' must be "
                                                    f"the number of rows listed in 'splits' \\({SAMPLES}\\)",
                                       "got 999")),
]
MISUSE = [
    (tune_before_infer, raises(RunnerError, "no inference outputs in .*infer", "run runner.infer\\(\\) first")),
    (infer_before_train, raises(RunnerError, "no checkpoint .*runner.best.pth", "train first")),
    (evaluate_on_a_split_that_does_not_exist, raises(RunnerError, "split 'holdout' was not inferred",
                                                     "splits are \\['train', 'valid', 'test'\\]")),
    (evaluate_with_an_unknown_gating, raises(RunnerError, "gating must be one of \\('gt', 'decoded'\\)",
                                             "'predicted'")),
    (train_for_zero_epochs, raises(RunnerError, "num_epochs must be a positive int", "got 0")),
    # Now refused when the runner is built (issue 13, point 2), as a RunnerError.
    (loss_weights_for_an_unknown_task, raises(RunnerError, "loss_weights name unknown tasks \\['is_odd'\\]",
                                              "tasks are")),
    (bad_split_fractions, raises(ValueError, "split fractions must be three non-negative numbers summing to 1",
                                 "\\(0.8, 0.3, 0.1\\)")),
]
CATALOGUE = DATAFRAME + FLOW + MODEL + FILES + MISUSE


def test_the_catalogue_covers_at_least_25_cases():
    assert len(CATALOGUE) >= 25
    assert len({case.__name__ for case, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("case, expected", [pytest.param(c, e, id=c.__name__) for c, e in CATALOGUE])
def test_malformed_input_is_refused_with_a_message_naming_it(case, expected, request, tmp_path):
    check_refused(case, *expected, request, tmp_path)
