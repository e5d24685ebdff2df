import glob
import json
import os
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
from dnn_cool_catalyst.tuning import best_threshold


def make_runner(project_dir, name="exp", samples=240, seed=0, **kwargs):
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=seed)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=16), name, batch_size=32, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runner = make_runner(tmp_path_factory.mktemp("run"))
    runner.train(num_epochs=2, lr=3e-3)
    runner.infer()
    return runner


def stored(runner, split, task):
    return {k: v.numpy() for k, v in runner._stored(split)[3][task].items()}


def test_train_writes_checkpoints_splits_and_tensorboard_scalars(trained):
    from helpers import read_scalar_tags

    for name in ("runner.best.pth", "runner.last.pth"):
        assert os.path.exists(os.path.join(trained.checkpoint_dir, name))
    splits = json.load(open(os.path.join(trained.run_dir, "splits.json")))["splits"]
    assert sorted(sum(splits.values(), [])) == list(range(240))
    scalars = {}
    for path in glob.glob(os.path.join(trained.tensorboard_dir, "valid", "*")):
        scalars.update(read_scalar_tags(path))
    assert len(scalars["numerical_flow.is_even/accuracy/epoch"]) == 2  # one per epoch
    assert "loss/numerical_flow.multiple_three/epoch" in scalars


def test_validation_metrics_are_dataset_level_and_equal_sklearn(trained):
    # The metrics callback's last validation values must equal sklearn on the masked validation arrays
    # computed from the same (last) weights.
    trained.load_checkpoint("last")
    trained.infer(splits=["valid"], checkpoint="last")
    data = stored(trained, "valid", "is_even")
    mask = data["mask_gt"]
    pred = (data["activations"][mask] >= 0.5).astype(float)
    logged = trained.experiment_metrics[max(trained.experiment_metrics)]["valid"]
    assert logged["numerical_flow.is_even/accuracy"] == pytest.approx(accuracy_score(data["targets"][mask], pred))
    assert logged["numerical_flow.is_even/f1"] == pytest.approx(f1_score(data["targets"][mask], pred))
    trained.infer()


def test_tune_equals_exact_search_on_masked_validation_outputs(trained):
    # min_samples/min_per_class off: this small validation split is below the default limits (issue 13, point 6).
    params = trained.tune(min_samples=0, min_per_class=0)
    data = stored(trained, "valid", "predict_positive")
    mask = data["mask_gt"]
    expected = best_threshold(data["activations"][mask].astype(np.float64), data["targets"][mask])
    assert params["numerical_flow.predict_positive"]["threshold"] == pytest.approx(expected.threshold)
    saved = json.load(open(os.path.join(trained.run_dir, "tuned.json")))
    assert saved["params"] == params
    trained.flow.tasks["predict_positive"].threshold = 0.5
    assert trained.load_tuned() == params
    assert trained.flow.tasks["predict_positive"].threshold == pytest.approx(expected.threshold)


@pytest.mark.parametrize("gating", ["gt", "decoded"])
def test_evaluate_num_samples_equal_mask_counts(trained, gating):
    trained.tune()
    trained.infer(splits=["test"])  # stored decoded masks now use the tuned thresholds too
    table = trained.evaluate(gating=gating)
    assert list(table.columns) == ["task_path", "metric_name", "metric_res", "num_samples"]
    assert os.path.exists(os.path.join(trained.run_dir, f"evaluation_test_{gating}.csv"))
    for name, path in trained.flow.task_paths.items():
        data = stored(trained, "test", name)
        mask = data["mask_gt"] if gating == "gt" else data["mask_decoded"] & data["available"]
        assert set(table[table.task_path == path].num_samples) == {int(mask.sum())}
    threshold = trained.flow.tasks["is_even"].threshold
    data = stored(trained, "test", "is_even")
    mask = data["mask_gt"] if gating == "gt" else data["mask_decoded"] & data["available"]
    pred = (data["activations"][mask] >= threshold).astype(float)
    row = table[(table.task_path == "numerical_flow.is_even") & (table.metric_name == "f1")]
    assert row.metric_res.item() == pytest.approx(f1_score(data["targets"][mask], pred))


