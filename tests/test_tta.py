"""Test-time augmentation: averaged activations, box coordinates mirrored back, the manifest's record, errors."""
import json
import os

import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
from dnn_cool_catalyst.synthetic.security import BODY_BOX, FACE_BOX, security_project
from dnn_cool_catalyst.synthetic.security_model import security_model

BOXES = {"face": dict(zip(("x1", "y1", "w", "h"), FACE_BOX)), "body": dict(zip(("x1", "y1", "w", "h"), BODY_BOX))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    project = security_project(str(tmp_path_factory.mktemp("tta")), n_samples=80, seed=1)
    torch.manual_seed(0)
    flow = project.get_full_flow()
    runner = project.runner(security_model(flow, width=4, features=8), "tta", batch_size=16, box_tasks=BOXES)
    runner.train(num_epochs=1)
    return runner


def stored(runner, split="valid"):
    return {task: {k: v.clone() for k, v in fields.items()} for task, fields in runner._stored(split)[3].items()}


def manifest(runner, split):
    with open(os.path.join(runner.infer_dir, split, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def test_identity_tta_equals_plain_inference(trained):
    trained.infer(splits=["valid"])
    plain = stored(trained)
    assert trained.stored_tta("valid") == [] and manifest(trained, "valid")["tta"] == []
    trained.infer(splits=["valid"], tta=["identity"])
    tta = stored(trained)
    assert trained.stored_tta("valid") == ["identity"]
    for task in plain:
        assert torch.allclose(tta[task]["activations"], plain[task]["activations"], atol=1e-5), task
        assert torch.equal(tta[task]["mask_decoded"], plain[task]["mask_decoded"]), task
        assert torch.equal(tta[task]["index"], plain[task]["index"])


def test_hflip_tta_is_the_mean_of_the_original_and_mirrored_predictions(trained):
    trained.infer(splits=["valid"], tta=["hflip"])
    tta = stored(trained)
    assert manifest(trained, "valid")["tta"] == ["hflip(p=1.0)"]
    positions = next(iter(tta.values()))["index"]
    images = trained.dataset.batch(positions)["inputs"]["img"]
    model = trained.model.cpu().eval()
    flow = trained.flow
    with torch.no_grad():
        original = model({"img": images})["logits"]
        mirrored = model({"img": images.flip(-1)})["logits"]

    def act(logits, name):
        return flow.tasks[name].activation(flow.tasks[name].check_logits(logits[name], len(positions)))

    for name in ("camera_blocked", "door_open", "shirt_type", "facial_characteristics"):
        expected = (act(original, name) + act(mirrored, name)) / 2
        assert torch.allclose(tta[name]["activations"], expected, atol=1e-5), name
    for x1, y1, w, h in (FACE_BOX, BODY_BOX):
        back = 1 - act(mirrored, x1) - act(mirrored, w)  # the mirrored view's box, mapped into the original image
        assert torch.allclose(tta[x1]["activations"], (act(original, x1) + back) / 2, atol=1e-5)
        for unmoved in (y1, w, h):
            expected = (act(original, unmoved) + act(mirrored, unmoved)) / 2
            assert torch.allclose(tta[unmoved]["activations"], expected, atol=1e-5), unmoved
    # Tuning and evaluation read the averaged outputs like any others.
    assert trained.evaluate(loader="valid").shape[0] > 0


def test_tta_errors(trained, tmp_path):
    with pytest.raises(RunnerError, match=r"unknown augmentation 'rotate90'"):
        trained.infer(splits=["valid"], tta=["rotate90"])
    with pytest.raises(RunnerError, match="at least one augmentation"):
        trained.infer(splits=["valid"], tta=[])
    # The same run without box_tasks: its regression tasks might be positions.
    runner = type(trained)(trained.model, trained.flow, trained.run_dir, dataset=trained.dataset, batch_size=16)
    with pytest.raises(RunnerError, match=r"geometric augmentation \['vflip'\].*'face_x1'"):
        runner.infer(splits=["valid"], tta=["vflip"])
    df = numbers_frame(60, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=str(tmp_path))
    numbers = project.runner(numbers_model(define_flows(project), hidden=4), "numbers")
    with pytest.raises(RunnerError, match=r"flow 'is_interesting' has no image input column.*\['number'\]"):
        numbers.infer(tta=["hflip"])
    with pytest.raises(RunnerError, match=r"'number' is not an image column"):
        numbers.train(num_epochs=1, augment={"number": ["noise"]})


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [os.path.join(REPO, "configs", "security.yml"), os.path.join(REPO, "configs", "security_augment.yml")]


def test_yaml_config_trains_with_augment_and_balance_and_infers_with_tta(tmp_path):
    from dnn_cool_catalyst.config.run import run_config

    overrides = [f"project.project_dir={tmp_path / 'proj'}", "project.n_samples=80", "run.0.num_epochs=1",
                 "runner.model.width=4", "runner.model.features=8"]
    results = run_config(CONFIGS, overrides, echo=None)
    run_dir = tmp_path / "proj" / "security_augment"
    for split in ("train", "valid", "test"):
        with open(run_dir / "infer" / split / "manifest.json", encoding="utf-8") as f:
            assert json.load(f)["tta"] == ["hflip(p=1.0)"]
    assert (run_dir / "evaluation_test_gt.csv").exists() and results[-1].shape[0] > 0


def test_yaml_config_with_an_unknown_augmentation_exits_with_the_error(tmp_path, capsys):
    from dnn_cool_catalyst.config.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--config", *CONFIGS, "--set", f"project.project_dir={tmp_path / 'proj'}", "project.n_samples=40",
              "run.0.augment.img=[hflip, blur]"])
    assert exit_info.value.code == 2
    assert "unknown augmentation 'blur'" in capsys.readouterr().err
    assert not (tmp_path / "proj" / "security_augment" / "checkpoints").exists()


def test_tune_records_the_tta_and_evaluate_warns_on_a_mismatch(trained):
    trained.infer(splits=["valid", "test"], tta=["vflip"])
    trained.tune(min_samples=0, min_per_class=0)
    with open(os.path.join(trained.run_dir, "tuned.json"), encoding="utf-8") as f:
        assert json.load(f)["tta"] == ["vflip(p=1.0)"]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.evaluate(loader="test")
    trained.infer(splits=["test"])
    with pytest.warns(UserWarning, match=r"tuned on outputs inferred with tta=\['vflip\(p=1.0\)'\].*'test' outputs "
                                         r"were inferred with tta=\[\]"):
        trained.evaluate(loader="test")


def test_a_manifest_with_a_malformed_tta_field_is_refused_naming_it(trained):
    trained.infer(splits=["valid"], tta=["hflip"])
    path = os.path.join(trained.infer_dir, "valid", "manifest.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["tta"] = "hflip"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    with pytest.raises(RunnerError, match=r"field 'tta' must be a list of test-time augmentation names"):
        trained.evaluate(loader="valid")
    with pytest.raises(RunnerError, match=r"field 'tta'"):
        trained.stored_tta("valid")
    trained.infer(splits=["valid"])
    assert trained.stored_tta("valid") == []
