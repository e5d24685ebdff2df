"""train(task_selection=...): each task at the epoch of its own lowest validation loss, through infer, predict and
export; the files behind it, resume, and the runs that must not select."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from catalyst.core import Callback, CallbackOrder

from dnn_cool_catalyst import Project, TaskFlow
from dnn_cool_catalyst.callbacks.task_checkpoints import TASKS_FILE, TaskCheckpointCallback
from dnn_cool_catalyst.errors import RunnerError
from dnn_cool_catalyst.graph.selected import TaskSelectedModel
from dnn_cool_catalyst.run import artifacts
from dnn_cool_catalyst.tabular import tabular_model
from dnn_cool_catalyst.tasks import BinaryTask


def table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    a, b, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    df = pd.DataFrame({"a": a, "b": b, "c": rng.normal(size=n)})
    df["big"] = rng.integers(0, 2, size=n)                       # noise: its best epoch comes early
    df["size"] = 3 * a - 2 * b + 0.1 * noise                      # clean regression: keeps improving
    df.loc[df["big"] == 0, "size"] = np.nan                       # exists only where big == 1
    df["kind"] = np.where(b > 0.3, "x", np.where(b < -0.3, "y", "z"))
    return df


def project_of(tmp_path, df=None):
    project = Project(table() if df is None else df, input_col=["a", "b", "c"], output_col=["big", "size", "kind"],
                      project_dir=str(tmp_path))

    @project.add_flow
    def things(flow, x, out):
        out += flow.big(x.features)
        out += flow.size(x.features) | out.big
        out += flow.kind(x.features)
        return out

    return project


class ValidLosses(Callback):
    """Every epoch's validation loss per task path."""

    def __init__(self):
        super().__init__(order=CallbackOrder.External)
        self.epochs = []

    def on_epoch_end(self, runner):
        self.epochs.append({k[len("loss/"):]: float(v) for k, v in runner.epoch_metrics["valid"].items()
                            if k.startswith("loss/")})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("selected")
    project = project_of(folder)
    torch.manual_seed(0)
    runner = project.runner(tabular_model(project, hidden=64), runner_name="run", batch_size=32)
    losses = ValidLosses()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=12, early_stopping_patience=12, verbose=False, callbacks={"losses": losses}, lr=1e-2)
    return project, runner, losses


def test_each_task_uses_the_epoch_of_its_own_lowest_validation_loss(trained):
    project, runner, losses = trained
    selection = json.load(open(os.path.join(runner.checkpoint_dir, TASKS_FILE)))
    paths = project.get_full_flow().task_paths
    for name, path in paths.items():
        history = [epoch[path] for epoch in losses.epochs]
        best = int(np.argmin(history)) + 1
        assert selection["tasks"][name] == f"runner.task.{best:04d}.pth", (name, history)
        assert selection["losses"][name] == pytest.approx(min(history))
    kept = sorted(f for f in os.listdir(runner.checkpoint_dir) if f.startswith("runner.task."))
    assert kept == sorted(set(selection["tasks"].values()))  # every named file, and nothing else
    assert len(kept) >= 2, "the fixture should make the tasks choose different epochs"


def test_infer_predict_and_each_task_match_the_weights_of_its_epoch(trained):
    project, runner, _ = trained
    runner.infer(splits=["test"])
    selection = json.load(open(os.path.join(runner.checkpoint_dir, TASKS_FILE)))["tasks"]
    test_rows = runner.splits["test"]
    batch = project.get_dataset().batch(test_rows)
    stored = artifacts.load_split(runner.infer_dir, "test", list(runner.flow.tasks),
                                  artifacts.read_manifest(runner.infer_dir, "test", list(runner.flow.tasks)))
    predicted = runner.predict(project.df.iloc[test_rows], proba=True)
    copy = tabular_model(project, hidden=64)
    copy.fit_inputs(project.get_dataset(), runner.splits["train"])
    for name, file in selection.items():
        copy.load_state_dict(torch.load(os.path.join(runner.checkpoint_dir, file), weights_only=True))
        expected = copy.eval()(batch["inputs"])["logits"][name]
        assert torch.allclose(stored[name]["logits"], expected, atol=1e-5), name
    assert isinstance(runner.inference_model(), TaskSelectedModel)
    activation = torch.sigmoid(stored["big"]["logits"]).numpy()
    assert np.allclose(predicted["proba_big"].to_numpy(dtype=float), activation, atol=1e-5)


