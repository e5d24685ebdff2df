"""Issue 13, points 6 and 7: model selection on a chosen validation metric, tuning that refuses too few samples,
and honest (NaN) metrics over zero samples."""
import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from catalyst import dl

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.run.checkpoints import read_checkpoint
from dnn_cool_catalyst.callbacks.selection import ModelSelectionCallback, selection_key, task_mean
from dnn_cool_catalyst.measures.evaluation import tune_flow
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def make_runner(project_dir, name="run", samples=240, **kwargs):
    torch.manual_seed(0)
    df = numbers_frame(samples, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=16), name, batch_size=32, **kwargs)


def valid_history(runner, key):
    return [runner.experiment_metrics[epoch]["valid"][key] for epoch in sorted(runner.experiment_metrics)]


@pytest.mark.parametrize("valid_metric, pattern", [
    ("is_odd/accuracy", r"no task path 'is_odd'; tasks are \['is_interesting', 'numerical_flow.is_even'"),
    ("numerical_flow.is_even/auc", r"task 'numerical_flow.is_even' has no metric 'auc'; its metrics are "
                                   r"\['accuracy', 'f1', 'precision', 'recall'\]"),
    ("accuracy", r"no task path ''.*valid metrics are \['loss', 'task_mean', 'loss/is_interesting'"),
    ("loss/is_odd", r"no task path 'loss'"),
    (3, "valid_metric must be a string, got int"),
])
def test_unknown_valid_metric_is_refused_before_training(tmp_path, valid_metric, pattern):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match=pattern):
        runner.train(num_epochs=1, valid_metric=valid_metric)
    assert not os.path.exists(runner.checkpoint_dir)


def test_a_maximised_task_metric_drives_best_checkpoint_early_stopping_and_scheduler(tmp_path):
    runner = make_runner(tmp_path)
    key = "numerical_flow.is_even/accuracy"
    runner.train(num_epochs=5, lr=3e-3, valid_metric=key, early_stopping_patience=10)
    history = valid_history(runner, key)
    assert valid_history(runner, selection_key(key)) == history
    best_epoch = int(np.argmax(history)) + 1  # first maximum, as the sorted storage keeps it
    assert read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.best.pth"))["epoch_step"] == best_epoch
    storage = json.load(open(os.path.join(runner.checkpoint_dir, "runner.storage.json")))
    assert storage["metric_key"] == "model_selection/" + key and storage["minimize"] is False
    stopper = runner.callbacks["_early_stopping"]
    assert stopper.metric_key == selection_key(key) and stopper.is_better(0.9, 0.8)  # maximising
    assert runner.scheduler.mode == "max"
    # Resuming must select on the same metric (the saved best epoch and early-stopping record are its scores).
    with pytest.raises(RunnerError, match=r"resume=True with valid_metric='loss', but this run selected its best "
                                          r"epoch on 'numerical_flow.is_even/accuracy'"):
        make_runner(tmp_path).train(num_epochs=6, resume=True)
    make_runner(tmp_path).train(num_epochs=6, resume=True, valid_metric=key, early_stopping_patience=10)


def test_a_task_loss_is_minimised_and_task_mean_is_logged(tmp_path):
    runner = make_runner(tmp_path)
    runner.train(num_epochs=3, lr=3e-3, valid_metric="loss/numerical_flow.is_even")
    history = valid_history(runner, "loss/numerical_flow.is_even")
    best_epoch = int(np.argmin(history)) + 1
    assert read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.best.pth"))["epoch_step"] == best_epoch
    assert runner.scheduler.mode == "min"
    valid = runner.epoch_metrics["valid"]
    accuracies = [valid[f"{path}/accuracy"] for path in runner.flow.task_paths.values()]
    assert valid["task_mean"] == pytest.approx(sum(accuracies) / len(accuracies))


