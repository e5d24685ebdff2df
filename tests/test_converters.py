import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dnn_cool_catalyst.data import (BinaryConverter, CategoryConverter, ContinuousConverter, ConverterError,
                                    Converters, MultilabelConverter, RegressionConverter, TokensConverter, guess_type)
from dnn_cool_catalyst.tasks import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask,
                                     RegressionTask, TokenClassificationTask)

nan = np.nan


def convert(converter, values, column="col"):
    series = pd.Series(values)
    converter.fit(series, column)
    v, a = converter.transform(series, column)
    return v, a


# -- binary ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    [1, nan, 0, 1],
    [1.0, nan, 0.0, 1.0],
    [True, None, False, True],
    pd.array([True, None, False, True], dtype="boolean"),
    np.array([np.True_, None, np.False_, 1], dtype=object),
])
def test_binary_accepts_bool_and_01_with_nan(values):
    v, a = convert(BinaryConverter(), values)
    assert v.dtype == torch.float32 and a.dtype == torch.bool
    assert v.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert a.tolist() == [True, False, True, True]


@pytest.mark.parametrize("values, shown", [(["yes", "no", "maybe", nan], "'maybe'"), ([0, 1, 2, nan], "2")])
def test_binary_rejects_other_values_naming_column_and_values(values, shown):
    with pytest.raises(ConverterError, match="door_open") as e:
        BinaryConverter().fit(pd.Series(values), "door_open")
    assert shown in str(e.value)


def test_binary_error_shows_at_most_five_offending_values():
    with pytest.raises(ConverterError) as e:
        BinaryConverter().fit(pd.Series([2, 3, 4, 5, 6, 7, 8, 0]), "b")
    assert "8 distinct labels [2, 3, 4, 5, 6] (and 3 more)" in str(e.value)


# -- category --------------------------------------------------------------------------------------------

def test_category_strings_sorted_ids_and_mask():
    conv = CategoryConverter()
    v, a = convert(conv, ["red", nan, "blue", "green", "red"])
    assert conv.class_names == ["blue", "green", "red"]
    assert v.dtype == torch.int64
    assert v.tolist() == [2, 0, 0, 1, 2]
    assert a.tolist() == [True, False, True, True, True]


def test_category_ints_sorted_numerically_names_as_strings():
    conv = CategoryConverter()
    v, a = convert(conv, [10, 2, nan, 3, 10])  # NaN makes the column float64
    assert conv.class_names == ["2", "3", "10"]
    assert v.tolist() == [2, 0, 0, 1, 2]
    assert a.tolist() == [True, True, False, True, True]


def test_category_single_class_and_fractional_and_unknown():
    with pytest.raises(ConverterError, match="'shirt' has only 1 class"):
        CategoryConverter().fit(pd.Series(["red", nan, "red"]), "shirt")
    with pytest.raises(ConverterError, match="shirt.*non-integer"):
        CategoryConverter().fit(pd.Series([1.5, 2.0]), "shirt")
    conv = CategoryConverter().fit(pd.Series(["a", "b"]), "shirt")
    with pytest.raises(ConverterError, match=r"shirt.*'c'.*\['a', 'b'\]"):
        conv.transform(pd.Series(["a", "c"]), "shirt")


# -- multilabel ------------------------------------------------------------------------------------------

def test_multilabel_empty_string_vs_nan_vs_lists():
    conv = MultilabelConverter()
    v, a = convert(conv, ["glasses, beard", "", nan, ["hat"], ("beard",), {"glasses"}, "hat,,glasses "])
    assert conv.class_names == ["beard", "glasses", "hat"]
    assert v.dtype == torch.float32 and v.shape == a.shape == (7, 3)
    assert v.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert a.tolist() == [[True] * 3, [True] * 3, [False] * 3, [True] * 3, [True] * 3, [True] * 3, [True] * 3]


def test_multilabel_unknown_label_and_bad_cell():
    conv = MultilabelConverter().fit(pd.Series(["a,b", nan]), "face")
    with pytest.raises(ConverterError, match="face.*'zzz'"):
        conv.transform(pd.Series(["a, zzz"]), "face")
    with pytest.raises(ConverterError, match="face"):
        MultilabelConverter().fit(pd.Series(["a", 3]), "face")
    with pytest.raises(ConverterError, match="face.*no class names"):
        MultilabelConverter().fit(pd.Series(["", nan]), "face")


