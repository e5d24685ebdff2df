"""runner.export(format="torch"): one torch.export artifact that a fresh interpreter without this library loads
and runs, giving the decoded values and decoded gating the library computes in-process."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst.export import ExportError
from dnn_cool_catalyst.runners import RunnerError

from export_kit import frame, raw_rows, reference, run_deployed, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    _, runner = run
    path = runner.export()
    return path, json.loads(open(path + ".json").read())


@pytest.fixture(scope="module")
def deployed(run, exported, tmp_path_factory):
    """The artifact run on the test rows in a fresh interpreter without the library, and the in-process
    reference ``(values, applies, positions)``."""
    project, runner = run
    values, applies, positions = reference(runner, "test")
    out = run_deployed(exported[0], raw_rows(project.df, positions), tmp_path_factory.mktemp("deployed"))
    return out, (values, applies, positions)


def test_export_writes_the_artifact_and_its_json_in_the_run_dir(run, exported):
    _, runner = run
    path, meta = exported
    assert path == os.path.join(runner.run_dir, "export", "model.pt2") and os.path.getsize(path) > 0
    assert [spec["name"] for spec in meta["inputs"]] == ["a", "b", "city"]
    a, b, city = meta["inputs"]
    assert (a["dtype"], a["shape"]) == ("float32", ["batch"])
    assert b["median"] == pytest.approx(float(np.nanmedian(frame()["b"])))
    assert (city["dtype"], city["vocab"], city["codes"]) == (
        "int64", ["Oslo", "Paris", "Rome"], {"unknown": 0, "missing": 1, "first_vocab": 2})
    outputs = meta["outputs"]
    assert list(outputs) == ["camera_blocked", "door_open", "level", "door_locked", "face", "temperature"]
    assert outputs["camera_blocked"]["labels"] == ["no", "yes"]
    # level: integers with missing labels, which pandas holds as float64: its labels are as the column holds them
    assert outputs["level"]["class_names"] == [1.0, 2.0, 3.0] and type(outputs["level"]["class_names"][0]) is float
    assert outputs["door_open"]["labels"] == [0.0, 1.0] and type(outputs["door_open"]["labels"][0]) is float
    assert outputs["face"]["class_names"] == ["beard", "glasses"]
    assert outputs["face"]["shape"] == ["batch", 2]
    assert outputs["temperature"]["path"] == "face_flow.temperature"
    assert outputs["door_locked"]["condition"] == "(door_open & level == 2.0)"
    tuned = json.loads(open(os.path.join(runner.run_dir, "tuned.json")).read())["params"]
    assert outputs["door_open"]["decoder_params"] == tuned["door_open"]
    assert meta["tuned"] is True
    assert outputs["temperature"]["fitted"] == runner.fitted_targets["face_flow.temperature"]


def test_artifact_without_the_library_equals_the_in_process_decoding(run, deployed):
    _, runner = run
    got, (values, applies, _) = deployed
    for name in runner.flow.tasks:
        assert torch.equal(got["applies"][name], applies[name]), name
        if name == "temperature":
            assert torch.allclose(got["values"][name], values[name], atol=1e-4)
        else:
            assert torch.equal(got["values"][name], values[name]), name


def test_gating_inside_the_artifact_is_the_flows_on_its_own_predictions(exported, deployed):
    """~out.camera_blocked, the chain door_open | level == 2, the nested flow under door_open and a class-valued
    multilabel condition inside it: each mask as the flow defines it, and none of them trivial on the test rows."""
    _, meta = exported
    out, (_, _, positions) = deployed
    v, m = out["values"], out["applies"]
    level_2 = meta["outputs"]["level"]["class_names"].index(2)
    beard = meta["outputs"]["face"]["class_names"].index("beard")
    expected = {
        "camera_blocked": torch.ones_like(m["camera_blocked"]),
        "door_open": v["camera_blocked"] == 0,
        "door_locked": m["door_open"] & (v["door_open"] == 1) & (v["level"] == level_2),
        "face": m["door_open"] & (v["door_open"] == 1),
        "temperature": m["door_open"] & (v["door_open"] == 1) & (v["face"][:, beard] == 1),
    }
    for name, mask in expected.items():
        assert torch.equal(m[name], mask), name
    for name in ("door_open", "door_locked", "face", "temperature"):
        assert 0 < int(m[name].sum()) < len(positions), f"{name}: mask is trivial on the test rows"


def test_unknown_and_missing_categories_and_nan_in_an_imputed_column(run, exported):
    """The artifact's preprocessing equals the converters': unknown -> code 0, NaN in 'b' -> median + flag."""
    project, runner = run
    path, _ = exported
    program = torch.export.load(path).module()
    rows = project.df.iloc[:4]
    codes = torch.tensor([0, 1, 2, 3])  # unknown, missing, Oslo, Paris
    inputs = {"a": torch.tensor(rows["a"].to_numpy(), dtype=torch.float32),
              "b": torch.tensor([np.nan, 0.5, np.nan, -1.0], dtype=torch.float32), "city": codes}
    median = float(project.data.converters["b"].median)
    model = runner.inference_model().eval()  # the exported one: each task at its own best epoch
    with torch.no_grad():
        features = {"a": torch.stack([inputs["a"], torch.zeros(4)], 1),
                    "b": torch.tensor([[median, 1.0], [0.5, 0.0], [median, 1.0], [-1.0, 0.0]]), "city": codes}
        logits = model(features)["logits"]
    got = program(inputs)
    for name, task in runner.flow.tasks.items():
        assert torch.allclose(got["values"][name].float(), task.decode(logits[name]).float(), atol=1e-4), name


def test_batch_size_is_dynamic(exported, run):
    project, _ = run
    path, _ = exported
    program = torch.export.load(path).module()
    for n in (1, 3, 100):
        rows = project.df.iloc[:n]
        out = program({"a": torch.tensor(rows["a"].to_numpy(), dtype=torch.float32),
                       "b": torch.tensor(rows["b"].to_numpy(), dtype=torch.float32),
                       "city": torch.full((n,), 2, dtype=torch.int64)})
        assert out["values"]["face"].shape == (n, 2) and out["applies"]["door_locked"].shape == (n,)


def test_errors_before_any_work(run, tmp_path):
    _, runner = run
    with pytest.raises(ExportError, match=r"format must be one of \['torch', 'onnx'\], got 'tflite'"):
        runner.export(str(tmp_path / "m.pt2"), format="tflite")
    with pytest.raises(ExportError, match=r"writes a '\.pt2' file"):
        runner.export(str(tmp_path / "m.onnx"), format="torch")
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="is a file, not a directory"):
        runner.export(str(tmp_path / "file" / "m.pt2"))
    (tmp_path / "taken.pt2").write_bytes(b"keep me")
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        runner.export(str(tmp_path / "taken.pt2"))
    assert (tmp_path / "taken.pt2").read_bytes() == b"keep me"
    with pytest.raises(RunnerError, match=r"no checkpoint .*runner\.nosuch\.pth; train first"):
        runner.export(str(tmp_path / "m.pt2"), checkpoint="nosuch")
    with pytest.raises(RunnerError, match="train first"):  # nothing made for a refused export
        runner.export(str(tmp_path / "new" / "m.pt2"), checkpoint="nosuch")
    assert sorted(os.listdir(tmp_path)) == ["file", "taken.pt2"]


def test_export_makes_missing_directories_and_replaces_only_its_own_default(run, tmp_path, monkeypatch):
    _, runner = run
    monkeypatch.chdir(tmp_path)
    assert runner.export("deploy/v1/model.pt2") == "deploy/v1/model.pt2"
    assert sorted(os.listdir(tmp_path / "deploy" / "v1")) == ["model.pt2", "model.pt2.json"]
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        runner.export("deploy/v1/model.pt2")
    default = runner.export()
    assert runner.export() == default  # the run's own export/ folder: a second export replaces it
    with pytest.raises(ExportError, match="already exists"):
        runner.export(overwrite=False)


def test_overwrite_replaces_the_artifact(run, tmp_path):
    _, runner = run
    target = tmp_path / "m.pt2"
    target.write_bytes(b"old")
    (tmp_path / "m.pt2.json").write_text("{}")
    assert runner.export(str(target), overwrite=True) == str(target)
    assert json.loads((tmp_path / "m.pt2.json").read_text())["format"] == "torch"
    torch.export.load(str(target))
    assert sorted(os.listdir(tmp_path)) == ["m.pt2", "m.pt2.json"]  # no temporary file left


class DataDependent(torch.nn.Module):
    """A model that branches in Python on a tensor value: torch.export cannot trace it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.gate = Branching()

    def forward(self, inputs):
        return self.inner({**inputs, "a": self.gate(inputs["a"])})


