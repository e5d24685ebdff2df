"""Issue 18, item 1: ``runner.predict(df)`` gives, for new rows, what ``infer()`` stored and
``evaluate(gating="decoded")`` judged, in label space (class names, text binary labels, regression units)."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.data import ConverterError
from dnn_cool_catalyst.prediction import label_frame, predictions_frame
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.tabular import tabular_model
from dnn_cool_catalyst.tasks import BinaryTask, ClassificationTask, MultilabelTask
from dnn_cool_catalyst import TaskFlow

GRADES = ["A", "B", "C"]
LABELS = ["application_type", "income", "grade", "approved"]  # the flow's order


def loans_frame(n=360, seed=0):
    """application_type ("joint"/"individual") gates income (joint only, thousands of units) and grade
    (individual only); approved is gated by grade == "A" (a class-valued condition on a gated task)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    region = rng.choice(["north", "south", "east"], n)
    joint = x[:, 0] + 0.5 * (region == "north") > 0
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "region": region,
                       "application_type": np.where(joint, "joint", "individual").astype(object)})
    df["income"] = np.where(joint, 52000 + 9000 * x[:, 1] + rng.normal(0, 500, n), np.nan)
    grade = np.array(GRADES, dtype=object)[np.digitize(x[:, 1], [-0.4, 0.4])]
    df["grade"] = np.where(joint, None, grade)
    df["approved"] = np.where(df["grade"] == "A", (x[:, 0] < -0.5).astype(float), np.nan)
    df.index = [f"row{i}" for i in range(n)]  # string labels: predict must keep them
    return df


def loans_project(project_dir, df):
    converters = Converters()
    converters.type.type_mapping.update({"x1": "numeric", "x2": "numeric", "region": "categorical",
                                         "application_type": "binary", "grade": "category", "income": "regression",
                                         "approved": "binary"})
    project = Project(df, input_col=["x1", "x2", "region"], output_col=LABELS, converters=converters,
                      project_dir=project_dir)

    @project.add_flow
    def loans(flow, x, out):
        out += flow.application_type(x.features)
        out += flow.income(x.features) | (out.application_type == "joint")
        out += flow.grade(x.features) | (out.application_type == "individual")
        out += flow.approved(x.features) | (out.grade == "A")
        return out

    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trained, inferred, predicted once untuned, then tuned and inferred again (decoded masks with the tuned
    thresholds), as a user would."""
    torch.manual_seed(0)
    df = loans_frame()
    project = loans_project(str(tmp_path_factory.mktemp("loans")), df)
    runner = project.runner(tabular_model(project, hidden=32), "run", batch_size=32, seed=0)
    runner.train(num_epochs=3, lr=0.01)
    runner.infer()
    test_rows = df.iloc[runner.splits["test"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        untuned = runner.predict(test_rows)
        untuned_again = runner.predict(test_rows)
    untuned_expected = expected_from_stored(runner, runner._stored("test")[3])  # decoded with 0.5 thresholds
    runner.tune(min_samples=0, min_per_class=0)
    runner.infer(splits=["test"])
    return {"runner": runner, "df": df, "test_rows": test_rows, "untuned": untuned, "untuned_again": untuned_again,
            "untuned_warnings": [str(w.message) for w in caught], "untuned_expected": untuned_expected}


def expected_from_stored(runner, stored):
    """Per task, the stored decoded predictions in label space where the stored decoded mask holds (else None)."""
    expected = {}
    for name, task in runner.flow.tasks.items():
        values = task.label_values(task.decode(stored[name]["logits"]))
        expected[name] = [v if bool(m) else None for v, m in zip(values, stored[name]["mask_decoded"])]
    return expected


def cells(series):
    return [None if (not isinstance(v, (list, str)) and pd.isna(v)) else v for v in series]


def test_predict_equals_what_infer_stored_values_and_applicability(trained):
    runner, test_rows = trained["runner"], trained["test_rows"]
    predicted = runner.predict(test_rows.drop(columns=LABELS))  # label columns are not needed
    stored = runner._stored("test")[3]
    positions = stored["income"]["index"].tolist()
    assert list(test_rows.index) == [runner.dataset.data.row_ids[p] for p in positions]
    assert list(predicted.index) == list(test_rows.index) and list(predicted.columns) == LABELS
    expected = expected_from_stored(runner, stored)
    for name in LABELS:
        got = cells(predicted[name])
        assert [g is None for g in got] == [e is None for e in expected[name]], name
        if name == "income":
            assert np.allclose([g for g in got if g is not None], [e for e in expected[name] if e is not None],
                               rtol=1e-5)
        else:
            assert got == expected[name], name
    # Gating really happened: each gated task is blank somewhere, and exactly where its parent says so.
    assert predicted["income"].isna().any() and predicted["grade"].isna().any()
    assert predicted["approved"].notna().any() and predicted["approved"].isna().any()
    assert (predicted["income"].notna() == (predicted["application_type"] == "joint")).all()
    assert (predicted["grade"].notna() == (predicted["application_type"] == "individual")).all()
    assert (predicted["approved"].notna() == (predicted["grade"] == "A")).all()


def test_predict_agrees_with_decoded_evaluation(trained):
    """The decoded-gating evaluation is the predictions judged where a label exists: recomputing accuracy and
    MAE from predict()'s frame and the test labels gives the same numbers and sample counts."""
    runner, test_rows = trained["runner"], trained["test_rows"]
    table = runner.evaluate("test", gating="decoded").set_index(["task_path", "metric_name"])
    predicted = runner.predict(test_rows)
    for name in ("application_type", "grade", "approved"):
        judged = predicted[name].notna() & test_rows[name].notna()
        labels = test_rows.loc[judged, name]
        if name == "approved":
            labels = labels.astype(int)
        accuracy = float((predicted.loc[judged, name] == labels).mean()) if judged.any() else 0.0
        assert int(table.loc[(name, "accuracy"), "num_samples"]) == int(judged.sum()), name
        assert math.isclose(table.loc[(name, "accuracy"), "metric_res"], accuracy, abs_tol=1e-9), name
    judged = predicted["income"].notna() & test_rows["income"].notna()
    mae = float((predicted.loc[judged, "income"] - test_rows.loc[judged, "income"]).abs().mean())
    assert int(table.loc[("income", "mae"), "num_samples"]) == int(judged.sum()) > 0
    assert math.isclose(table.loc[("income", "mae"), "metric_res"], mae, rel_tol=1e-4)


