"""train(stages=[...]): frozen prefixes, per-stage optimizers and losses, initial weights, checkpoints and
TensorBoard per stage, resume inside the interrupted stage, and the errors raised before anything trains."""
import glob
import json
import os

import pytest
import torch
from catalyst.core.callback import Callback, CallbackOrder

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.run.checkpoints import read_checkpoint
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def make_runner(project_dir, name="exp", samples=160, seed=0, **kwargs):
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=seed)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    runner = project.runner(numbers_model(define_flows(project), hidden=8), name, batch_size=32, **kwargs)
    runner._materialize()
    return runner


def trunk_of(state):
    return {k: v for k, v in state.items() if k.startswith("trunk.")}


def checkpoint(runner, stage, which="last"):
    return read_checkpoint(os.path.join(runner.run_dir, "checkpoints", stage, f"runner.{which}.pth"))


TWO_STAGES = [{"name": "heads", "num_epochs": 2, "freeze": ["trunk"], "lr": 1e-2},
              {"name": "all", "num_epochs": 2, "lr": 3e-3, "optimizer": {"name": "SGD", "momentum": 0.9}}]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    runner = make_runner(tmp_path_factory.mktemp("staged"))
    initial = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train(stages=TWO_STAGES)
    return runner, initial


def test_frozen_trunk_is_bit_identical_in_stage_one_and_trains_in_stage_two(staged):
    runner, initial = staged
    heads, full = checkpoint(runner, "heads")["model_state_dict"], checkpoint(runner, "all")["model_state_dict"]
    for key, value in trunk_of(initial).items():
        assert torch.equal(heads[key], value), key
        assert not torch.equal(full[key], value), key
    head_keys = [k for k in initial if k.startswith("flow.")]
    assert head_keys and any(not torch.equal(heads[k], initial[k]) for k in head_keys)
    # Freezing lasts for its stage only.
    assert all(p.requires_grad for p in runner.model.parameters())


def test_each_stage_has_its_own_optimizer_and_checkpoints_name_their_stage(staged):
    runner, _ = staged
    heads, full = checkpoint(runner, "heads"), checkpoint(runner, "all")
    assert (heads["stage_index"], heads["stage_name"]) == (0, "heads")
    assert (full["stage_index"], full["stage_name"]) == (1, "all")
    assert heads["epoch_step"] == 2 and full["epoch_step"] == 2
    # Stage 1: AdamW over the heads only (the trunk's 4 tensors left out); stage 2: SGD with momentum over all.
    n_params = len(list(runner.model.parameters()))
    assert len(heads["optimizer_state_dict"]["param_groups"][0]["params"]) == n_params - 4
    assert "betas" in heads["optimizer_state_dict"]["param_groups"][0]
    group = full["optimizer_state_dict"]["param_groups"][0]
    assert len(group["params"]) == n_params and group["momentum"] == 0.9 and group["lr"] == 3e-3


def test_run_best_is_the_last_stages_best_and_files_are_laid_out_per_stage(staged):
    runner, _ = staged
    ckpt = os.path.join(runner.run_dir, "checkpoints")
    with open(os.path.join(ckpt, "all", "runner.best.pth"), "rb") as a, \
            open(os.path.join(ckpt, "runner.best.pth"), "rb") as b:
        assert a.read() == b.read()
    with open(os.path.join(ckpt, "stages.json"), encoding="utf-8") as f:
        assert json.load(f) == {"stages": ["heads", "all"], "completed": ["heads", "all"]}
    from helpers import read_scalar_tags

    for stage in ("heads", "all"):
        scalars = {}
        for path in glob.glob(os.path.join(runner.tensorboard_run_dir, stage, "valid", "*")):
            scalars.update(read_scalar_tags(path))
        loss = scalars.get("loss/epoch", scalars.get("loss"))
        assert loss is not None and len(loss) == 2  # two epochs in each stage's own TensorBoard run
    assert not glob.glob(os.path.join(runner.tensorboard_run_dir, "valid"))
    runner.load_checkpoint("best")  # inference reads the run's top-level best as before


class Interrupt(Callback):
    """Fails when the named stage is about to start epoch ``epoch`` (after the previous epoch's checkpoint)."""

    def __init__(self, stage, epoch):
        super().__init__(order=CallbackOrder.External)
        self.stage, self.epoch = stage, epoch

    def on_epoch_start(self, runner):
        if runner._active_stage.name == self.stage and runner.epoch_step == self.epoch:
            raise RuntimeError("killed")