def test_gated_masks_come_from_the_selected_parent():
    def gate(flow, x, out):
        out += flow.door_open(x.features)
        out += flow.door_locked(x.features) | out.door_open
        return out

    flow = TaskFlow.from_function(gate, [BinaryTask("door_open", 2), BinaryTask("door_locked", 2)])
    opens, closed = flow.torch(), flow.torch()
    for module, bias in ((opens, 20.0), (closed, -20.0)):
        head = module.heads["door_open"]
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.constant_(head.bias, bias)
    x = {"features": torch.randn(3, 2)}
    model = TaskSelectedModel(flow.graph, [closed, opens], {"door_open": 1, "door_locked": 0}).eval()
    out = model(x)
    assert out["masks"]["door_locked"].tolist() == [True, True, True]  # door_open from `opens`, not `closed`
    assert torch.equal(out["logits"]["door_locked"], closed.eval()(x)["logits"]["door_locked"])
    with pytest.raises(ValueError, match="every task needs"):
        TaskSelectedModel(flow.graph, [opens], {"door_open": 0})


def test_stale_outputs_when_the_selection_changes(trained):
    _, runner, _ = trained
    runner.infer(splits=["valid"])
    path = os.path.join(runner.checkpoint_dir, TASKS_FILE)
    original = open(path).read()
    selection = json.loads(original)
    selection["losses"]["big"] += 1.0  # any change of the file: a resumed run that moved a task
    try:
        with open(path, "w") as f:
            json.dump(selection, f)
        with pytest.raises(RunnerError, match="stale"):
            runner._stored("valid")
    finally:
        with open(path, "w") as f:
            f.write(original)
    runner._stored("valid")


def test_checkpoints_carry_the_bests_and_resume_restores_them(tmp_path):
    project = project_of(tmp_path)
    torch.manual_seed(1)
    runner = project.runner(tabular_model(project, hidden=8), runner_name="run", batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=3, early_stopping_patience=10, verbose=False)
        last = torch.load(os.path.join(runner.checkpoint_dir, "runner.last.pth"), weights_only=True)
        first = json.load(open(os.path.join(runner.checkpoint_dir, TASKS_FILE)))
        assert {name: f"runner.task.{epoch:04d}.pth" for name, (_, epoch) in last["task_selection"].items()} == \
            first["tasks"]
        callback = TaskCheckpointCallback(project.get_full_flow(), runner.checkpoint_dir)
        callback.restore_checkpoint_fields(last)
        assert {n: e for n, (_, e) in callback.best.items()} == {n: e for n, (_, e) in
                                                                   last["task_selection"].items()}
        losses = ValidLosses()
        runner.train(num_epochs=5, early_stopping_patience=10, verbose=False, resume=True, callbacks={"l": losses})
    after = json.load(open(os.path.join(runner.checkpoint_dir, TASKS_FILE)))
    for name in after["tasks"]:
        resumed_best = min(epoch[project.get_full_flow().task_paths[name]] for epoch in losses.epochs)
        assert after["losses"][name] == pytest.approx(min(first["losses"][name], resumed_best))


def test_runs_that_do_not_select(tmp_path):
    project = project_of(tmp_path)
    runner = project.runner(tabular_model(project, hidden=8), runner_name="run", batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=2, verbose=False)
        assert os.path.exists(os.path.join(runner.checkpoint_dir, TASKS_FILE))
        runner.train(num_epochs=2, verbose=False, task_selection=False)  # a new run: the old selection goes
    assert not os.path.exists(os.path.join(runner.checkpoint_dir, TASKS_FILE))
    assert not [f for f in os.listdir(runner.checkpoint_dir) if f.startswith("runner.task.")]
    runner.load_checkpoint("best")
    assert runner.inference_model() is runner.model
    with pytest.raises(RunnerError, match="task_selection must be"):
        runner.train(num_epochs=1, verbose=False, task_selection="yes")
    with pytest.raises(RunnerError, match="not available with stages"):
        runner.train(verbose=False, task_selection=True, stages=[{"num_epochs": 1}])


def test_auto_selects_only_for_models_that_declare_it(tmp_path):
    from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

    project = Project(numbers_frame(120, seed=0), "number", ["is_interesting", "is_even", "predict_positive",
                                                            "multiple_three"], project_dir=str(tmp_path))
    runner = project.runner(numbers_model(define_flows(project), hidden=4), "exp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=2, verbose=False)
    assert not os.path.exists(os.path.join(runner.checkpoint_dir, TASKS_FILE))