# -- continuous / regression -----------------------------------------------------------------------------

def test_continuous_rescales_and_stores_fitted_bounds():
    conv = ContinuousConverter()
    v, a = convert(conv, [10.0, nan, 30.0, 20.0])
    assert (conv.lo, conv.hi) == (10.0, 30.0)
    assert conv.state_dict() == {"lo": 10.0, "hi": 30.0}
    assert torch.allclose(v, torch.tensor([0.0, 0.0, 1.0, 0.5]))
    assert a.tolist() == [True, False, True, True]


def test_continuous_explicit_bounds_and_errors():
    conv = ContinuousConverter(lo=0, hi=64)
    v, _ = convert(conv, [16.0, 48.0])
    assert v.tolist() == [0.25, 0.75] and conv.state_dict() == {"lo": 0.0, "hi": 64.0}
    with pytest.raises(ConverterError, match=r"face_x1.*65.*\[0.0, 64.0\]"):
        conv.transform(pd.Series([65.0]), "face_x1")
    with pytest.raises(ConverterError, match="face_x1.*lo < hi"):
        ContinuousConverter().fit(pd.Series([3.0, 3.0, nan]), "face_x1")
    with pytest.raises(ConverterError, match="face_x1.*'big'"):
        ContinuousConverter().fit(pd.Series([0.1, "big"]), "face_x1")
    with pytest.raises(ConverterError, match="face_x1.*infinite"):
        ContinuousConverter().fit(pd.Series([0.1, np.inf]), "face_x1")


def test_regression_keeps_negative_labels_and_rejects_inf():
    v, a = convert(RegressionConverter(), [-3.2, nan, 0.0, -1.0])
    assert v.dtype == torch.float32
    assert torch.allclose(v, torch.tensor([-3.2, 0.0, 0.0, -1.0]))
    assert a.tolist() == [True, False, True, True]
    with pytest.raises(ConverterError, match="temp.*infinite"):
        RegressionConverter().fit(pd.Series([1.0, -np.inf]), "temp")


# -- tokens ----------------------------------------------------------------------------------------------

def test_tokens_padding_and_masks():
    conv = TokensConverter()
    v, a = convert(conv, [[1, 2, 3], np.array([4]), nan, []])
    assert conv.n_classes == 5 and conv.state_dict() == {"n_classes": 5}
    assert v.dtype == torch.int64 and v.shape == a.shape == (4, 3)
    assert v.tolist() == [[1, 2, 3], [4, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert a.tolist() == [[True, True, True], [True, False, False], [False] * 3, [False] * 3]


def test_tokens_errors():
    with pytest.raises(ConverterError, match="pos.*negative"):
        TokensConverter().fit(pd.Series([[1, -1]]), "pos")
    with pytest.raises(ConverterError, match="pos"):
        TokensConverter().fit(pd.Series(["1 2"]), "pos")
    conv = TokensConverter().fit(pd.Series([[0, 1]]), "pos")
    with pytest.raises(ConverterError, match="pos.*out of range"):
        conv.transform(pd.Series([[0, 2]]), "pos")


@pytest.mark.parametrize("converter", [BinaryConverter, CategoryConverter, MultilabelConverter,
                                       ContinuousConverter, RegressionConverter, TokensConverter])
def test_all_nan_output_column_is_an_error(converter):
    with pytest.raises(ConverterError, match=r"output column 'empty' has no labels \(all values are NaN\)"):
        converter().fit(pd.Series([nan, nan], dtype=object), "empty")


# -- type guessing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, expected", [
    ([True, False, None], "binary"),
    ([0, 1, nan], "binary"),
    (["a.PNG", "b.jpg", "c.jpeg", None], "img"),
    (["a,b", "c", None], "multilabel"),
    (["red", "blue"], "binary"),  # two distinct strings are a binary label
    (["red", "blue", "green"], "category"),
    ([[1, 2], [3], None], "array"),
    ([3, 1, 2, nan], "category"),
    ([0.1, 0.5, 1.0], "continuous"),
    ([-3.5, 2.0, 100.0], "regression"),
    (list(range(30)), "regression"),
])
def test_guess_type(values, expected):
    assert guess_type(pd.Series(values), "c") == expected


