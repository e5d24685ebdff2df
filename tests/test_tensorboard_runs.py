"""What a user browses in TensorBoard, read back from the event files: one run folder per runner, lr once, sample
steps, frames only when validation improves (and at the end), the tuned table's split, trees with thresholds."""
import glob
import os
from collections import OrderedDict

import pytest
import torch
from helpers import read_scalar_tags, read_summaries
from test_interpretation import N, make_project
from torch.utils.data import DataLoader, Subset

from dnn_cool_catalyst.training.loggers import FlowTensorboardLogger


def loaders(runner):
    data = runner.dataset
    return OrderedDict(train=DataLoader(Subset(data, range(N)), batch_size=8),
                       valid=DataLoader(Subset(data, range(N)), batch_size=7))


def scalars(directory):
    found = {}
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for tag, values in read_scalar_tags(path).items():
            found.setdefault(tag, []).extend(values)
    return found


def steps(directory, tag):
    """Steps of every scalar event with ``tag``."""
    from helpers import _events

    return [event.step for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))
            for event in _events(path) for value in event.summary.value if value.tag == tag]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    project, model = make_project(tmp_path_factory.mktemp("tb"))
    runner = project.runner(model, "exp", batch_size=8, split_fractions=(0.5, 0.25, 0.25))
    # lr=0: the validation loss is the same every epoch, so only epoch 1 improves on the best so far.
    runner.train(num_epochs=3, loaders=loaders(runner), lr=0.0, callbacks={},
                 loggers={"tensorboard": FlowTensorboardLogger(runner.tensorboard_dir, log_batch_metrics=True)})
    return project, model, runner


def test_one_learning_rate_scalar_and_a_readable_epoch_run(trained):
    _, _, runner = trained
    run = runner.tensorboard_dir
    assert os.path.basename(run) == "run-1"
    assert sorted(os.listdir(run)) == ["train", "valid"]  # no "_epoch_" run holding only lr/momentum
    train, valid = scalars(os.path.join(run, "train")), scalars(os.path.join(run, "valid"))
    assert train["lr/epoch"] == [0.0, 0.0, 0.0] and len(train["momentum/epoch"]) == 3
    assert not [tag for tag in valid if tag.startswith(("lr", "momentum"))]
    assert len(valid["is_even/accuracy/epoch"]) == 3


def test_sample_counters_and_batch_steps_count_samples(trained):
    _, _, runner = trained
    # 3 epochs of 40 training and 40 validation rows (Catalyst alone would count input columns per batch).
    assert runner.sample_step == 3 * (N + N) and runner.loader_sample_step == N
    state = torch.load(os.path.join(runner.checkpoint_dir, "runner.last.pth"), weights_only=True)
    assert state["sample_step"] == 3 * (N + N)
    batch_steps = steps(os.path.join(runner.tensorboard_dir, "train"), "loss/batch")
    assert batch_steps[:6] == [8, 16, 24, 32, 40, 88]  # epoch 2 starts after 40 train + 40 valid samples


def test_frames_only_when_validation_improves_and_at_the_last_epoch(trained):
    _, _, runner = trained
    callback = runner.callbacks["_interpretation"]
    assert callback.published == [1, 3]
    found = read_summaries(os.path.join(runner.tensorboard_dir, "valid"))
    assert sorted({step for _, step_image in found["images"].items() for step, _ in step_image}) == [1, 3]
    assert sorted({step for step, _ in found["texts"]["is_even/worst"]}) == [1, 3]


def test_every_n_epochs_and_a_rerun_opens_a_new_run(trained):
    project, model, first = trained
    runner = project.runner(model, "exp", batch_size=8, split_fractions=(0.5, 0.25, 0.25))
    runner.interpretation_every = 2
    runner.train(num_epochs=3, loaders=loaders(runner), lr=0.0)
    assert os.path.basename(runner.tensorboard_dir) == "run-2" and first.tensorboard_dir.endswith("run-1")
    assert runner.callbacks["_interpretation"].published == [2, 3]
    found = read_summaries(os.path.join(runner.tensorboard_dir, "valid"))
    assert sorted({step for step, _ in found["texts"]["overall/best"]}) == [2, 3]
    assert len(glob.glob(os.path.join(first.tensorboard_dir, "valid", "events.*interpretation*"))) == 1


def test_infer_again_replaces_the_split_summaries_and_the_tuned_table_names_its_split(trained):
    _, _, runner = trained
    runner.infer(splits=["valid", "test"])
    runner.tune()
    threshold = runner.flow.tasks["is_even"].threshold
    runner.infer(splits=["test"])
    directory = os.path.join(runner.tensorboard_dir, "infer_test")
    assert len(glob.glob(os.path.join(directory, "events.out.tfevents.*"))) == 1  # the first infer's is replaced
    table = read_summaries(directory)["texts"]["pr_curve/tuned"]
    assert len(table) == 1
    text = table[0][1]
    assert text.startswith("Thresholds tuned on **valid**; precision, recall and intervals below were measured on "
                           "valid, not on test")
    assert "| curve | tuned threshold | precision (valid) | recall (valid) | choice (valid) |" in text
    # Trees show the tuned threshold that decided, and the label next to the prediction.
    tree = read_summaries(directory)["texts"]["explanation/worst/1"][0][1]
    assert f"threshold {threshold:.3f}" in tree and " · target " in tree


def test_tensorboard_itself_reads_the_groups_images_and_texts(trained):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    _, _, runner = trained
    accumulator = event_accumulator.EventAccumulator(os.path.join(runner.tensorboard_dir, "valid"),
                                                     size_guidance={event_accumulator.IMAGES: 0,
                                                                    event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert "is_even/worst/1/img" in tags["images"] and "overall/worst/1/img" in tags["images"]
    assert not [tag for tag in tags["images"] if "/best/" in tag]  # during training: best samples as tables only
    assert {tag.split("/")[0] for tag in tags["images"]} == {"is_even", "predict_positive", "overall"}
    assert "is_even/worst/text_summary" in tags["tensors"]
    image = accumulator.Images("is_even/worst/1/img")[-1]
    assert image.step == 3 and (image.width, image.height) == (5, 4)


def test_a_loaders_scalars_are_one_event_that_tensorboard_reads_value_by_value(tmp_path):
    from types import SimpleNamespace

    from helpers import _events

    logger = FlowTensorboardLogger(str(tmp_path))
    runner = SimpleNamespace(loader_key="valid", epoch_step=4)
    logger.log_metrics({"loss": 0.25, "is even/accuracy (x)": torch.tensor(0.5), "lr": 0.1}, "loader", runner)
    logger.close_log()
    path, = glob.glob(str(tmp_path / "valid" / "events.out.tfevents.*"))
    summaries = [event for event in _events(path) if event.summary.value]
    assert len(summaries) == 1 and summaries[0].step == 4
    # lr kept on training loaders only; a tag with characters TensorBoard refuses is written as add_scalar would
    assert {v.tag: v.simple_value for v in summaries[0].summary.value} == {
        "loss/epoch": 0.25, "is_even/accuracy__x_/epoch": 0.5}
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "valid"))
    accumulator.Reload()
    assert sorted(accumulator.Tags()["scalars"]) == ["is_even/accuracy__x_/epoch", "loss/epoch"]
    assert [(s.step, s.value) for s in accumulator.Scalars("loss/epoch")] == [(4, 0.25)]
