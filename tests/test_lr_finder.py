"""runner.lr_find(): the range test's curve and suggestion, early stop on divergence, TensorBoard curve, and a
runner (weights, loss weights, optimizer, grads, flags, random state, run directory) left exactly as it was."""
import copy
import glob
import hashlib
import math
import os

import numpy as np
import pytest
import torch

from dnn_cool_catalyst.runners import RunnerError
from test_stages import make_runner


def files_of(run_dir):
    """{relative path: sha256} of every file under ``run_dir``."""
    found = {}
    for root, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, run_dir)] = hashlib.sha256(f.read()).hexdigest()
    return found


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_find_suggests_a_rate_in_range_and_leaves_the_runner_as_it_was(tmp_path):
    runner = make_runner(tmp_path, loss_weights="uncertainty")
    runner.train(num_epochs=1)
    runner.model.eval()
    list(runner.model.parameters())[0].requires_grad_(False)
    grads = [None if p.grad is None else p.grad.clone() for p in runner.model.parameters()]
    model_state = copy.deepcopy(runner.model.state_dict())
    loss_state = copy.deepcopy(runner.flow_loss.state_dict())
    optimizer_state = copy.deepcopy(runner.optimizer.state_dict())
    files = files_of(runner.run_dir)
    rng = torch.get_rng_state()

    history, suggested = runner.lr_find(start_lr=1e-5, end_lr=1.0, num_steps=40)

    assert list(history.columns) == ["step", "lr", "loss", "smoothed_loss"]
    assert history["lr"].iloc[0] == pytest.approx(1e-5) and np.all(np.diff(np.log(history["lr"])) > 0)
    assert np.allclose(np.diff(np.log(history["lr"])), math.log(1e5) / 39)  # exponential ramp
    assert 1e-5 <= suggested <= 1.0 and suggested in set(history["lr"])
    assert states_equal(model_state, runner.model.state_dict())
    assert states_equal(loss_state, runner.flow_loss.state_dict())
    assert repr(optimizer_state) == repr(runner.optimizer.state_dict())
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad)
               for g, p in zip(grads, runner.model.parameters()))
    assert not runner.model.training and not list(runner.model.parameters())[0].requires_grad
    assert torch.equal(rng, torch.get_rng_state())
    after = files_of(runner.run_dir)
    new = {k for k in after if k not in files}
    assert {k: after[k] for k in files} == files  # every earlier file byte for byte, none removed
    assert new and all(k.startswith(os.path.join("tensorboard", "lr_find") + os.sep) for k in new)
    assert not glob.glob(os.path.join(runner.run_dir, "**", "*.pth.*"), recursive=True)


def test_lr_find_stops_when_the_loss_diverges_and_logs_the_curve(tmp_path):
    from helpers import read_scalar_tags

    runner = make_runner(tmp_path)
    history, suggested = runner.lr_find(start_lr=1e-4, end_lr=1e6, num_steps=60, optimizer={"name": "SGD"})
    assert len(history) < 60  # stopped early, and no KeyboardInterrupt or other exception reached us
    last = history.iloc[-1]
    assert not math.isfinite(last["loss"]) or last["smoothed_loss"] > 4 * history["smoothed_loss"].iloc[:-1].min()
    assert 1e-4 <= suggested < last["lr"]
    (events,) = glob.glob(os.path.join(runner.run_dir, "tensorboard", "lr_find", "events.*"))
    scalars = read_scalar_tags(events)
    assert scalars["lr_find/lr"] == pytest.approx(list(history["lr"]), rel=1e-6)
    assert len(scalars["lr_find/loss"]) == len(history)
    assert scalars["lr_find/suggested_lr"] == pytest.approx([suggested], rel=1e-6)


def test_lr_find_without_tensorboard_writes_nothing_and_cycles_the_training_split(tmp_path):
    runner = make_runner(tmp_path)
    files = files_of(runner.run_dir)
    history, _ = runner.lr_find(start_lr=1e-6, end_lr=1e-3, num_steps=10, tensorboard=False)
    assert len(history) == 10  # 4 batches per pass: the split was cycled
    assert files_of(runner.run_dir) == files


def test_lr_find_restores_the_model_when_it_fails(tmp_path):
    runner = make_runner(tmp_path)
    state = copy.deepcopy(runner.model.state_dict())
    calls = []

    def fail_on_fifth(module, inputs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")

    hook = runner.model.register_forward_pre_hook(fail_on_fifth)
    with pytest.raises(RuntimeError, match="boom"):
        runner.lr_find(start_lr=1e-3, end_lr=1.0, num_steps=10)
    hook.remove()
    assert states_equal(state, runner.model.state_dict())
    assert not os.path.exists(os.path.join(runner.run_dir, ".lock"))


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 1.0, "end_lr": 1.0}, r"start_lr \(1\) must be below end_lr \(1\)"),
    ({"start_lr": 0.1, "end_lr": 1e-3}, "must be below end_lr"),
    ({"start_lr": -1.0}, "start_lr must be a positive number"),
    ({"num_steps": 2}, "num_steps must be an int >= 3"),
    ({"smoothing": 0.0}, r"smoothing must be in \(0, 1\]"),
    ({"diverge_factor": 1.0}, "diverge_factor must be > 1"),
    ({"optimizer": "Adamm"}, "'Adamm' is not a torch.optim optimizer"),
])
def test_bad_lr_find_arguments_fail_before_anything_runs(tmp_path, kwargs, message):
    runner = make_runner(tmp_path)
    files = files_of(runner.run_dir)
    state = copy.deepcopy(runner.model.state_dict())
    with pytest.raises(RunnerError, match=message):
        runner.lr_find(**kwargs)
    assert files_of(runner.run_dir) == files and states_equal(state, runner.model.state_dict())
