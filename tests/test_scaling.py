"""Issue 13, point 1: regression targets standardised on the training split, everything reported in label units."""
import json
import math
import warnings
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.run.fitted import FITTED_FILE
from dnn_cool_catalyst.tabular import tabular_model
from dnn_cool_catalyst.tasks import BoundedRegressionTask, RegressionTask
from dnn_cool_catalyst.tasks.base import TaskError


def grams_frame(n=400, seed=0):
    """Raw-unit targets: 'grams' around 4200 (spread 800), 'balance' mostly negative; a binary task beside."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1]})
    df["grams"] = 4200 + 800 * x[:, 0] - 300 * x[:, 1] + rng.normal(0, 50, n)
    df["balance"] = -5000 + 1500 * x[:, 1] + rng.normal(0, 50, n)
    df["big"] = (x[:, 0] + x[:, 1] > 0).astype(float)
    df.loc[rng.random(n) < 0.1, "grams"] = np.nan
    return df


def grams_project(project_dir, df=None):
    df = grams_frame() if df is None else df
    converters = Converters()
    converters.type.type_mapping.update({"grams": "regression", "balance": "regression", "big": "binary"})
    project = Project(df, input_col=["a", "b"], output_col=["grams", "balance", "big"], converters=converters,
                      project_dir=project_dir)

    @project.add_flow
    def animals(flow, x, out):
        out += flow.big(x.features)
        out += flow.grams(x.features)
        out += flow.balance(x.features)
        return out

    return project, df


def make_runner(project_dir, name="run", **kwargs):
    torch.manual_seed(0)
    project, df = grams_project(project_dir)
    return project.runner(tabular_model(project, hidden=32), name, batch_size=32, **kwargs), df


def test_scaling_is_fitted_on_training_rows_only_and_saved(tmp_path):
    runner, df = make_runner(tmp_path)
    train_rows = df.iloc[runner.splits["train"]]
    state = json.load(open(os.path.join(runner.run_dir, FITTED_FILE)))["tasks"]
    labelled = train_rows["grams"].dropna()
    assert state["grams"]["mean"] == pytest.approx(labelled.mean())
    assert state["grams"]["std"] == pytest.approx(labelled.std(ddof=0))
    assert state["balance"]["mean"] == pytest.approx(train_rows["balance"].mean())
    assert state["balance"]["mean"] < 0  # negative labels are labels
    assert "big" not in state  # nothing fitted for a binary task
    # Not the whole frame's statistics: the valid/test rows played no part.
    assert state["grams"]["mean"] != pytest.approx(df["grams"].dropna().mean(), abs=1e-9)


def test_predictions_and_metrics_are_in_label_units_equal_to_sklearn(tmp_path):
    runner, df = make_runner(tmp_path)
    runner.train(num_epochs=12, lr=1e-2)
    runner.infer()
    table = runner.evaluate("test")
    data = runner._stored("test")[3]
    for task in ("grams", "balance"):
        mask = data[task]["mask_gt"].numpy()
        pred = data[task]["activations"].numpy()[mask]
        rows = data[task]["index"].numpy()[mask]
        raw = df[task].to_numpy()[rows]  # the labels exactly as written in the DataFrame
        assert not np.isnan(raw).any()
        row = table[(table.task_path == task)].set_index("metric_name")
        assert row.loc["mae", "metric_res"] == pytest.approx(mean_absolute_error(raw, pred), rel=1e-5)
        assert row.loc["rmse", "metric_res"] == pytest.approx(mean_squared_error(raw, pred) ** 0.5, rel=1e-5)
        assert int(row.loc["mae", "num_samples"]) == int(mask.sum())
        # Learned, in units: far better than predicting the training mean (the unscaled failure of issue 13).
        assert row.loc["mae", "metric_res"] < 0.5 * mean_absolute_error(raw, np.full_like(raw, raw.mean()))
    assert (data["balance"]["activations"].numpy() < 0).mean() > 0.9


def test_a_later_runner_reuses_the_saved_scaling_and_reproduces_evaluate(tmp_path):
    runner, _ = make_runner(tmp_path)
    runner.train(num_epochs=2, lr=1e-2)
    runner.infer(splits=["test"])
    first = runner.evaluate("test")
    before = runner.flow.tasks["grams"].get_fitted_state()
    # A fresh project and runner on the same run directory (a restart): new, unfitted task objects.
    again, _ = make_runner(tmp_path)
    assert again.flow.tasks["grams"] is not runner.flow.tasks["grams"]
    assert again.flow.tasks["grams"].get_fitted_state() == before
    again.infer(splits=["test"])
    pd.testing.assert_frame_equal(again.evaluate("test"), first)
    reference = again._stored("test")[3]["grams"]["activations"]
    # The state is read from the file, not refitted: an edited file is what a later runner uses.
    path = os.path.join(runner.run_dir, FITTED_FILE)
    saved = json.load(open(path))
    saved["tasks"]["grams"]["mean"] += 1000.0
    json.dump(saved, open(path, "w"))
    edited, _ = make_runner(tmp_path)
    assert edited.flow.tasks["grams"].get_fitted_state()["mean"] == pytest.approx(before["mean"] + 1000.0)
    # ...and the runner re-applies its own state before inferring, even if another runner refitted the tasks.
    edited.flow.tasks["grams"].reset_fitted_state()
    edited.infer(splits=["test"])
    shifted = edited._stored("test")[3]["grams"]["activations"] - reference
    assert shifted.numpy() == pytest.approx(np.full(shifted.shape, 1000.0), abs=1e-2)


def test_a_damaged_fitted_file_is_a_runner_error_naming_file_and_field(tmp_path):
    runner, _ = make_runner(tmp_path)
    path = os.path.join(runner.run_dir, FITTED_FILE)
    saved = json.load(open(path))
    saved["tasks"]["grams"]["std"] = 0.0
    json.dump(saved, open(path, "w"))
    with pytest.raises(RunnerError, match=r"fitted_targets.json, field 'grams'.*'std' must be > 0"):
        make_runner(tmp_path)
    saved["tasks"]["grams"]["std"] = "wide"
    json.dump(saved, open(path, "w"))
    with pytest.raises(RunnerError, match=r"field 'grams'.*'std' must be a finite number"):
        make_runner(tmp_path)
    saved["tasks"] = {"weight": {"mean": 1.0, "std": 1.0}}
    json.dump(saved, open(path, "w"))
    with pytest.raises(RunnerError, match=r"unknown task\(s\) \['weight'\]"):
        make_runner(tmp_path)
    open(path, "w").write("{not json")
    with pytest.raises(RunnerError, match="cannot read .*fitted_targets.json"):
        make_runner(tmp_path)


def test_constant_training_column_does_not_divide_by_zero():
    task = RegressionTask("flat")
    task.fit_targets(torch.full((5,), 7.0), torch.ones(5, dtype=torch.bool))
    assert task.get_fitted_state() == {"mean": 7.0, "std": 1.0}
    loss = task.loss(torch.zeros(5), torch.full((5,), 7.0), torch.ones(5, dtype=torch.bool))
    assert float(loss) == 0.0
    assert task.decode(torch.tensor([0.5])).item() == pytest.approx(7.5)


def test_unfitted_scaling_is_identity_and_fitted_loss_is_in_standard_units():
    task = RegressionTask("y")
    target, mask = torch.tensor([100.0, 300.0]), torch.tensor([True, True])
    assert float(task.loss(torch.tensor([100.0, 300.0]), target, mask)) == 0.0  # identity: raw units
    task.fit_targets(target, mask)  # mean 200, std 100
    assert float(task.loss(torch.tensor([-1.0, 1.0]), target, mask)) == 0.0
    assert task.activation(torch.tensor([-1.0, 1.0])).tolist() == [100.0, 300.0]
    stats = task.metric_stats(torch.tensor([-1.0, 2.0]), target, mask)
    assert task.metric_values(stats)["mae"] == pytest.approx(50.0)  # |400 - 300| / 2, in label units
    with pytest.raises(TaskError, match="'mean' must be a finite number"):
        task.set_fitted_state({"mean": float("nan"), "std": 1.0})
    with pytest.raises(TaskError, match="unknown fitted state"):
        task.set_fitted_state({"mean": 0.0, "std": 1.0, "scale": 2})


def test_bounded_regression_reports_rmse_in_units():
    task = BoundedRegressionTask("x1", lo=0, hi=10)
    logits = torch.logit(torch.tensor([0.2, 0.5]))
    values = task.metric_values(task.metric_stats(logits, torch.tensor([0.4, 0.5]), torch.tensor([True, True])))
    assert values["rmse_units"] == pytest.approx(values["rmse"] * 10)
    assert values["rmse_units"] == pytest.approx(math.sqrt((2.0 ** 2) / 2), rel=1e-5)
    assert values["mae_units"] == pytest.approx(1.0, rel=1e-5)


def test_readme_scaling_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Scaled regression, loss balancing and model selection"):]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    monkeypatch.chdir(tmp_path)
    scope = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), scope)
    # Regression only: there is no threshold to tune, so evaluate() does not ask for tune().
    assert not [w for w in caught if "no tuned parameters" in str(w.message)]
    table = scope["runner"].evaluate()
    mae = table[(table.task_path == "body_mass_g") & (table.metric_name == "mae")].metric_res.item()
    assert 0 < mae < 1000  # grams, not standard units
    state = json.load(open(tmp_path / "penguins_project" / "mass" / FITTED_FILE))["tasks"]
    assert 3500 < state["body_mass_g"]["mean"] < 4800


def test_a_dataset_without_label_items_trains_unscaled_with_a_warning(tmp_path):
    from dnn_cool_catalyst import TaskFlow
    from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner
    from dnn_cool_catalyst.tasks import BinaryTask

    def flow_fn(flow, x, out):
        out += flow.size(x.features)
        return out

    flow = TaskFlow.from_function(flow_fn, [RegressionTask("size", 4)])
    with pytest.warns(UserWarning, match="no target scaling is fitted: regression tasks train and predict in raw"):
        DnnCoolSupervisedRunner(flow.torch(), flow, run_dir=tmp_path / "a", dataset=list(range(8)))
    assert json.load(open(tmp_path / "a" / FITTED_FILE))["tasks"] == {}
    assert flow.tasks["size"].get_fitted_state() == {"mean": 0.0, "std": 1.0}
    # Without a task that fits anything, the dataset is not read at all (no warning).
    def binary_fn(flow, x, out):
        out += flow.big(x.features)
        return out

    binary = TaskFlow.from_function(binary_fn, [BinaryTask("big", 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DnnCoolSupervisedRunner(binary.torch(), binary, run_dir=tmp_path / "b", dataset=list(range(8)))