class Recorder(Callback):
    """Records (stage name, epoch) of every epoch that starts."""

    def __init__(self):
        super().__init__(order=CallbackOrder.External)
        self.seen = []

    def on_epoch_start(self, runner):
        self.seen.append((runner._active_stage.name, runner.epoch_step))


def test_a_run_killed_in_stage_two_resumes_in_stage_two_and_ends_as_an_uninterrupted_run(tmp_path):
    stages = [{"name": "s1", "num_epochs": 1, "freeze": ["trunk"]},
              {"name": "s2", "num_epochs": 3, "optimizer": {"name": "SGD", "lr": 0.05, "momentum": 0.9}}]
    straight = make_runner(tmp_path, "straight").train(stages=stages)
    killed = make_runner(tmp_path, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        killed.train(stages=stages, callbacks={"interrupt": Interrupt("s2", 2)})
    assert checkpoint(killed, "s2")["epoch_step"] == 1
    with open(os.path.join(killed.run_dir, "checkpoints", "stages.json"), encoding="utf-8") as f:
        assert json.load(f)["completed"] == ["s1"]
    s1_file = os.path.join(killed.run_dir, "checkpoints", "s1", "runner.last.pth")
    s1_bytes = open(s1_file, "rb").read()

    resumed = make_runner(tmp_path, "killed")  # a fresh process: new model, new runner
    epochs = Recorder()
    resumed.train(stages=stages, resume=True, callbacks={"record": epochs})
    assert epochs.seen == [("s2", 2), ("s2", 3)]  # stage 1 skipped, stage 2 continued at its second epoch
    assert open(s1_file, "rb").read() == s1_bytes  # stage 1 was not trained again
    final = checkpoint(resumed, "s2")
    assert final["epoch_step"] == 3 and final["stage_name"] == "s2"
    assert final["optimizer_state_dict"]["param_groups"][0]["momentum"] == 0.9
    expected = checkpoint(straight, "s2")
    for key, value in expected["model_state_dict"].items():
        torch.testing.assert_close(final["model_state_dict"][key], value, rtol=1e-5, atol=1e-6)
    assert final["valid_history"] == pytest.approx(expected["valid_history"], rel=1e-5)


def test_initial_weights_strict_and_not_strict(tmp_path):
    donor = make_runner(tmp_path, "donor", seed=5)
    path = str(tmp_path / "donor.pth")
    torch.save(donor.model.state_dict(), path)
    runner = make_runner(tmp_path, "exp")
    runner.train(stages=[{"num_epochs": 1, "freeze": ["trunk"], "initial_weights": path}])
    loaded = checkpoint(runner, "stage1")["model_state_dict"]
    for key, value in trunk_of(donor.model.state_dict()).items():
        assert torch.equal(loaded[key], value)

    # Another model's file: the keys that do not fit are named; strict: false loads the matching ones.
    partial = {k: v for k, v in donor.model.state_dict().items() if k.startswith("trunk.")}
    partial["backbone.weight"] = torch.zeros(2)
    torch.save(partial, str(tmp_path / "other.pth"))
    other = make_runner(tmp_path, "other")
    with pytest.raises(RunnerError, match=r"missing keys \[flow\..*unexpected keys \[backbone.weight\]"):
        other.train(stages=[{"num_epochs": 1, "initial_weights": str(tmp_path / "other.pth")}])
    assert not os.path.exists(os.path.join(other.run_dir, "checkpoints"))  # refused before anything ran
    other.train(stages=[{"num_epochs": 1, "freeze": ["trunk"], "initial_weights": str(tmp_path / "other.pth"),
                         "strict": False}])
    loaded = checkpoint(other, "stage1")["model_state_dict"]
    assert all(torch.equal(loaded[k], v) for k, v in trunk_of(donor.model.state_dict()).items())


def test_initial_weights_from_an_earlier_stage_and_loss_weights_per_stage(tmp_path):
    runner = make_runner(tmp_path)
    runner.train(stages=[{"name": "a", "num_epochs": 2},
                         {"name": "b", "num_epochs": 1, "freeze": ["trunk"], "initial_weights": "a.best",
                          "loss_weights": "uncertainty"}])
    best_a = read_checkpoint(os.path.join(runner.run_dir, "checkpoints", "a", "runner.best.pth"))
    b = checkpoint(runner, "b")
    for key, value in trunk_of(best_a["model_state_dict"]).items():
        assert torch.equal(b["model_state_dict"][key], value)
    assert "log_vars" in b["criterion_state_dict"] and "log_vars" not in best_a["criterion_state_dict"]
    assert not list(runner.flow_loss.parameters())  # the runner's own loss is back after the stage


@pytest.mark.parametrize("stages, message", [
    ([{"num_epochs": 1, "freeze": ["trunc"]}], r"freeze prefix 'trunc' matches no parameter.*\['flow', 'trunk'\]"),
    ([{"num_epochs": 1, "freeze": ["trunk", "flow"]}], "freezes every parameter"),
    ([{"num_epochs": 0}], "num_epochs must be a positive int"),
    ([{"num_epochs": 1, "epochs": 2}], r"unknown key\(s\) \['epochs'\]"),
    ([{"num_epochs": 1, "name": "a"}, {"num_epochs": 1, "name": "a"}], "must be unique"),
    ([{"num_epochs": 1, "name": "../x"}], "letters, digits"),
    ([{"num_epochs": 1, "initial_weights": "missing.pth"}], "missing.pth does not exist"),
    ([{"num_epochs": 1, "loss_weights": {"nope": 1.0}}], "stage 'stage1'.*nope"),
    ([{"num_epochs": 1}, {"num_epochs": 1, "optimizer": {"name": "Adamm"}}],
     "stage 'stage2': optimizer name 'Adamm' is not a torch.optim optimizer"),
    ([{"num_epochs": 1}, {"num_epochs": 1, "scheduler": {"name": "one_cycles"}}],
     "stage 'stage2': scheduler name 'one_cycles' is neither"),
    ([{"num_epochs": 1}, {"num_epochs": 1, "valid_metric": "nope/accuracy"}], "stage 'stage2': .*nope"),
    ({"num_epochs": 1}, "non-empty list"),
])
def test_bad_stages_fail_before_training(tmp_path, stages, message):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match=message):
        runner.train(stages=stages)
    assert not glob.glob(os.path.join(runner.run_dir, "checkpoints", "*", "*.pth"))