def test_task_mean_skips_tasks_without_samples_and_nan_selects_as_worst():
    from helpers import numbers_flows

    flow = numbers_flows()[0]
    metrics = {"is_interesting/accuracy": 0.5, "numerical_flow.is_even/accuracy": float("nan"),
               "numerical_flow.predict_positive/accuracy": 1.0}
    assert task_mean(flow, metrics) == pytest.approx(0.75)
    assert math.isnan(task_mean(flow, {}))

    class FakeRunner:
        loader_metrics = {}

    for minimize, worst in ((False, -math.inf), (True, math.inf)):
        runner = FakeRunner()
        runner.loader_metrics = {"numerical_flow.is_even/accuracy": float("nan")}
        ModelSelectionCallback(flow, "numerical_flow.is_even/accuracy", minimize).on_loader_end(runner)
        assert runner.loader_metrics["model_selection/numerical_flow.is_even/accuracy"] == worst
        assert math.isnan(runner.loader_metrics["numerical_flow.is_even/accuracy"])  # logged honestly
        # Catalyst's early stopping never sees the worst value as an improvement on a real score.
        stopper = dl.EarlyStoppingCallback(patience=1, loader_key="valid", metric_key="model_selection/x",
                                           minimize=minimize)
        assert not stopper.is_better(worst, 0.5 if not minimize else 10.0)


def test_a_task_without_valid_or_test_samples_is_nan_and_training_still_works(tmp_path):
    runner = make_runner(tmp_path)
    available = runner.dataset.data.available["multiple_three"]
    for split in ("valid", "test"):
        available[torch.as_tensor(runner.splits[split])] = False
    key = "numerical_flow.multiple_three/accuracy"
    runner.train(num_epochs=2, lr=3e-3, valid_metric=key, early_stopping_patience=1)
    valid = runner.epoch_metrics["valid"]
    assert math.isnan(valid[key]) and math.isnan(valid["loss/numerical_flow.multiple_three"])
    assert valid[selection_key(key)] == -math.inf
    assert math.isfinite(valid["loss"]) and math.isfinite(valid["task_mean"])
    assert os.path.exists(os.path.join(runner.checkpoint_dir, "runner.best.pth"))
    runner.infer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = runner.evaluate("test")
    rows = table[table.task_path == "numerical_flow.multiple_three"]
    assert len(rows) == 4 and (rows.num_samples == 0).all() and rows.metric_res.isna().all()
    # is_interesting has test samples of both classes: accuracy and recall are defined (precision is NaN where
    # nothing was predicted positive, as scikit-learn's zero_division=nan).
    interesting = table[table.task_path == "is_interesting"].set_index("metric_name").metric_res
    assert not interesting[["accuracy", "recall"]].isna().any()


def test_tune_keeps_the_default_threshold_below_min_samples_and_says_why(tmp_path):
    runner = make_runner(tmp_path)
    runner.train(num_epochs=1, lr=3e-3)
    runner.infer(splits=["valid"])
    with pytest.warns(UserWarning) as caught:
        params = runner.tune(min_samples=30, min_per_class=5)
    messages = [str(w.message) for w in caught]
    report = json.load(open(os.path.join(runner.run_dir, "tuned.json")))
    assert report["min_samples"] == 30 and report["min_per_class"] == 5
    masks = {name: runner._stored("valid")[3][name]["mask_gt"] for name in runner.flow.tasks}
    for name, path in runner.flow.task_paths.items():
        n = int(masks[name].sum())
        entry = report["report"][path]["threshold"]
        assert entry["num_samples"] == n
        if n < 30:
            assert entry["tuned"] is False and params[path]["threshold"] == 0.5
            assert f"only {n} samples (min_samples=30)" in entry["reason"]
            assert any(f"task '{path}'" in m and "min_samples=30" in m for m in messages)
    assert any(int(m.sum()) < 30 for m in masks.values())  # the case is exercised
    # With the limits off, the same outputs are tuned.
    params = runner.tune(min_samples=0, min_per_class=0)
    assert any(p["threshold"] != 0.5 for p in params.values())
    with pytest.raises(RunnerError, match="min_samples must be an int >= 0, got -1"):
        runner.tune(min_samples=-1)


def test_tune_flow_requires_a_few_samples_of_each_class():
    from helpers import numbers_flows

    flow = numbers_flows()[0]
    n = 60
    logits = {name: torch.linspace(-3, 3, n) for name in flow.tasks}
    targets = {name: torch.zeros(n) for name in flow.tasks}
    for t in targets.values():
        t[-3:] = 1.0  # three positives only
    available = {name: torch.ones(n, dtype=torch.bool) for name in flow.tasks}
    with pytest.warns(UserWarning, match="only 3 positive and 57 negative samples"):
        params, report = tune_flow(flow, logits, targets, available, min_samples=30, min_per_class=5)
    assert report["is_interesting"]["threshold"]["tuned"] is False
    params, report = tune_flow(flow, logits, targets, available, min_samples=30, min_per_class=3)
    assert report["is_interesting"]["threshold"]["tuned"] is True
