"""Tabular inputs as people have them: strings / pandas category / bools, NaN in numbers, dates; binary labels
from any two values with a positive class; ``Project.describe()``."""
import contextlib
import functools
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.data import BinaryConverter, Converters, ConverterError, NumericInput
from dnn_cool_catalyst.data.inputs import CategoricalInput
from dnn_cool_catalyst.tabular import ONE_HOT_MAX_CODES, tabular_model, tabular_project

nan = np.nan
ISLANDS = ["Biscoe", "Dream", "Torgersen"]


def penguins(n=60, seed=0):
    """Penguin-like rows: a string island, a category-dtype colony, a numeric mass with gaps, a bool, a text sex."""
    rng = np.random.default_rng(seed)
    island = rng.choice(ISLANDS, n)
    mass = rng.normal(4000, 500, n).round()
    mass[::7] = nan
    colony = pd.Categorical(rng.choice(["c%d" % i for i in range(12)], n))
    sex = np.where((island == "Dream") ^ (rng.random(n) < 0.1), "female", "male").astype(object)
    sex[::9] = nan
    return pd.DataFrame({"island": island, "colony": colony, "mass": mass, "tagged": rng.random(n) < 0.5,
                         "sex": sex})


def project_for(df, tmp_path, **kwargs):
    converters = Converters(missing_inputs="indicator")
    converters.positive_class["sex"] = "female"
    project = Project(df, input_col=["island", "colony", "mass", "tagged"], output_col=["sex"],
                      converters=converters, project_dir=str(tmp_path), **kwargs)

    @project.add_flow
    def penguin(flow, x, out):
        out += flow.sex(x.features)
        return out

    return project


def test_columns_as_people_have_them_convert_to_batched_tensors(tmp_path):
    df = penguins()
    project = project_for(df, tmp_path)
    data = project.data
    assert data.types == {"island": "categorical", "colony": "categorical", "mass": "numeric",
                          "tagged": "numeric", "sex": "binary"}
    island = data.inputs["island"]
    assert isinstance(island, torch.Tensor) and island.dtype == torch.int64 and island.shape == (60,)
    vocab = data.converters["island"].vocab
    assert vocab == ISLANDS
    assert island.tolist() == [2 + vocab.index(v) for v in df["island"]]
    assert data.inputs["colony"].dtype == torch.int64 and int(data.inputs["colony"].min()) >= 2
    mass = data.inputs["mass"]
    assert mass.dtype == torch.float32 and mass.shape == (60, 2)
    median = float(np.nanmedian(df["mass"]))
    missing = df["mass"].isna().to_numpy()
    missing_rows = torch.tensor(missing)
    assert mass[missing_rows, 0].tolist() == [median] * int(missing.sum())
    assert mass[:, 1].tolist() == missing.astype(float).tolist()
    assert mass[~missing_rows, 0].tolist() == df["mass"][~missing].tolist()
    # bools are 0/1 numbers; under missing_inputs="indicator" every numeric input has its was-missing column
    assert data.inputs["tagged"].tolist() == [[float(v), 0.0] for v in df["tagged"]]
    assert data.targets["sex"].tolist() == (df["sex"] == "female").astype(float).tolist()
    assert data.available["sex"].tolist() == df["sex"].notna().tolist()
    saved = json.loads((tmp_path / "converters.json").read_text())["columns"]
    assert saved["island"]["state"] == {"vocab": ISLANDS}
    assert saved["mass"]["state"] == {"missing": "indicator", "median": median}
    assert saved["sex"]["state"] == {"labels": ["male", "female"], "positive": "female", "label_kind": "str"}


def test_string_inputs_end_to_end_then_unseen_category_maps_to_unknown_once(tmp_path):
    torch.manual_seed(0)
    df = penguins()
    project = project_for(df, tmp_path)
    model = tabular_model(project, hidden=8)
    assert "c0" not in model.embeddings and "c1" in model.embeddings  # 3 islands one-hot, 12 colonies embedded
    assert project.data.converters["colony"].num_codes > ONE_HOT_MAX_CODES
    runner = project.runner(model, "run", batch_size=16)
    runner.train(num_epochs=2, lr=1e-2)
    counts = runner.infer()["splits"]
    assert sum(counts.values()) == len(df)
    runner.tune()
    table = runner.evaluate()
    accuracy = table[table.metric_name == "accuracy"].metric_res.iloc[0]
    assert 0.0 <= accuracy <= 1.0 and table.num_samples.iloc[0] > 0

    # A later frame: a new island and a NaN island; the saved vocabulary is reloaded, not refitted.
    later = penguins(10, seed=1)
    later["island"] = ["Biscoe", "Atlantis", "Dream", "Atlantis", None, "Torgersen", "Mars", "Biscoe", "Dream",
                       "Biscoe"]
    later.loc[3, "mass"] = nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = project_for(later, tmp_path)
    messages = [str(w.message) for w in caught if "unknown" in str(w.message)]
    assert len(messages) == 1
    assert "'island'" in messages[0] and "'Atlantis'" in messages[0] and "'Mars'" in messages[0]
    assert again.data.inputs["island"].tolist() == [2, 0, 3, 0, 1, 4, 0, 2, 3, 2]
    # The median is the one fitted on the first frame, not on the later rows.
    assert again.data.inputs["mass"][3].tolist() == [float(np.nanmedian(df["mass"])), 1.0]
    logits = model({c: v[:10] for c, v in again.data.inputs.items()})["logits"]["sex"]
    assert torch.isfinite(logits).all() and logits.shape[0] == 10