def test_stages_conflicts_and_resume_mismatches(tmp_path):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match="num_epochs and stages"):
        runner.train(num_epochs=2, stages=[{"num_epochs": 1}])
    with pytest.raises(RunnerError, match="must be a spec"):
        runner.train(stages=[{"num_epochs": 1}], optimizer=torch.optim.SGD(runner.model.parameters(), lr=0.1))
    runner.train(stages=[{"name": "a", "num_epochs": 1}])
    with pytest.raises(RunnerError, match=r"trained with stages \['a'\]"):
        runner.train(stages=[{"name": "b", "num_epochs": 1}], resume=True)
    with pytest.raises(RunnerError, match="trained in stages"):
        runner.train(num_epochs=2, resume=True)
    runner.train(num_epochs=1)  # a fresh single-stage training: the stages are forgotten, resume works again
    assert not os.path.exists(os.path.join(runner.run_dir, "checkpoints", "stages.json"))
    runner.train(num_epochs=2, resume=True)
    assert read_checkpoint(os.path.join(runner.run_dir, "checkpoints", "runner.last.pth"))["epoch_step"] == 2


def test_loggers_given_to_train_serve_every_stage(tmp_path):
    from catalyst import dl

    runner = make_runner(tmp_path)
    loggers = {"tb": dl.TensorboardLogger(logdir=str(tmp_path / "tb"))}
    runner.train(stages=[{"num_epochs": 1}, {"num_epochs": 1}], loggers=loggers)
    assert list(loggers) == ["tb"]  # Catalyst's CSV logger went into a copy, closed with its stage
    from helpers import read_scalar_tags

    # Each stage reopens the shared writers; tensorboardX names event files by the second, so two stages within
    # one second share a file name (the default per-stage directories avoid that): at least the last is there.
    losses = [v for path in glob.glob(str(tmp_path / "tb" / "valid" / "events.*"))
              for v in read_scalar_tags(path).get("loss/epoch", read_scalar_tags(path).get("loss", []))]
    assert 1 <= len(losses) <= 2