def test_type_mapping_overrides_guess():
    conv = Converters()
    conv.type.type_mapping["c"] = "regression"
    assert conv.type.guess(pd.Series([0, 1]), "c") == "regression"


# -- Converters.build ------------------------------------------------------------------------------------

def security_df():
    return pd.DataFrame({
        "x": [0.5, 1.0, 2.0, 3.0],
        "door_open": [1, 0, nan, 1],
        "shirt_type": ["red", nan, "blue", "green"],
        "facial": ["glasses", "", nan, "beard, glasses"],
        "face_x1": [0.1, 0.9, nan, 0.5],
        "temperature": [-3.2, nan, 10.0, 0.0],
    }, index=[100, 101, 102, 103])


def test_build_all_types_end_to_end():
    conv = Converters()
    outputs = ["door_open", "shirt_type", "facial", "face_x1", "temperature"]
    data = conv.build(security_df(), input_cols=["x"], output_cols=outputs)
    assert len(data) == 4 and list(data.row_ids) == [100, 101, 102, 103]
    assert data.types == {"x": "numeric", "door_open": "binary", "shirt_type": "category",
                          "facial": "multilabel", "face_x1": "continuous", "temperature": "regression"}
    assert isinstance(data.tasks["door_open"], BinaryTask)
    assert isinstance(data.tasks["shirt_type"], ClassificationTask)
    assert data.tasks["shirt_type"].class_names == ["blue", "green", "red"]
    assert isinstance(data.tasks["facial"], MultilabelTask) and data.tasks["facial"].class_names == ["beard",
                                                                                                     "glasses"]
    assert isinstance(data.tasks["face_x1"], BoundedRegressionTask)
    assert (data.tasks["face_x1"].lo, data.tasks["face_x1"].hi) == (0.1, 0.9)
    assert isinstance(data.tasks["temperature"], RegressionTask)
    assert data.available["door_open"].tolist() == [True, True, False, True]
    assert data.available["facial"].tolist() == [[True, True], [True, True], [False, False], [True, True]]
    assert data.targets["temperature"][0].item() == pytest.approx(-3.2)
    assert data.inputs["x"][2].item() == 2.0
    for column in outputs:
        assert data.targets[column].shape == data.available[column].shape
        assert torch.isfinite(data.targets[column].float()).all()


def test_build_tokens_and_custom_factories():
    df = pd.DataFrame({"x": [[0.0, 1.0], [2.0, 3.0]], "pos": [[0, 1, 2], nan]})
    conv = Converters()
    data = conv.build(df, input_cols="x", output_cols="pos")
    assert data.types == {"x": "array", "pos": "tokens"}
    assert isinstance(data.tasks["pos"], TokenClassificationTask) and data.tasks["pos"].n_classes == 3
    assert data.available["pos"].tolist() == [[True] * 3, [False] * 3]

    conv = Converters()
    conv.values.col_mapping["pos"] = lambda: TokensConverter(n_classes=10)
    conv.task.col_mapping["pos"] = lambda name, c: TokenClassificationTask(name, c.n_classes, in_features=8)
    data = conv.build(df, input_cols="x", output_cols="pos")
    assert data.tasks["pos"].n_classes == 10 and data.tasks["pos"].in_features == 8