def test_predictions_are_in_label_space(trained):
    predicted = trained["runner"].predict(trained["test_rows"])
    assert set(predicted["application_type"]) <= {"joint", "individual"}
    assert set(predicted["grade"].dropna()) <= set(GRADES)
    assert set(predicted["approved"].dropna()) <= {0.0, 1.0}
    income = predicted["income"].dropna()
    assert str(income.dtype) == "Float64" and income.mean() > 10000  # label units, not standard units
    # the column's own types: text labels as text, a float 0/1 column as floats, gated or not (pd.NA there)
    assert [str(predicted[name].dtype) for name in ("application_type", "grade", "approved")] == \
        ["string", "string", "Float64"]


def test_proba_columns(trained):
    runner, test_rows = trained["runner"], trained["test_rows"]
    predicted = runner.predict(test_rows, proba=True)
    stored = runner._stored("test")[3]
    proba = [c for c in predicted.columns if c.startswith("proba_")]
    assert proba == ["proba_application_type", "proba_grade[A]", "proba_grade[B]", "proba_grade[C]",
                     "proba_approved"]
    assert np.allclose(predicted["proba_application_type"], stored["application_type"]["activations"], atol=1e-6)
    grade = predicted[["proba_grade[A]", "proba_grade[B]", "proba_grade[C]"]]
    applies = predicted["grade"].notna()
    assert grade[~applies].isna().all().all() and np.allclose(grade[applies].sum(axis=1), 1.0)
    best = grade[applies].to_numpy().argmax(axis=1)
    assert [GRADES[i] for i in best] == list(predicted.loc[applies, "grade"])
    assert list(predicted[LABELS].columns) == LABELS  # the prediction columns themselves are unchanged


def test_untuned_predict_warns_once_and_uses_default_thresholds(trained):
    assert sum("no tuned parameters" in m for m in trained["untuned_warnings"]) == 1
    for name in ("application_type", "grade", "approved"):
        assert cells(trained["untuned"][name]) == trained["untuned_expected"][name], name
    pd.testing.assert_frame_equal(trained["untuned"], trained["untuned_again"])


