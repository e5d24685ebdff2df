"""Issue 27, item 6: warnings name the user's line, tune() on a flow without thresholds, undefined ratios are NaN."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import BinaryTask, Converters, Project, TaskFlow
from dnn_cool_catalyst.tabular import tabular_model


def small_run(tmp_path, output_type: str):
    df = pd.DataFrame({"x": np.random.default_rng(0).normal(size=120)})
    df["y"] = 2 * df["x"] + 1 if output_type == "regression" else (df["x"] > 0).astype(float)
    converters = Converters()
    converters.type.type_mapping["y"] = output_type
    project = Project(df, ["x"], ["y"], converters=converters, project_dir=str(tmp_path))

    @project.add_flow
    def one(flow, x, out):
        out += flow.y(x.features)
        return out

    runner = project.runner(tabular_model(project), "run")
    runner.train(num_epochs=1, verbose=False)
    runner.infer()
    return runner, df


def test_a_library_warning_points_at_the_users_call(tmp_path):
    runner, _ = small_run(tmp_path, "binary")
    with pytest.warns(UserWarning, match="no tuned parameters") as caught:
        runner.evaluate()
    assert [w.filename for w in caught] == [__file__]


def test_tune_on_a_flow_without_thresholds_says_so_and_nothing_else_warns(tmp_path):
    runner, df = small_run(tmp_path, "regression")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = runner.evaluate()  # untuned, but there is nothing to tune: no "no tuned parameters" warning
        runner.predict(df.head(3)[["x"]])
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    with pytest.warns(UserWarning, match=r"nothing to tune, no task of this flow has a decision threshold") as got:
        assert runner.tune() == {}
    assert got[0].filename == __file__
    pd.testing.assert_frame_equal(runner.evaluate(), table)


def test_precision_recall_f1_are_nan_without_positives():
    def flow_fn(flow, x, out):
        out += flow.door(x.features)
        return out

    flow = TaskFlow.from_function(flow_fn, [BinaryTask("door", 3)])
    logits = {"door": torch.tensor([-3.0, -2.0, -1.0, 2.0])}
    targets = {"door": torch.zeros(4)}
    available = {"door": torch.ones(4, dtype=torch.bool)}
    table = flow.get_evaluator()(logits, targets, available).set_index("metric_name")["metric_res"]
    assert table["accuracy"] == 0.75 and table["precision"] == 0.0  # one false positive: precision is defined
    assert math.isnan(table["recall"]) and table["f1"] == 0.0
    logits = {"door": torch.tensor([-3.0, -2.0, -1.0, -2.0])}
    table = flow.get_evaluator()(logits, targets, available).set_index("metric_name")["metric_res"]
    assert table["accuracy"] == 1.0
    assert all(math.isnan(table[m]) for m in ("f1", "precision", "recall")), table