class Branching(torch.nn.Module):
    def forward(self, x):
        return x * 2 if float(x.sum()) > 0 else x


class RootBranching(torch.nn.Module):
    """The same mistake in the model's own forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, inputs):
        if float(inputs["a"].sum()) > 1e9:
            return None
        return self.inner(inputs)


@pytest.mark.parametrize("wrapper, where", [(DataDependent, r"in submodule 'gate' \(Branching\)"),
                                            (RootBranching, r"in the model's own forward \(RootBranching\)")])
def test_untraceable_model_names_where_tracing_failed_and_writes_nothing(run, tmp_path, wrapper, where):
    from dnn_cool_catalyst.export import check_target, export_model

    project, runner = run
    batch = next(iter(runner.split_loader("train", batch_size=4)))
    target = check_target(str(tmp_path / "m.pt2"), "torch", False)
    with pytest.raises(ExportError, match=rf"could not trace it {where}: .*use torch\.where"):
        export_model(wrapper(runner.model), runner.flow, batch["inputs"], target, "torch",
                     converters=project.data.converters)
    assert os.listdir(tmp_path) == []


def test_export_without_tune_uses_default_thresholds_and_warns(tmp_path):
    _, runner = trained_run(tmp_path, tune=False, epochs=1)
    with pytest.warns(UserWarning, match="no tuned parameters"):
        path = runner.export(format="torch")
    meta = json.loads(open(path + ".json").read())
    assert meta["outputs"]["door_open"]["decoder_params"] == {"threshold": 0.5}
    assert meta["outputs"]["face"]["decoder_params"] == {"thresholds": [0.5, 0.5]}
    assert meta["tuned"] is False


def test_readme_loading_function_gives_labels_without_the_library(run, exported, tmp_path):
    from dnn_cool_catalyst.tasks.base import class_labels

    from export_kit import run_readme_snippet

    project, runner = run
    path, _ = exported
    values, applies, positions = reference(runner, "test")
    answers = run_readme_snippet(path, raw_rows(project.df, positions), tmp_path)
    assert set(answers) == set(runner.flow.tasks)
    for name, task in runner.flow.tasks.items():
        for i, got in enumerate(answers[name]):
            if not bool(applies[name][i]):
                assert got is None, (name, i)
                continue
            value = values[name][i]
            if task.type_name == "binary":
                assert got == task.typed_labels()[int(value)], (name, i)
            elif task.type_name == "classification":
                assert got == class_labels(task)[int(value)], (name, i)
            elif task.type_name == "multilabel":
                assert got == [n for n, on in zip(task.class_names, value.tolist()) if on], (name, i)
            else:
                assert got == pytest.approx(float(value), abs=1e-4), (name, i)
    # level is an integer column with missing labels, which pandas holds as float64: its labels are 1.0, 2.0, 3.0
    assert {type(v) for v in answers["level"] if v is not None} == {float}
    assert None in answers["door_locked"] and set(answers["camera_blocked"]) <= {"no", "yes"}


def test_deployed_labels_equal_runner_predict_on_the_same_rows(run, exported, tmp_path):
    """What a deployment answers from the export alone (README loader, library blocked) is what
    ``runner.predict`` answers in-process: labels, units, and None exactly where a task does not apply."""
    from export_kit import INPUTS, run_readme_snippet

    project, runner = run
    path, _ = exported
    _, _, positions = reference(runner, "test")
    predicted = runner.predict(project.df.iloc[positions][INPUTS])
    answers = run_readme_snippet(path, raw_rows(project.df, positions), tmp_path)
    for name, task in runner.flow.tasks.items():
        column = predicted[name]
        for got, want in zip(answers[name], column.tolist()):
            if got is None:
                assert want is pd.NA, name
            elif task.type_name == "regression":
                assert got == pytest.approx(want, abs=1e-3), name
            else:
                assert got == want, name
        assert any(v is None for v in answers[name]) == bool(column.isna().any()), name


def test_the_artifact_holds_no_training_row(run, exported):
    """torch.export saves the batch it traced with (``example_inputs``): the artifact must not carry real rows."""
    import zipfile

    project, _ = run
    path, _ = exported
    assert torch.export.load(path).example_inputs is None
    with zipfile.ZipFile(path) as archive:
        contents = b"".join(archive.read(name) for name in archive.namelist())
    contents += open(path, "rb").read()
    values = project.df[["a", "b"]].to_numpy(dtype=np.float32).ravel()
    found = [float(v) for v in values if np.isfinite(v) and np.float32(v).tobytes() in contents]
    assert found == []