def test_state_json_round_trip_maps_labels_identically(tmp_path):
    state_path = tmp_path / "deep" / "dir" / "converters.json"
    conv = Converters()
    first = conv.build(security_df(), input_cols=["x"],
                       output_cols=["shirt_type", "facial", "face_x1", "door_open"], state_path=str(state_path))
    saved = json.loads(state_path.read_text())
    assert saved["columns"]["shirt_type"]["state"]["class_names"] == ["blue", "green", "red"]
    assert saved["columns"]["face_x1"]["state"] == {"lo": 0.1, "hi": 0.9}
    assert saved["columns"]["x"]["type"] == "numeric"
    assert not [p for p in os.listdir(state_path.parent) if p.endswith(".tmp")]

    # A later frame: fewer classes, another order, a narrower value range, one column dropped.
    later = pd.DataFrame({"x": [1.0, 2.0, 3.0], "shirt_type": ["red", "green", nan], "facial": ["glasses", nan, ""],
                          "face_x1": [0.5, 0.3, 0.4]}, index=["a", "b", "c"])
    second = Converters().build(later, input_cols=["x"], output_cols=["facial", "face_x1", "shirt_type"],
                                state_path=str(state_path))
    assert second.targets["shirt_type"].tolist() == [2, 1, 0]
    assert second.tasks["shirt_type"].class_names == first.tasks["shirt_type"].class_names
    assert second.tasks["facial"].class_names == ["beard", "glasses"]
    assert second.targets["facial"].tolist() == [[0, 1], [0, 0], [0, 0]]
    assert (second.tasks["face_x1"].lo, second.tasks["face_x1"].hi) == (0.1, 0.9)
    assert second.targets["face_x1"][0].item() == pytest.approx(0.5)
    assert list(second.row_ids) == ["a", "b", "c"]

    # A new column is fitted and added; the dropped column's state stays in the file.
    later["temperature"] = [1.0, -2.0, nan]
    Converters().build(later, input_cols=["x"], output_cols=["temperature"], state_path=str(state_path))
    columns = json.loads(state_path.read_text())["columns"]
    assert {"temperature", "door_open", "shirt_type"} <= set(columns)

    # A class the state never saw is an error, not a silent remap.
    with pytest.raises(ConverterError, match="shirt_type.*'purple'"):
        Converters().build(later.assign(shirt_type=["purple", "red", "red"]), input_cols=["x"],
                           output_cols=["shirt_type"], state_path=str(state_path))


def test_corrupted_state_file_is_an_error_naming_it(tmp_path):
    state_path = tmp_path / "converters.json"
    state_path.write_text("{not json")
    with pytest.raises(ConverterError, match="converters.json"):
        Converters().build(security_df(), input_cols=["x"], output_cols=["door_open"], state_path=str(state_path))
    state_path.write_text("[1, 2]")
    with pytest.raises(ConverterError, match="converters.json"):
        Converters().build(security_df(), input_cols=["x"], output_cols=["door_open"], state_path=str(state_path))


# -- inputs ----------------------------------------------------------------------------------------------

def write_images(tmp_path):
    png, jpg = tmp_path / "a.png", tmp_path / "b.JPG"
    Image.new("RGB", (5, 4), (255, 0, 0)).save(png)
    Image.new("L", (5, 4), 128).save(jpg, format="JPEG")
    return str(png), str(jpg)


