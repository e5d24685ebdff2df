"""Conditions by LABEL value: ``out.level == 1`` selects the rows whose label is 1, never class id 1.

Masks are checked end to end: DataFrame -> Project -> dataset batch -> ground-truth masks, against the mask
computed with pandas from the same frame.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.data import Converters
from dnn_cool_catalyst.tasks import ClassificationTask, TaskError
from dnn_cool_catalyst.tasks.base import resolve_class

nan = np.nan


def frame(levels):
    n = len(levels)
    return pd.DataFrame({"x": np.arange(n, dtype=float), "level": levels, "child": [1.0, 0.0] * (n // 2)})


def gated_mask(df, value, tmp_path, level_type="category"):
    converters = Converters()
    converters.type.type_mapping.update({"level": level_type, "child": "binary"})
    project = Project(df, input_col="x", output_col=["level", "child"], converters=converters,
                      project_dir=str(tmp_path))

    @project.add_flow
    def gated(flow, x, out):
        out += flow.level(x.x)
        out += flow.child(x.x) | (out.level == value)
        return out

    flow = project.get_full_flow()
    batch = next(iter(torch.utils.data.DataLoader(project.get_dataset(), batch_size=len(df))))
    return flow, flow.get_masks(batch=batch)["child"].tolist()


@pytest.mark.parametrize("levels, value", [
    ([1, 2, 3, 1, 2, 3, nan, 1], 1),
    ([1, 2, 3, 1, 2, 3, nan, 1], 3),
    ([0, 1, 2, 0, 1, 2, 1, nan], 1),
    ([0, 1, 2, 0, 1, 2, 1, nan], 0),
    ([10, 20, 10, 20, nan, 20, 10, 10], 20),
    (["red", "green", "blue", "red", nan, "blue", "green", "red"], "green"),
])
def test_condition_selects_rows_with_that_label(levels, value, tmp_path):
    df = frame(levels)
    flow, mask = gated_mask(df, value, tmp_path)
    expected = (df["level"] == value).tolist()  # NaN == value is False: a missing parent gates off
    assert mask == expected
    assert any(expected)


def test_integral_float_and_numpy_values_mean_the_same_label(tmp_path):
    df = frame([1, 2, 3, 1, 2, 3, 2, 1])
    expected = (df["level"] == 2).tolist()
    for i, value in enumerate([2.0, np.int64(2), np.float32(2.0)]):
        assert gated_mask(df, value, tmp_path / str(i))[1] == expected


def test_flow_description_records_the_label_not_the_class_id(tmp_path):
    flow, _ = gated_mask(frame([1, 2, 3, 1, 2, 3, 2, 1]), 1, tmp_path)
    conditions = {t["path"]: t["condition"] for t in flow.describe()["tasks"]}
    assert conditions["child"] == "level == 1"
    # as the column holds it: pandas keeps integers with a missing cell as floats, unless the column is Int64
    flow, _ = gated_mask(frame([1, 2, 3, 1, 2, 3, nan, 1]), 1, tmp_path / "f")
    assert {t["path"]: t["condition"] for t in flow.describe()["tasks"]}["child"] == "level == 1.0"
    flow, _ = gated_mask(frame(pd.array([1, 2, 3, 1, 2, 3, None, 1], dtype="Int64")), 1, tmp_path / "i")
    assert {t["path"]: t["condition"] for t in flow.describe()["tasks"]}["child"] == "level == 1"
    flow, _ = gated_mask(frame(["a", "b", "c", "a", "b", "c", "a", "b"]), "b", tmp_path / "s")
    assert {t["path"]: t["condition"] for t in flow.describe()["tasks"]}["child"] == "level == 'b'"


@pytest.mark.parametrize("levels, value, shown", [
    ([1, 2, 3, 1, 2, 3, 1, 2], 0, "[1, 2, 3]"),
    ([1.0, 2.0, 5.0, 1.0, 2.0, 5.0, 1.0, 2.0], 3, "[1.0, 2.0, 5.0]"),
    ([1.0, 2.0, 5.0, 1.0, 2.0, 5.0, 1.0, 2.0], "5", "[1.0, 2.0, 5.0]"),
    ([1.0, 2.0, 5.0, 1.0, 2.0, 5.0, 1.0, 2.0], "5.0", "[1.0, 2.0, 5.0]"),
    ([1, 2, 3, 1, 2, 3, 1, 2], 4, "[1, 2, 3]"),
    ([1, 2, 3, 1, 2, 3, 1, 2], 1.5, "[1, 2, 3]"),
    ([10, 20, 10, 20, 10, 20, 10, 20], 1, "[10, 20]"),
    (["red", "blue", "green", "red", "blue", "green", "red", "blue"], "purple", "['blue', 'green', 'red']"),
])
def test_a_value_that_is_not_a_label_is_an_error_listing_the_labels(levels, value, shown, tmp_path):
    with pytest.raises(TaskError, match="task 'level' has no class named") as e:
        gated_mask(frame(levels), value, tmp_path)
    assert f"labels are {shown}" in str(e.value)


def test_task_without_class_names_takes_class_ids():
    task = ClassificationTask("level", 3)
    assert resolve_class(task, 2) == 2
    assert resolve_class(task, np.int64(1)) == 1
    with pytest.raises(TaskError, match="no class names, so a condition value must be a class id in \\[0, 3\\)"):
        resolve_class(task, 3)
    with pytest.raises(TaskError, match="class id"):
        resolve_class(task, "red")


def test_binary_task_with_text_labels_accepts_label_conditions(tmp_path):
    df = pd.DataFrame({"x": np.arange(8, dtype=float),
                       "sex": ["male", "female", "female", nan, "male", "female", "male", "male"],
                       "child": [1.0, 0.0] * 4})
    converters = Converters()
    converters.positive_class["sex"] = "female"
    converters.type.type_mapping["child"] = "binary"
    project = Project(df, input_col="x", output_col=["sex", "child"], converters=converters,
                      project_dir=str(tmp_path))

    @project.add_flow
    def by_sex(flow, x, out):
        out += flow.sex(x.x)
        out += flow.child(x.x) | (out.sex == "male")
        return out

    flow = project.get_full_flow()
    batch = next(iter(torch.utils.data.DataLoader(project.get_dataset(), batch_size=8)))
    assert flow.get_masks(batch=batch)["child"].tolist() == (df["sex"] == "male").tolist()
    assert flow.describe()["tasks"][1]["condition"] == "sex == 'male'"
    # out.sex alone holds for the positive class
    assert batch["targets"]["sex"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]

    def wrong(flow, x, out):
        out += flow.sex(x.x)
        out += flow.child(x.x) | (out.sex == "other")
        return out

    with pytest.raises(TaskError, match="binary task 'sex' has no label 'other'; its labels are \\['male', 'female'\\]"):
        project.add_flow(wrong)


def test_explanations_show_label_values():
    from dnn_cool_catalyst import BinaryTask, TaskFlow
    from dnn_cool_catalyst.interpretation.explain import render_tree

    tasks = [BinaryTask("sex", labels=["male", "female"]), ClassificationTask("level", 3, class_names=["1", "2", "3"]),
             BinaryTask("child")]

    def f(flow, x, out):
        out += flow.sex(x.features)
        out += flow.level(x.features)
        out += flow.child(x.features) | (out.level == 2) | (out.sex == "female")
        return out

    flow = TaskFlow.from_function(f, tasks)
    logits = {"sex": torch.tensor([3.0]), "level": torch.tensor([[0.0, 5.0, 0.0]]), "child": torch.tensor([1.0])}
    text = render_tree(flow.get_treelib_explainer()(logits)[0])
    assert "sex = 'female' (activation" in text
    assert "level = 2 (top-2: 2 " in text
    assert "given level == 2 & sex == 'female'" in text
