"""runner.export(format="onnx") runs in ONNX Runtime without this library and matches the torch export; skipped
unless the optional ``onnx`` extra (onnx, onnxruntime, onnxscript) is installed."""
import json
import os

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export_kit import raw_rows, reference, run_deployed, trained_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("export_onnx"))


def test_onnx_runtime_matches_the_torch_export_and_the_library(run, tmp_path):
    project, runner = run
    onnx_path = runner.export(format="onnx")
    torch_path = runner.export(format="torch")
    meta = json.loads(open(onnx_path + ".json").read())
    assert meta["format"] == "onnx" and meta["input_names"] == ["a", "b", "city"]
    assert meta["output_names"][:2] == ["value.camera_blocked", "applies.camera_blocked"]
    values, applies, positions = reference(runner, "test")
    rows = raw_rows(project.df, positions)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "torch").mkdir()
    from_onnx = run_deployed(onnx_path, rows, tmp_path / "onnx", fmt="onnx")
    from_torch = run_deployed(torch_path, rows, tmp_path / "torch", fmt="torch")
    for name in runner.flow.tasks:
        assert torch.equal(from_onnx["applies"][name], from_torch["applies"][name]), name
        assert torch.equal(from_onnx["applies"][name], applies[name]), name
        assert from_onnx["values"][name].dtype == from_torch["values"][name].dtype, name
        assert torch.allclose(from_onnx["values"][name], from_torch["values"][name], atol=1e-5, rtol=0), name


def test_onnx_export_refuses_an_existing_file(run):
    _, runner = run
    path = os.path.join(runner.run_dir, "export", "model.onnx")
    if not os.path.exists(path):
        runner.export(format="onnx")
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        runner.export(format="onnx", overwrite=False)