def test_infer_and_predict_run_the_model_without_autograd(trained):
    # With autograd on, every output kept over a split holds its batch's graph: the demo's infer grew by ~0.5 MB
    # per frame.
    modes = []
    handle = trained.model.register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
    try:
        trained.infer(splits=["valid"])
        trained.predict(numbers_frame(10, seed=3))
    finally:
        handle.remove()
    assert len(modes) >= 2 and not any(modes)


def test_loader_losses_are_the_same_from_numbers_read_on_the_cpu_and_from_device_tensors(tmp_path, monkeypatch):
    from dnn_cool_catalyst.callbacks.criterion import FlowCriterionCallback

    metrics = []
    for read_on_cpu in (True, False):
        monkeypatch.setattr(FlowCriterionCallback, "read_on_cpu", read_on_cpu)
        runner = make_runner(tmp_path / str(read_on_cpu))
        runner.train(num_epochs=1, lr=3e-3, verbose=False)
        metrics.append({loader: {k: v for k, v in values.items() if k.startswith("loss")}
                        for loader, values in runner.epoch_metrics.items() if loader != "_epoch_"})
    assert metrics[0]["valid"]["loss"] > 0 and len(metrics[0]["valid"]) == 5  # loss + one per task
    assert metrics[0].keys() == metrics[1].keys()
    for loader in metrics[0]:
        assert metrics[0][loader] == pytest.approx(metrics[1][loader], rel=1e-6), loader


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = make_runner(tmp_path / "a")
    straight.train(num_epochs=3, lr=3e-3, early_stopping_patience=10)
    interrupted = make_runner(tmp_path / "b")
    interrupted.train(num_epochs=1, lr=3e-3, early_stopping_patience=10)
    resumed = make_runner(tmp_path / "b")  # a new process would rebuild everything like this
    resumed.train(num_epochs=3, lr=3e-3, early_stopping_patience=10, resume=True)
    a = torch.load(os.path.join(straight.checkpoint_dir, "runner.last.pth"), weights_only=True)
    b = torch.load(os.path.join(resumed.checkpoint_dir, "runner.last.pth"), weights_only=True)
    assert a["epoch_step"] == b["epoch_step"] == 3
    for key, value in a["model_state_dict"].items():
        assert torch.allclose(value, b["model_state_dict"][key], atol=1e-6), key


def test_misuse_gives_clear_errors(tmp_path):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match="no inference outputs.*run runner.infer\\(\\) first"):
        runner.tune()
    with pytest.raises(RunnerError, match="no checkpoint.*train first"):
        runner.infer()
    with pytest.raises(RunnerError, match="unknown split 'holdout'"):
        runner.split_loader("holdout")
    with pytest.raises(RunnerError, match="no tuned parameters"):
        runner.load_tuned()


def test_run_directory_of_another_flow_is_refused_and_left_alone(tmp_path):
    make_runner(tmp_path)
    before = open(tmp_path / "exp" / "flow.json").read()
    df = numbers_frame(100)
    project = Project(df, "number", ["is_even"], project_dir=tmp_path / "other")

    @project.add_flow
    def evens(flow, x, out):
        out += flow.is_even(x.features)

    with pytest.raises(RunnerError, match="belongs to a different flow"):
        from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner
        DnnCoolSupervisedRunner(numbers_model(evens), evens, run_dir=tmp_path / "exp")
    assert open(tmp_path / "exp" / "flow.json").read() == before


def test_empty_split_and_evaluate_without_tuning(tmp_path):
    runner = make_runner(tmp_path, split_fractions=(0.9, 0.1, 0.0))
    with pytest.raises(RunnerError, match="split 'test' has no samples"):
        runner.split_loader("test")
    runner.train(num_epochs=1)
    runner.infer(splits=["valid"])
    with pytest.warns(UserWarning, match="no tuned parameters"):
        table = runner.evaluate(loader="valid")
    assert len(table) == 16


def test_model_output_lacking_a_task_names_it(tmp_path):
    runner = make_runner(tmp_path)

    class Partial(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs):
            out = self.inner(inputs)
            out["logits"].pop("multiple_three")
            return out

    runner.model = Partial(runner.model)
    with pytest.raises(Exception, match="no logits for task 'numerical_flow.multiple_three'"):
        runner.train(num_epochs=1)
