"""Issue 25, item 4: predictions come back as the user's column holds its labels (values and dtype), gated or not;
condition values are checked by the column's own dtype, and errors list the labels as the column holds them."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import TaskFlow
from dnn_cool_catalyst.data import Converters
from dnn_cool_catalyst.data.class_labels import BinaryConverter, CategoryConverter
from dnn_cool_catalyst.prediction import predictions_frame
from dnn_cool_catalyst.tasks import TaskError

N = 6
TYPES = {"flag": "binary", "rate": "category", "level": "category", "kind": "category", "plan": "binary",
         "amount": "regression", "tags": "multilabel"}
# What each column holds, and the dtype runner.predict must give it.
DTYPES = {"flag": "boolean", "rate": "Float64", "level": "Int64", "kind": "string", "plan": "string",
          "amount": "Float64", "tags": "object"}


def labels_frame():
    return pd.DataFrame({
        "x": np.arange(N, dtype=float),
        "flag": [True, False, True, False, True, False],
        "rate": [1.0, 2.0, 5.0, 1.0, 2.0, 5.0],
        "level": [1, 2, 3, 1, 2, 3],
        "kind": ["cat", "dog", "3", "cat", "dog", "3"],
        "plan": ["joint", "individual"] * 3,
        "amount": [10.5, -3.0, 7.25, 1.0, 2.0, 3.0],
        "tags": ["a, b", "b", "", "a", "b", "a"],
    })


def tasks_of(df):
    converters = Converters()
    converters.type.type_mapping.update(TYPES)
    return converters.build(df, input_cols=["x"], output_cols=list(TYPES)).tasks


def ungated(flow, x, out):
    for name in TYPES:
        out += getattr(flow, name)(x.features)
    return out


def gated(flow, x, out):
    out += flow.flag(x.features)
    for name in list(TYPES)[1:]:
        out += getattr(flow, name)(x.features) | out.flag
    return out


def logits_for(tasks, pick):
    """Logits whose decoded class is ``pick[i] % n_classes`` for sample i (positive where odd for binaries)."""
    logits = {}
    for name, task in tasks.items():
        width = task.out_features()
        if task.type_name in ("binary", "regression"):
            logits[name] = torch.tensor([4.0 if p % 2 else -4.0 for p in pick])
        else:
            one_hot = torch.full((len(pick), width), -4.0)
            one_hot[torch.arange(len(pick)), torch.tensor(pick) % width] = 4.0
            logits[name] = one_hot
    return logits


@pytest.fixture(scope="module")
def frames():
    tasks = tasks_of(labels_frame())
    pick = [1, 0, 2, 3, 1, 0]
    logits = logits_for(tasks, pick)
    return {name: predictions_frame(TaskFlow.from_function(fn, list(tasks.values())), logits)
            for name, fn in (("ungated", ungated), ("gated", gated))}


@pytest.mark.parametrize("gating", ["ungated", "gated"])
def test_predictions_keep_the_dtype_of_the_column_gated_or_not(frames, gating):
    frame = frames[gating]
    assert {name: str(frame[name].dtype) for name in TYPES} == DTYPES


def test_predicted_values_are_the_column_labels(frames):
    frame = frames["ungated"]
    # pick [1, 0, 2, 3, 1, 0]: binaries positive on odd picks; classes in sorted order
    assert frame["flag"].tolist() == [True, False, False, True, True, False]
    assert all(type(v) is bool for v in frame["flag"].tolist())
    assert frame["rate"].tolist() == [2.0, 1.0, 5.0, 1.0, 2.0, 1.0]  # classes 1.0 < 2.0 < 5.0
    assert all(type(v) is float for v in frame["rate"].tolist())
    assert frame["level"].tolist() == [2, 1, 3, 1, 2, 1] and all(type(v) is int for v in frame["level"].tolist())
    assert frame["kind"].tolist() == ["cat", "3", "dog", "3", "cat", "3"]  # sorted text: '3' < 'cat' < 'dog'
    assert frame["plan"].tolist() == ["joint", "individual", "individual", "joint", "joint", "individual"]
    assert frame["amount"].tolist() == pytest.approx([4.0, -4.0, -4.0, 4.0, 4.0, -4.0])  # unfitted: identity
    assert frame["tags"].tolist() == [["b"], ["a"], ["a"], ["b"], ["b"], ["a"]]


def test_gated_rows_are_na_in_the_same_dtype(frames):
    gated, ungated = frames["gated"], frames["ungated"]
    applies = ungated["flag"].to_numpy(dtype=bool)
    for name in list(TYPES)[1:]:
        assert gated[name].isna().tolist() == (~applies).tolist(), name
        assert all(gated[name][~applies].map(lambda v: v is pd.NA)), name
        kept = gated[name][applies].tolist()
        assert kept == ungated[name][applies].tolist(), name


def test_nullable_integer_and_object_bool_columns(tmp_path):
    """A nullable Int64 column with missing labels stays integer; a bool column with NaN (object dtype in pandas)
    stays bool; an integer column with NaN is float in pandas, so it comes back float."""
    df = pd.DataFrame({"x": np.arange(4, dtype=float), "level": pd.array([1, None, 3, 1], dtype="Int64"),
                       "flag": [True, np.nan, False, True], "grade": [1, np.nan, 2, 2]})
    converters = Converters()
    converters.type.type_mapping.update({"level": "category", "flag": "binary", "grade": "category"})
    tasks = converters.build(df, input_cols=["x"], output_cols=["level", "flag", "grade"]).tasks
    def three(flow, x, out):
        out += flow.level(x.features)
        out += flow.flag(x.features)
        out += flow.grade(x.features)
        return out

    flow = TaskFlow.from_function(three, list(tasks.values()))
    frame = predictions_frame(flow, logits_for(tasks, [0, 1, 0, 1]))
    assert [str(frame[c].dtype) for c in ("level", "flag", "grade")] == ["Int64", "boolean", "Float64"]
    assert frame["level"].tolist() == [1, 3, 1, 3] and frame["grade"].tolist() == [1.0, 2.0, 1.0, 2.0]


def test_label_kinds_are_saved_with_the_converter_state():
    conv = CategoryConverter().fit(pd.Series([1.0, 5.0, np.nan]), "rate")
    state = json.loads(json.dumps(conv.state_dict()))
    assert state == {"class_names": ["1", "5"], "kind": "int", "label_kind": "float"}
    again = CategoryConverter()
    again.load_state_dict(state)
    assert again.label_kind == "float"
    old = CategoryConverter()
    old.load_state_dict({"class_names": ["1", "5"], "kind": "int"})  # saved before label kinds
    assert old.label_kind == "int"
    binary = BinaryConverter().fit(pd.Series([True, False]), "flag")
    assert binary.state_dict() == {"labels": [0, 1], "positive": 1, "label_kind": "bool"}
    with pytest.raises(ValueError, match="label_kind"):
        BinaryConverter().load_state_dict({"labels": [0, 1], "positive": 1, "label_kind": "decimal"})


# -- conditions --------------------------------------------------------------------------------------------

def gate_on(tasks, parent, value):
    def f(flow, x, out):
        out += getattr(flow, parent)(x.features)
        out += flow.amount(x.features) | (getattr(out, parent) == value)
        return out

    return TaskFlow.from_function(f, [tasks[parent], tasks["amount"]])


@pytest.fixture(scope="module")
def tasks():
    return tasks_of(labels_frame())


@pytest.mark.parametrize("parent, value, expected", [
    ("rate", 5, 2), ("rate", 5.0, 2), ("rate", np.float32(5.0), 2), ("rate", np.int64(2), 1),
    ("level", 3, 2), ("level", 3.0, 2), ("kind", "3", 0), ("kind", "dog", 2),
    ("flag", True, 1), ("flag", False, 0), ("flag", 1, 1), ("plan", "joint", 1),
])
def test_values_equal_to_a_label_under_the_column_dtype_are_accepted(tasks, parent, value, expected):
    flow = gate_on(tasks, parent, value)
    assert int(flow.graph.leaves[1].full_condition.arg) == expected  # class id (binary: 1 for the positive label)


@pytest.mark.parametrize("parent, value, listed, hint", [
    ("rate", "5", "[1.0, 2.0, 5.0]", "holds float labels"),
    ("rate", "5.0", "[1.0, 2.0, 5.0]", "holds float labels"),
    ("rate", 3, "[1.0, 2.0, 5.0]", None),
    ("level", "3", "[1, 2, 3]", "holds int labels"),
    ("kind", 3, "['3', 'cat', 'dog']", "holds text labels, so compare with a string such as '3'"),
    ("flag", "True", "[False, True]", "holds bool labels"),
    ("plan", 1, "['individual', 'joint']", "holds text labels"),
])
def test_values_that_are_not_labels_are_refused_listing_the_column_labels(tasks, parent, value, listed, hint):
    with pytest.raises(TaskError, match=f"task '{parent}' has no (class named|label)") as e:
        gate_on(tasks, parent, value)
    assert f"labels are {listed}" in str(e.value)
    if hint:
        assert hint in str(e.value)
    else:
        assert "; the column holds" not in str(e.value)


def test_condition_is_rendered_as_the_column_label(tasks):
    described = gate_on(tasks, "rate", 5).describe()["tasks"][1]["condition"]
    assert described == "rate == 5.0"
    assert gate_on(tasks, "flag", 1).describe()["tasks"][1]["condition"] == "flag == True"
