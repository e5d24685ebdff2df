"""Issue 25, item 2: train() without num_epochs runs a step budget, early stopping waits while a task is still at
its trivial baseline, and both survive resume."""
import os
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.run.checkpoints import read_checkpoint
from dnn_cool_catalyst.callbacks.early_stopping import BaselineAwareEarlyStopping, trivial_baselines
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.training import epoch_budget
from dnn_cool_catalyst.run.fitted import train_split_labels
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def make_runner(project_dir, name="run", batch_size=32):
    torch.manual_seed(0)
    df = numbers_frame(240, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=16), name, batch_size=batch_size)


@pytest.fixture
def small_budget(monkeypatch):
    """A budget of 24 steps, at least 1 epoch: a few epochs on the 168 training rows, so the tests stay fast."""
    monkeypatch.setattr(epoch_budget, "STEP_BUDGET", 24)
    monkeypatch.setattr(epoch_budget, "MIN_EPOCHS", 1)


def last_epoch(runner):
    return read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.last.pth"))["epoch_step"]


@pytest.mark.parametrize("batch_size, steps, epochs", [(32, 6, 4), (64, 3, 8)])
def test_without_num_epochs_the_step_budget_sets_the_epochs(tmp_path, small_budget, batch_size, steps, epochs):
    runner = make_runner(tmp_path, batch_size=batch_size)
    assert len(runner.split_loader("train")) == steps  # 168 training rows
    runner.train(verbose=False)
    assert runner.epoch_step == epochs == last_epoch(runner)
    # patience derived from the epochs: at its floor here, so these short runs are not cut short
    assert runner.callbacks["_early_stopping"].patience == epoch_budget.MIN_PATIENCE


def test_explicit_num_epochs_and_patience_win(tmp_path, small_budget):
    runner = make_runner(tmp_path)
    runner.train(num_epochs=2, early_stopping_patience=7, verbose=False)
    assert runner.epoch_step == 2 and runner.callbacks["_early_stopping"].patience == 7
    with pytest.raises(RunnerError, match="early_stopping_patience must be a positive int or None"):
        make_runner(tmp_path, "other").train(early_stopping_patience=0)


def test_a_resumed_run_computes_the_same_total(tmp_path, small_budget):
    runner = make_runner(tmp_path)
    runner.train(num_epochs=2, verbose=False)  # as if interrupted after 2 of the budget's 4 epochs
    assert last_epoch(runner) == 2
    resumed = make_runner(tmp_path)
    resumed.train(resume=True, verbose=False)
    assert resumed.epoch_step == 4 == last_epoch(resumed)


def test_the_validation_baselines_are_the_majority_labels_of_the_valid_split(tmp_path):
    runner = make_runner(tmp_path)
    baselines = runner._valid_baselines()
    targets, available = train_split_labels(runner.dataset, runner.flow, runner.splits["valid"])
    masks = runner.flow.graph.masks(targets, available, len(runner.splits["valid"]))
    for name, path in runner.flow.task_paths.items():
        kind = runner.flow.tasks[name].type_name
        labels = targets[name][masks[name]]
        if kind == "binary":
            share = float(labels.float().mean())
            assert baselines[f"{path}/accuracy"] == pytest.approx(max(share, 1 - share))
        elif kind == "classification":
            counts = torch.bincount(labels.long())
            assert baselines[f"{path}/accuracy"] == pytest.approx(float(counts.max()) / labels.numel())
    assert any(key.endswith("/accuracy") for key in baselines)


def test_conditional_tasks_count_only_where_their_condition_holds(tmp_path):
    df = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "member": [1, 1, 1, 0, 0, 0],
                       "plan": ["a", "b", "b", "a", "a", "a"]})
    project = Project(df, input_col=["x"], output_col=["member", "plan"], project_dir=str(tmp_path))

    def flows(flow, x, out):
        out += flow.member(x.features)
        out += flow.plan(x.features) | out.member
        return out

    project.add_flow(flows)
    baselines = trivial_baselines(project.get_full_flow(), project.data.targets, project.data.available)
    # plan's majority among members is "b" (2 of 3); over all rows it would be "a" (4 of 6)
    assert baselines == {"member/accuracy": 0.5, "plan/accuracy": pytest.approx(2 / 3)}


def run_epochs(stopper, scores):
    """Feeds ``(loss, accuracy)`` per epoch; returns the epoch (1-based) at which it asked to stop, or None."""
    runner = SimpleNamespace(need_early_stop=False, epoch_metrics={})
    stopper.on_experiment_start(runner)
    for epoch, (loss, accuracy) in enumerate(scores, start=1):
        runner.epoch_metrics = {"valid": {"loss": loss, "hit/accuracy": accuracy}}
        stopper.on_epoch_end(runner)
        if runner.need_early_stop:
            return epoch
    return None


def test_early_stopping_is_held_while_a_task_is_at_its_baseline_and_released_after():
    def stopper(baselines):
        return BaselineAwareEarlyStopping(patience=2, loader_key="valid", metric_key="loss", minimize=True,
                                          baselines=baselines)

    # the loss stops improving after epoch 1; the task answers the majority class (0.8) until epoch 6
    scores = [(1.0, 0.8)] + [(1.1, 0.8)] * 4 + [(1.2, 0.85), (1.2, 0.9)]
    assert run_epochs(stopper({}), scores) == 3  # plain patience
    assert run_epochs(stopper({"hit/accuracy": 0.8}), scores) == 6  # held through epoch 5, released at 6
    assert run_epochs(stopper({"hit/accuracy": 0.8}), scores[:5]) is None
    # ... but not for ever: 3 x patience epochs without improvement end the hold
    assert run_epochs(stopper({"hit/accuracy": 0.8}), [(1.0, 0.8)] + [(1.1, 0.8)] * 10) == 7
    # a NaN score (no validation sample) does not hold the run
    assert run_epochs(stopper({"hit/accuracy": 0.8}), [(1.0, 0.8), (1.1, float("nan")), (1.1, float("nan"))]) == 3