def test_images_load_lazily_as_chw_float(tmp_path):
    png, jpg = write_images(tmp_path)
    df = pd.DataFrame({"img": [png, jpg], "door_open": [1, 0]})
    data = Converters().build(df, input_cols=["img"], output_cols=["door_open"])
    assert data.types["img"] == "img"
    column = data.inputs["img"]
    os.remove(jpg)  # still builds: files are read on access only
    first = column[0]
    assert first.shape == (3, 4, 5) and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert torch.allclose(first[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ConverterError, match="img.*b.JPG"):
        column[1]


def test_images_missing_and_unreadable_files(tmp_path):
    png, _ = write_images(tmp_path)
    missing = [str(tmp_path / f"missing{i}.png") for i in range(7)]
    df = pd.DataFrame({"photo": [png] + missing, "y": [0, 1] * 4})
    with pytest.raises(ConverterError, match="photo.*7 file") as e:
        Converters().build(df, input_cols=["photo"], output_cols=["y"])
    assert "missing4.png" in str(e.value) and "missing5.png" not in str(e.value)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    data = Converters().build(pd.DataFrame({"photo": [str(broken)], "y": [1]}), input_cols=["photo"],
                              output_cols=[])
    with pytest.raises(ConverterError, match="photo.*broken.png"):
        data.inputs["photo"][0]


def test_array_input_shapes_and_errors():
    df = pd.DataFrame({"feat": [np.zeros((2, 3)), np.ones((2, 3))], "y": [0, 1]})
    data = Converters().build(df, input_cols=["feat"], output_cols=["y"])
    assert data.inputs["feat"].shape == (2, 2, 3) and data.inputs["feat"].dtype == torch.float32
    with pytest.raises(ConverterError, match=r"feat.*\(2,\).*\(3,\)"):
        Converters().build(pd.DataFrame({"feat": [[1, 2], [1, 2, 3]], "y": [0, 1]}), input_cols=["feat"],
                           output_cols=["y"])
    with pytest.raises(ConverterError, match="feat.*row 'r2'"):
        Converters().build(pd.DataFrame({"feat": [[1.0, 2.0], [nan, 1.0]], "y": [0, 1]}, index=["r1", "r2"]),
                           input_cols=["feat"], output_cols=["y"])


def test_numeric_input_nan_and_inf_name_column_and_row():
    with pytest.raises(ConverterError, match="age.*7"):
        Converters().build(pd.DataFrame({"age": [1.0, nan], "y": [0, 1]}, index=[5, 7]), input_cols=["age"],
                           output_cols=["y"])
    with pytest.raises(ConverterError, match="age.*row 5"):
        Converters().build(pd.DataFrame({"age": [np.inf, 2.0], "y": [0, 1]}, index=[5, 7]), input_cols=["age"],
                           output_cols=["y"])


def test_multiple_input_columns():
    df = pd.DataFrame({"a": [1, 0], "b": [2.5, -1.0], "y": [0, 1]})
    data = Converters().build(df, input_cols=["a", "b"], output_cols=["y"])
    assert data.types["a"] == data.types["b"] == "numeric"
    assert data.inputs["b"].tolist() == [2.5, -1.0]


# -- build validation ------------------------------------------------------------------------------------

def test_build_rejects_bad_frames_and_columns():
    df = security_df()
    with pytest.raises(ConverterError, match="empty"):
        Converters().build(df.iloc[:0], input_cols=["x"], output_cols=["door_open"])
    dup = pd.concat([df[["x"]], df[["x"]]], axis=1)
    with pytest.raises(ConverterError, match="duplicate column.*'x'"):
        Converters().build(dup, input_cols=["x"])
    with pytest.raises(ConverterError, match=r"output column 'nope' is not in the DataFrame.*door_open"):
        Converters().build(df, input_cols=["x"], output_cols=["nope"])
    with pytest.raises(ConverterError, match="input column 'nope'"):
        Converters().build(df, input_cols=["nope"], output_cols=["door_open"])
    with pytest.raises(ConverterError, match="door_open.*both input and output"):
        Converters().build(df, input_cols=["x", "door_open"], output_cols=["door_open"])
    with pytest.raises(ConverterError, match=r"'all_nan' has no labels \(all values are NaN\)"):
        Converters().build(df.assign(all_nan=nan), input_cols=["x"], output_cols=["all_nan"])


def test_build_rejects_unknown_and_wrong_role_types():
    df = security_df()
    conv = Converters()
    conv.type.type_mapping["door_open"] = "boolean"
    with pytest.raises(ConverterError, match=r"door_open.*'boolean'.*known types.*'binary'"):
        conv.build(df, input_cols=["x"], output_cols=["door_open"])
    conv = Converters()
    conv.type.type_mapping["door_open"] = "img"
    with pytest.raises(ConverterError, match="output column 'door_open'.*input-only"):
        conv.build(df, input_cols=["x"], output_cols=["door_open"])
    conv = Converters()
    conv.type.type_mapping["x"] = "binary"
    with pytest.raises(ConverterError, match="input column 'x'.*output-only"):
        conv.build(df, input_cols=["x"], output_cols=["door_open"])
    # Strings in an input column are a categorical input now (they used to be refused).
    assert Converters().build(df, input_cols=["shirt_type"], output_cols=["door_open"]).types["shirt_type"] == \
        "categorical"


def test_type_mapping_conflicting_with_saved_state_is_an_error(tmp_path):
    state_path = str(tmp_path / "converters.json")
    Converters().build(security_df(), input_cols=["x"], output_cols=["temperature"], state_path=state_path)
    conv = Converters()
    conv.type.type_mapping["temperature"] = "continuous"
    with pytest.raises(ConverterError, match="temperature.*'continuous'.*'regression'"):
        conv.build(security_df(), input_cols=["x"], output_cols=["temperature"], state_path=state_path)