def test_nan_in_numeric_input_is_refused_by_default_with_the_option_named(tmp_path):
    df = pd.DataFrame({"age": [1.0, nan, 3.0], "y": [0, 1, 0]})
    with pytest.raises(ConverterError, match="numeric input column 'age' has 1 missing value.*missing='indicator'"):
        Converters().build(df, "age", "y")
    converters = Converters()
    converters.values.col_mapping["age"] = functools.partial(NumericInput, missing="indicator")
    assert converters.build(df, "age", "y").inputs["age"].tolist() == [[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]


def test_missing_indicator_through_tabular_project(tmp_path):
    pd.DataFrame({"age": [20.0, nan, 50, 65], "retired": ["no", "no", "yes", "yes"]}).to_csv(
        tmp_path / "people.csv", index=False)
    (tmp_path / "flows.py").write_text("def people(flow, x, out):\n    out += flow.retired(x.features)\n"
                                       "    return out\n")
    project = tabular_project(str(tmp_path / "people.csv"), ["age"], ["retired"], flows=str(tmp_path / "flows.py"),
                              project_dir=str(tmp_path), missing="indicator")
    assert project.data.inputs["age"][1].tolist() == [50.0, 1.0]
    assert project.data.converters["retired"].positive == "yes"
    batch = next(iter(torch.utils.data.DataLoader(project.get_dataset(), batch_size=4)))
    assert tabular_model(project)(batch["inputs"])["logits"]["retired"].shape == (4,)


@pytest.mark.parametrize("bad, message", [
    (lambda: Converters(missing_inputs="median"), "missing must be one of \\['error', 'indicator'\\]"),
    (lambda: NumericInput(missing="zero"), "missing must be one of"),
])
def test_bad_missing_option_is_an_error(bad, message):
    with pytest.raises(ConverterError, match=message):
        bad()


@pytest.mark.parametrize("column", [
    pd.Series(pd.date_range("2024-01-01", periods=3)),
    pd.Series([pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"), None], dtype=object),
])
def test_datetime_input_is_a_clear_error_saying_what_to_do(column):
    df = pd.DataFrame({"when": column, "y": [0, 1, 0]})
    with pytest.raises(ConverterError, match="input column 'when' holds dates.*dt.year.*elapsed days"):
        Converters().build(df, "when", "y")
    with pytest.raises(ConverterError, match="output column 'when' holds dates"):
        Converters().build(df, "y", "when")


@pytest.mark.parametrize("labels, positive, expected_positive", [
    (["yes", "no", "yes", nan], None, "yes"),
    (["male", "female", "male", nan], None, "male"),  # no positive word: the second in sorted order
    (["male", "female", "male", nan], "female", "female"),
    ([36, 60, 36, nan], None, 60),
    ([36, 60, 36, nan], 36, 36),
    ([True, False, True, None], None, 1),
    ([1, 0, 1, nan], 0, 0),
])
def test_binary_labels_from_any_two_values(labels, positive, expected_positive, tmp_path):
    df = pd.DataFrame({"x": [0.0, 1, 2, 3], "label": labels})
    converters = Converters()
    converters.type.type_mapping["label"] = "binary"  # two distinct integers are guessed as a 2-class category
    if positive is not None:
        converters.positive_class["label"] = positive
    data = converters.build(df, "x", "label", state_path=str(tmp_path / "converters.json"))
    assert data.types["label"] == "binary"
    converter = data.converters["label"]
    assert converter.positive == expected_positive
    expected = [float(v == expected_positive) for v in labels[:3]] + [0.0]
    assert data.targets["label"].tolist() == expected
    assert data.available["label"].tolist() == [True, True, True, False]
    # Reloaded from converters.json by a fresh Converters: same positive class, same targets.
    again = Converters().build(df, "x", "label", state_path=str(tmp_path / "converters.json"))
    assert again.converters["label"].positive == expected_positive
    assert again.targets["label"].tolist() == expected


def test_positive_class_errors(tmp_path):
    df = pd.DataFrame({"x": [0.0, 1, 2], "sex": ["male", "female", nan]})
    converters = Converters()
    converters.positive_class["sex"] = "other"
    with pytest.raises(ConverterError, match="binary column 'sex': positive class 'other' is not one of its labels "
                                             "\\['female', 'male'\\]"):
        converters.build(df, "x", "sex")
    converters = Converters()
    converters.positive_class["nope"] = "x"
    with pytest.raises(ConverterError, match="positive_class names column\\(s\\) \\['nope'\\] that are not output"):
        converters.build(df, "x", "sex")
    state = str(tmp_path / "converters.json")
    Converters().build(df, "x", "sex", state_path=state)  # positive: male (default)
    converters = Converters()
    converters.positive_class["sex"] = "female"
    with pytest.raises(ConverterError, match="'female' differs from the saved positive class 'male'"):
        converters.build(df, "x", "sex", state_path=state)
    with pytest.raises(ConverterError, match="3 distinct labels \\['male', 'female', 'other'\\]"):
        BinaryConverter().fit(pd.Series(["male", "female", "other"]), "sex")


def test_categorical_input_state_is_validated_when_loaded(tmp_path):
    df = pd.DataFrame({"island": ["a", "b", "a"], "y": [0, 1, 0]})
    state = tmp_path / "converters.json"
    Converters().build(df, "island", "y", state_path=str(state))
    saved = json.loads(state.read_text())
    saved["columns"]["island"]["state"] = {"vocab": "ab"}
    state.write_text(json.dumps(saved))
    with pytest.raises(ConverterError, match="input column 'island': bad state in .*converters.json.*vocab"):
        Converters().build(df, "island", "y", state_path=str(state))


def test_describe_shows_every_column_and_whether_its_type_was_guessed(tmp_path):
    df = penguins(20)
    converters = Converters(missing_inputs="indicator")
    converters.type.type_mapping["colony"] = "categorical"
    project = Project(df, input_col=["island", "colony", "mass"], output_col=["sex", "tagged"],
                      converters=converters, project_dir=str(tmp_path))
    table = project.describe().set_index("column")
    assert list(table.index) == ["island", "colony", "mass", "sex", "tagged"]
    assert table.loc["island", "type"] == "categorical" and table.loc["island", "type_source"] == "guessed"
    assert table.loc["colony", "type_source"] == "given"
    assert table.loc["island", "classes"] == 3
    assert table.loc["mass", "missing"] == int(df["mass"].isna().sum())
    assert table.loc["mass", "missing_inputs"] == "indicator"
    assert table.loc["sex", "task"] == "binary" and table.loc["sex", "positive"] == "male"
    assert table.loc["sex", "labels"] == int(df["sex"].notna().sum())
    assert table.loc["sex", "missing"] == int(df["sex"].isna().sum())
    assert table.loc["tagged", "positive"] == 1
    again = Project(df, input_col=["island", "colony", "mass"], output_col=["sex", "tagged"],
                    converters=Converters(missing_inputs="indicator"), project_dir=str(tmp_path))
    assert again.describe().set_index("column").loc["island", "type_source"] == "saved"


def test_readme_tabular_example_prints_the_table_it_shows(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    # The block that prints describe() and shows the printed table in its comments.
    code = next(c for c in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "project.describe()" in c and "\n# column" in c)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    shown = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert printed.getvalue().splitlines() == shown


def test_tabular_model_with_only_categorical_inputs(tmp_path):
    df = pd.DataFrame({"colour.name": ["red", "blue", "red", "green"] * 3, "big": [1, 0, 1, 0] * 3})
    project = Project(df, input_col="colour.name", output_col="big", project_dir=str(tmp_path))

    @project.add_flow
    def colours(flow, x, out):
        out += flow.big(x.features)
        return out

    model = tabular_model(project, hidden=4)
    batch = next(iter(torch.utils.data.DataLoader(project.get_dataset(), batch_size=12)))
    assert model.mean.numel() == 0 and model.categorical == {"colour.name": 5}
    assert model(batch["inputs"])["logits"]["big"].shape == (12,)


def test_mlp_standardises_with_the_training_split_only(tmp_path):
    """Validation and test rows must not shape the inputs: a runner refits the MLP's mean and spread on its
    training rows (the statistics of all rows differ here, because the held-out rows are shifted by 1,000)."""
    values = np.arange(200, dtype=np.float64)
    df = pd.DataFrame({"size": values, "big": (values % 2).astype(int)})
    project = Project(df, input_col="size", output_col="big", project_dir=str(tmp_path))

    @project.add_flow
    def sizes(flow, x, out):
        out += flow.big(x.features)
        return out

    model = tabular_model(project, hidden=4)
    runner = project.runner(model, runner_name="run")
    held_out = np.concatenate([runner.splits["valid"], runner.splits["test"]])
    project.data.inputs["size"][torch.as_tensor(held_out)] += 1000.0
    before = model.mean.clone()
    runner = project.runner(model, runner_name="run")  # fits again, now that the held-out rows differ
    train = project.data.inputs["size"][torch.as_tensor(runner.splits["train"])].double()
    assert model.mean.item() == pytest.approx(train.mean().item(), rel=1e-5)
    assert model.std.item() == pytest.approx(train.std(unbiased=False).item(), rel=1e-5)
    assert model.mean.item() == pytest.approx(before.item(), rel=1e-5)  # the training rows did not change
    everything = project.data.inputs["size"].double()
    assert abs(everything.mean().item() - model.mean.item()) > 100