def test_batches_and_row_order_do_not_change_predictions(trained):
    runner, test_rows = trained["runner"], trained["test_rows"]
    whole = runner.predict(test_rows, proba=True)
    shuffled = test_rows.sample(frac=1.0, random_state=3)
    small = runner.predict(shuffled, proba=True, batch_size=5)
    pd.testing.assert_frame_equal(small.loc[whole.index], whole, rtol=1e-5)


def test_new_rows_with_an_unknown_category_warn_and_predict(trained):
    rows = pd.DataFrame({"x1": [0.3, -1.2], "x2": [1.0, 0.1], "region": ["north", "atlantis"]}, index=[7, 8])
    with pytest.warns(UserWarning, match="categorical input column 'region'.*atlantis"):
        predicted = trained["runner"].predict(rows)
    assert list(predicted.index) == [7, 8] and predicted["application_type"].notna().all()


def test_bad_inputs_are_errors_naming_the_column(trained):
    runner = trained["runner"]
    with pytest.raises(RunnerError, match=r"lacks input column\(s\) \['region'\]"):
        runner.predict(pd.DataFrame({"x1": [0.1], "x2": [0.2]}))
    with pytest.raises(ConverterError, match="'x2'"):
        runner.predict(pd.DataFrame({"x1": [0.1], "x2": ["tall"], "region": ["north"]}))
    with pytest.raises(ConverterError, match="'x1'.*missing"):
        runner.predict(pd.DataFrame({"x1": [np.nan], "x2": [0.2], "region": ["north"]}))
    with pytest.raises(RunnerError, match="no rows"):
        runner.predict(pd.DataFrame({"x1": [], "x2": [], "region": []}))
    with pytest.raises(RunnerError, match="DataFrame"):
        runner.predict({"x1": [0.1]})
    with pytest.raises(RunnerError, match="batch_size"):
        runner.predict(trained["test_rows"], batch_size=0)


def test_predict_without_a_checkpoint_says_to_train_first(trained, tmp_path):
    project = loans_project(str(tmp_path), trained["df"])
    runner = project.runner(tabular_model(project, hidden=8), "untrained", batch_size=32)
    with pytest.raises(RunnerError, match=r"train first \(runner.train\(\)\)"):
        runner.predict(trained["test_rows"])


def test_label_frame_multilabel_lists_and_class_condition():
    """Without training: multilabel predictions are lists of names, gating on a class-valued condition."""
    tasks = [ClassificationTask("kind", 3, class_names=["cat", "dog", "3"]),
             MultilabelTask("traits", 2, class_names=["fluffy", "loud"]), BinaryTask("barks")]

    def pets(flow, x, out):
        out += flow.kind(x.features)
        out += flow.traits(x.features)
        out += flow.barks(x.features) | (out.kind == "dog")
        return out

    flow = TaskFlow.from_function(pets, tasks)
    logits = {"kind": torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]),
              "traits": torch.tensor([[3.0, 3.0], [-3.0, 3.0], [-3.0, -3.0]]),
              "barks": torch.tensor([2.0, 2.0, -2.0])}
    frame = predictions_frame(flow, logits, index=["a", "b", "c"], proba=True)
    assert list(frame["kind"]) == ["cat", "dog", "3"]  # names that are not all numbers: a text column
    numbered = ClassificationTask("kind", 3, class_names=["1", "2", "3"])
    assert numbered.label_values(torch.tensor([0, 2])) == [1, 3]  # integer names: integer labels
    assert list(frame["traits"]) == [["fluffy", "loud"], ["loud"], []]
    assert cells(frame["barks"]) == [None, 1, None] and math.isnan(frame.loc["a", "proba_barks"])
    assert str(frame["barks"].dtype) == "Int64" and frame.loc["a", "barks"] is pd.NA
    assert frame.loc["b", "proba_barks"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert frame.loc["a", "proba_traits[loud]"] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    with pytest.raises(ValueError, match="index has 2 labels for 3"):
        label_frame(flow, {k: flow.tasks[k].decode(v) for k, v in logits.items()},
                    {k: torch.ones(3, dtype=torch.bool) for k in logits}, index=["a", "b"])
