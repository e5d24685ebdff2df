"""Learning-rate schedules named in train(scheduler=...): stepped per batch, the rates actually used, logged per
epoch, continued on resume, and errors for names and arguments that do not exist."""
import glob
import math
import os

import pytest
import torch
from catalyst.core.callback import Callback, CallbackOrder

from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.training.schedules import WarmupCosineLR, build_scheduler
from test_stages import make_runner

BATCHES = 4  # 160 samples, 70 % train = 112 rows, batches of 32


class LrRecorder(Callback):
    """The learning rate of every training batch's optimizer step, in order."""

    def __init__(self, stop_at_epoch=None):
        super().__init__(order=CallbackOrder.External)
        self.lrs, self.stop_at_epoch = [], stop_at_epoch

    def on_epoch_start(self, runner):
        if runner.epoch_step == self.stop_at_epoch:
            raise RuntimeError("killed")

    def on_batch_start(self, runner):
        if runner.is_train_loader:
            self.lrs.append(runner.optimizer.param_groups[0]["lr"])


def reference(make_scheduler, steps, lr=1e-3):
    """The rates torch's own scheduler gives on a dummy optimizer stepped ``steps`` times."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("spec, make", [
    ({"name": "one_cycle", "max_lr": 0.02},
     lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=2 * BATCHES)),
    ({"name": "cyclic", "base_lr": 1e-4, "max_lr": 1e-2, "step_size_up": 3},
     lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, base_lr=1e-4, max_lr=1e-2, step_size_up=3,
                                                   cycle_momentum=False)),
    ({"name": "warmup_cosine", "warmup_steps": 2, "min_lr": 1e-4},
     lambda opt: WarmupCosineLR(opt, warmup_steps=2, total_steps=2 * BATCHES, min_lr=1e-4)),
])
def test_per_batch_schedules_follow_torchs_rates_batch_by_batch(tmp_path, spec, make):
    recorder = LrRecorder()
    runner = make_runner(tmp_path)
    runner.train(num_epochs=2, lr=1e-3, scheduler=spec, callbacks={"record": recorder})
    expected = reference(make, 2 * BATCHES)
    assert recorder.lrs == pytest.approx(expected, rel=1e-9)
    assert len(set(recorder.lrs)) > 2  # really changed within epochs


def test_warmup_cosine_by_epochs_and_the_logged_rate_per_epoch(tmp_path):
    from helpers import read_scalar_tags

    recorder = LrRecorder()
    runner = make_runner(tmp_path)
    runner.train(num_epochs=2, lr=0.01, scheduler={"name": "warmup_cosine", "warmup_epochs": 0.5},
                 callbacks={"record": recorder})
    total, warmup = 2 * BATCHES, BATCHES // 2
    expected = [0.01 * s / warmup if s < warmup else
                0.005 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(total)]
    assert recorder.lrs == pytest.approx(expected, abs=1e-12)
    scalars = {}
    for path in glob.glob(os.path.join(runner.tensorboard_dir, "train", "*")):
        scalars.update(read_scalar_tags(path))
    logged = scalars.get("lr/epoch", scalars.get("lr"))
    # One value per epoch: the rate after the epoch's last step (what the next batch would use).
    after = [0.005 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in (BATCHES, total)]
    assert logged == pytest.approx(after, rel=1e-5)


def test_a_resumed_run_continues_the_one_cycle_curve(tmp_path):
    spec = {"name": "one_cycle", "max_lr": 0.02}
    expected = reference(lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=3 * BATCHES),
                         3 * BATCHES)
    first = LrRecorder(stop_at_epoch=3)
    with pytest.raises(RuntimeError, match="killed"):
        make_runner(tmp_path).train(num_epochs=3, scheduler=spec, callbacks={"record": first})
    second = LrRecorder()
    make_runner(tmp_path).train(num_epochs=3, scheduler=spec, resume=True, callbacks={"record": second})
    assert first.lrs == pytest.approx(expected[:2 * BATCHES], rel=1e-9)
    assert second.lrs == pytest.approx(expected[2 * BATCHES:], rel=1e-9)


def test_named_torch_scheduler_per_epoch_or_per_batch(tmp_path):
    recorder = LrRecorder()
    make_runner(tmp_path, "epochs").train(num_epochs=2, lr=0.1, scheduler={"name": "StepLR", "step_size": 1,
                                                                            "gamma": 0.5},
                                          callbacks={"record": recorder})
    assert recorder.lrs == pytest.approx([0.1] * BATCHES + [0.05] * BATCHES)
    recorder = LrRecorder()
    make_runner(tmp_path, "batches").train(num_epochs=1, lr=0.1, scheduler={"name": "StepLR", "step_size": 1,
                                                                             "gamma": 0.5, "interval": "batch"},
                                           callbacks={"record": recorder})
    assert recorder.lrs == pytest.approx([0.1 * 0.5 ** i for i in range(BATCHES)])


def test_constant_rate_and_optimizer_spec(tmp_path):
    recorder = LrRecorder()
    runner = make_runner(tmp_path)
    runner.train(num_epochs=1, lr=0.05, scheduler="none", optimizer={"name": "SGD", "momentum": 0.5},
                 callbacks={"record": recorder})
    assert recorder.lrs == [0.05] * BATCHES
    assert runner.optimizer.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("spec, message", [
    ({"name": "one_cycl"}, r"^scheduler name 'one_cycl' is neither one of \['plateau', 'one_cycle'"),
    ({"name": "one_cycle", "max_lrr": 1.0}, "scheduler one_cycle with .*max_lrr"),
    ({"name": "cyclic", "interval": "step"}, "interval must be 'batch' or 'epoch'"),
    ({"max_lr": 1.0}, "must have a 'name'"),
    (3, "must be a name, a dict"),
])
def test_bad_scheduler_specs_name_the_problem(spec, message):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(RunnerError, match=message):
        build_scheduler(spec, optimizer, lr=0.1, steps_per_epoch=4, num_epochs=2, minimize=True)


def test_bad_scheduler_fails_before_training(tmp_path):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match="'cosine_warmup' is neither"):
        runner.train(num_epochs=1, scheduler="cosine_warmup")
    with pytest.raises(RunnerError, match="optimizer name 'adamw' is not a torch.optim optimizer"):
        runner.train(num_epochs=1, optimizer="adamw")
    assert not os.path.exists(os.path.join(runner.run_dir, "checkpoints"))


def test_default_optimizer_is_fused_adamw_where_the_parameters_allow_it():
    from dnn_cool_catalyst.training.schedules import build_optimizer

    weights = torch.nn.Parameter(torch.randn(3))
    fused = build_optimizer(None, [{"params": [weights]}], lr=0.01)
    assert isinstance(fused, torch.optim.AdamW) and fused.defaults["fused"] is True
    plain = build_optimizer(None, [{"params": [torch.nn.Parameter(torch.randn(3, device="meta"))]}], lr=0.01)
    assert isinstance(plain, torch.optim.AdamW) and not plain.defaults.get("fused")
    reference = torch.optim.AdamW([torch.nn.Parameter(weights.detach().clone())], lr=0.01)
    for optimizer in (fused, reference):  # the same update rule as the for-loop AdamW
        param = optimizer.param_groups[0]["params"][0]
        for _ in range(3):
            optimizer.zero_grad()
            (param ** 2).sum().backward()
            optimizer.step()
    assert torch.allclose(fused.param_groups[0]["params"][0], reference.param_groups[0]["params"][0], atol=1e-6)
    assert build_optimizer("AdamW", [weights], lr=0.01).defaults.get("fused") in (None, False)  # as the user wrote
