"""Best/worst samples per task: the callback during validation, the runner after inference, publishers."""
import json
import os
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.callbacks import InterpretationCallback
from dnn_cool_catalyst.data import InputConverter
from dnn_cool_catalyst.interpretation import (ArrayPublisher, LossCollector, Publishers, TabularPublisher,
                                              TextPublisher, as_hwc_uint8, looks_like_image, losses_from_stored)
from dnn_cool_catalyst.runners import RunnerError
from helpers import read_summaries

N = 40
PERFECT, WRONG = range(10, 20), range(20, 30)


class TitleInput(InputConverter):
    """A text input column: the raw strings (the model ignores them)."""

    type_name = "text"

    def build_column(self, series, column):
        return [str(v) for v in series]


class LookupModel(nn.Module):
    """Logits looked up by the row's number (= its position): the same for every epoch and checkpoint."""

    def __init__(self, tables):
        super().__init__()
        self.tables = tables
        self.dummy = nn.Parameter(torch.zeros(1))  # something for the optimizer; the gradient is 0

    def forward(self, inputs):
        at = inputs["number"].long()
        return {"logits": {task: table[at] + 0.0 * self.dummy for task, table in self.tables.items()}}


def frame():
    i = np.arange(N)
    return pd.DataFrame({
        "number": i.astype(float),
        "img": [np.full((4, 5, 3), 5 * k, dtype=np.uint8) for k in i],
        "title": [f"title of {k}" for k in i],
        "is_even": (i % 2 == 0).astype(float),
        "predict_positive": (i >= N // 2).astype(float),
        # Labelled only on odd rows, where the is_even gate above predict_positive is closed: empty everywhere.
        "multiple_three": np.where(i % 2 == 1, (i % 3 == 0).astype(float), np.nan),
    }, index=[f"id{k}" for k in i])


def tables(df):
    even = torch.tensor(df["is_even"].to_numpy(), dtype=torch.float32)
    sign = 2 * even - 1
    is_even = torch.zeros(N)
    is_even[list(PERFECT)] = 20 * sign[list(PERFECT)]
    is_even[list(WRONG)] = -20 * sign[list(WRONG)]
    return {"is_even": is_even, "predict_positive": torch.linspace(-3, 3, N), "multiple_three": torch.zeros(N)}


def make_project(project_dir):
    df = frame()
    converters = Converters()
    converters.type.type_mapping.update({"img": "array", "title": "text"})
    converters.values.type_mapping["text"] = TitleInput
    project = Project(df, ["number", "img", "title"], ["is_even", "predict_positive", "multiple_three"],
                      converters=converters, project_dir=project_dir)

    @project.add_flow
    def numbers(flow, x, out):
        out += flow.is_even(x.features)
        out += flow.predict_positive(x.features) | out.is_even
        out += flow.multiple_three(x.features) | out.predict_positive
        return out

    return project, LookupModel(tables(df))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    project, model = make_project(tmp_path_factory.mktemp("interp"))
    runner = project.runner(model, "exp", batch_size=8, split_fractions=(0.0, 1.0, 0.0))
    runner.interpretation_k = 10
    data = runner.dataset
    loaders = OrderedDict(train=DataLoader(Subset(data, range(N)), batch_size=8),
                          valid=DataLoader(Subset(data, range(N)), batch_size=7, shuffle=True))
    runner.train(num_epochs=1, loaders=loaders, lr=0.0)
    runner.infer(splits=["valid"])
    return runner


def ids(rows):
    return sorted(rows, key=lambda r: int(r[2:]))


def test_callback_picks_the_planted_rows_by_global_id_on_a_shuffled_loader(run):
    selection = run.callbacks["_interpretation"].selection
    assert ids(r for _, r, _ in selection["is_even"]["best"]) == [f"id{k}" for k in PERFECT]
    assert ids(r for _, r, _ in selection["is_even"]["worst"]) == [f"id{k}" for k in WRONG]
    assert all(loss == pytest.approx(20.0, abs=1e-3) for _, _, loss in selection["is_even"]["worst"])
    assert "multiple_three" not in selection  # gated off in every sample: skipped, no error
    assert set(selection) == {"is_even", "predict_positive", "overall"}


def test_callback_writes_images_text_and_tables_to_the_valid_directory(run):
    found = read_summaries(os.path.join(run.tensorboard_dir, "valid"))
    text = found["texts"]["is_even/worst"][-1][1]
    assert text.split("\n\n")[0] == ("**rank 1** · row id20 · loss 20 · target 1 · prediction 0 (activation 0.000 < "
                                      "threshold 0.500, logit -20.000)  \ninputs: number = 20, title = title of 20")
    # no "img: (image)" input: images are in the Images tab
    step, image = found["images"]["is_even/worst/1/img"][-1]
    assert step == 1 and image.shape == (4, 5, 3) and (image == 100).all()  # row 20's pixels are 5 * 20, lossless
    assert "overall/best" in found["texts"]
    assert not any("multiple_three" in tag for tag in found["texts"])


def test_worst_and_best_examples_from_stored_outputs(run):
    worst = run.worst_examples("valid", "is_even", 10)
    assert list(worst.columns) == ["row_id", "loss", "index"]
    assert ids(worst.row_id) == [f"id{k}" for k in WRONG]
    assert worst.loss.to_numpy() == pytest.approx(np.full(10, 20.0), abs=1e-3)
    best = run.best_examples("infer_valid", "is_even", 10)  # the loader name works as well as the split
    assert ids(best.row_id) == [f"id{k}" for k in PERFECT] and (best.loss < 1e-6).all()
    assert len(run.worst_examples("valid", "multiple_three", 5)) == 0
    overall = run.worst_examples("valid", n=3)
    assert overall.loss.is_monotonic_decreasing and len(overall) == 3
    with pytest.raises(RunnerError, match="unknown task 'nope'.*is_even"):
        run.worst_examples("valid", "nope")


def test_infer_logs_pr_curves_examples_and_explanation_trees(run):
    found = read_summaries(os.path.join(run.tensorboard_dir, "infer_valid"))
    assert set(found["pr_curves"]) == {"pr_curve/is_even", "pr_curve/predict_positive"}
    curve = found["pr_curves"]["pr_curve/is_even"][-1][1]
    stored = run._stored("valid")[3]["is_even"]
    labels = stored["targets"][stored["mask_gt"]]
    assert curve.shape == (6, 127)
    assert (curve[0, 0], curve[1, 0]) == (float(labels.sum()), float((1 - labels).sum()))  # tp, fp at 0
    best = int(run.best_examples("valid", "is_even", 1).row_id[0][2:])
    assert (found["images"]["is_even/best/1/img"][-1][1] == 5 * best).all()
    tree = found["texts"]["explanation/worst/1"][-1][1]
    assert tree.startswith("row id") and "    numbers [row id" in tree and "is_even = " in tree
    assert "threshold 0.500" in tree and " · target " in tree


def test_explain_renders_trees_by_row_id(run):
    trees = run.explain("valid", ["id20", "id21"])
    assert list(trees) == ["id20", "id21"]
    # Row 20 is even but predicted odd (logit -20): predict_positive is not reached.
    assert trees["id20"] == ("numbers [row id20]\n└── is_even = 0 (activation 0.000 < threshold 0.500, logit "
                             "-20.000) · target 1\n")
    assert trees["id21"].split("\n")[2].startswith("    └── predict_positive = ")
    with pytest.raises(RunnerError, match=r"row id\(s\) \['nope'\] are not in the stored 'valid' outputs"):
        run.explain("valid", ["nope"])


def test_tune_marks_the_tuned_point_on_the_pr_curve(run):
    run.tune()
    report = json.load(open(os.path.join(run.run_dir, "tuned.json")))["report"]
    entry = report["is_even"]["threshold"]
    stored = run._stored("valid")[3]["is_even"]
    mask = stored["mask_gt"]
    predicted = stored["activations"][mask] >= entry["threshold"]
    actual = stored["targets"][mask] > 0.5
    tp = int((predicted & actual).sum())
    assert entry["precision"] == pytest.approx(tp / int(predicted.sum()))
    assert entry["recall"] == pytest.approx(tp / int(actual.sum()))
    run.infer(splits=["valid"])
    found = read_summaries(os.path.join(run.tensorboard_dir, "infer_valid"))
    assert "| is_even |" in found["texts"]["pr_curve/tuned"][-1][1]


def test_tuned_file_table_and_explain_show_the_chosen_interval(run):
    run.tune(min_samples=0, min_per_class=0)
    path = os.path.join(run.run_dir, "tuned.json")
    saved = json.load(open(path))
    assert saved["metric"] == "accuracy" and saved["alpha"] == 0.05
    entry = saved["report"]["is_even"]["threshold"]
    for key in ("lower", "upper", "candidate", "best_value", "kept", "p_value", "b", "c"):
        assert key in entry, key
    stored = run._stored("valid")[3]["is_even"]
    scores = stored["activations"][stored["mask_gt"]].double().numpy()
    labels = stored["targets"][stored["mask_gt"]].numpy() > 0.5
    # The best interval holds its candidate, which is on no validation activation and reaches the best value.
    assert entry["lower"] < entry["candidate"] <= entry["upper"]
    assert entry["candidate"] not in set(scores.tolist())
    assert np.mean((scores >= entry["candidate"]) == labels) == pytest.approx(entry["best_value"])
    assert entry["threshold"] == (0.5 if entry["kept"] else entry["candidate"])
    choice = ("kept: " + entry["reason"]) if entry["kept"] else "best interval ("
    run.infer(splits=["valid"])
    table = read_summaries(os.path.join(run.tensorboard_dir, "infer_valid"))["texts"]["pr_curve/tuned"][-1][1]
    assert "| choice (valid) |" in table
    row = next(line for line in table.splitlines() if line.startswith("| is_even |"))
    assert choice in row and f"({entry['lower']:.4g}, {entry['upper']:.4g}]" in row
    text = run.explain("valid", ["id20"])["id20"]
    footer = text.split("\nThresholds tuned on valid:\n")[1].splitlines()
    assert len(footer) == sum(len(entries) for entries in saved["report"].values())
    assert any(line.startswith(f"  is_even: threshold {entry['threshold']:.4g}, ") and choice in line
               for line in footer)
    assert run.explain("valid", ["id20"], render=False)["id20"].__class__.__name__ == "Tree"

    # A tuned.json written before intervals were recorded is still read, the interval shown as unknown.
    for entries in saved["report"].values():
        for item in entries.values():
            for key in ("lower", "upper", "candidate", "best_value", "kept", "p_value", "b", "c"):
                item.pop(key, None)
    saved.pop("alpha")
    with open(path, "w") as f:
        json.dump(saved, f)
    assert "is_even: threshold" in run.explain("valid", ["id20"])["id20"]
    assert "interval not recorded" in run.explain("valid", ["id20"])["id20"]
    run.load_tuned()
    run.infer(splits=["valid"])
    table = read_summaries(os.path.join(run.tensorboard_dir, "infer_valid"))["texts"]["pr_curve/tuned"][-1][1]
    assert "interval not recorded" in table


def test_collector_is_exact_across_batches_with_empty_batches_and_matches_stored(run):
    collector = LossCollector(run.flow.graph)
    loader = DataLoader(Subset(run.dataset, range(N)), batch_size=6, shuffle=True,
                        generator=torch.Generator().manual_seed(3))
    empty = None
    for batch in loader:
        collector.update(run.model(batch["inputs"]), batch)
        empty = {k: (v[:0] if torch.is_tensor(v) else {c: t[:0] for c, t in v.items()}) for k, v in batch.items()
                 if k != "inputs"}
        collector.update({"logits": {k: v[:0] for k, v in run.model(batch["inputs"])["logits"].items()}}, empty)
    collected = collector.finish()
    stored = losses_from_stored(run._stored("valid")[3])
    for key in ("is_even", "predict_positive", "overall"):
        by_index = dict(zip(collected[key][1].tolist(), collected[key][0].tolist()))
        expected = dict(zip(stored[key][1].tolist(), stored[key][0].tolist()))
        assert by_index == pytest.approx(expected), key
    assert len(collected["multiple_three"][0]) == 0


def test_collector_reads_the_loss_callbacks_element_losses_with_the_same_result():
    from dnn_cool_catalyst import BinaryTask, MultilabelTask, TaskFlow
    from dnn_cool_catalyst.graph.batch import ELEMENT_LOSSES_KEY, shared_ground_truth_masks

    class Halved(BinaryTask):  # a per-sample loss of its own: computed by the task, not from element losses
        def per_sample_loss(self, logits, target, mask):
            return super().per_sample_loss(logits, target, mask) / 2

    def flow_fn(flow, x, out):
        out += flow.door(x.features)
        out += flow.tags(x.features) | out.door
        out += flow.half(x.features)
        return out

    tasks = [BinaryTask("door", 4), MultilabelTask("tags", 3, in_features=4), Halved("half", 4)]
    flow = TaskFlow.from_function(flow_fn, tasks)
    gen = torch.Generator().manual_seed(0)
    n = 12
    outputs = {"logits": {"door": torch.randn(n, generator=gen), "tags": torch.randn(n, 3, generator=gen),
                          "half": torch.randn(n, generator=gen)}}
    batch = {"index": torch.arange(n) + 100,
             "targets": {"door": (torch.rand(n, generator=gen) > 0.5).float(),
                         "tags": (torch.rand(n, 3, generator=gen) > 0.5).float(),
                         "half": (torch.rand(n, generator=gen) > 0.5).float()},
             "available": {"door": torch.rand(n, generator=gen) > 0.2, "tags": torch.rand(n, 3, generator=gen) > 0.3,
                           "half": torch.ones(n, dtype=torch.bool)}}
    plain, shared = LossCollector(flow.graph), LossCollector(flow.graph)
    plain.update(outputs, dict(batch))
    elements = {}
    masks = shared_ground_truth_masks(flow.graph, batch)
    flow.get_loss().terms(outputs, batch, masks=masks, elements=elements)
    assert set(elements) == {"door", "tags", "half"}
    batch[ELEMENT_LOSSES_KEY] = (flow.graph, {**elements, "half": elements["half"] * 100})  # must not be read
    shared.update(outputs, batch)
    expected, found = plain.finish(), shared.finish()
    assert set(found) == {"door", "tags", "half", "overall"}
    for key in found:
        assert np.array_equal(found[key][1], expected[key][1]) and np.allclose(found[key][0], expected[key][0]), key
    assert len(found["tags"][0]) > 0 and np.all(found["half"][0] < 2)
    doubled = LossCollector(flow.graph)  # the stored element losses are what it reads for the default tasks
    doubled.update(outputs, {**batch, ELEMENT_LOSSES_KEY: (flow.graph, {"door": elements["door"] * 2})})
    assert np.allclose(doubled.finish()["door"][0], 2 * expected["door"][0])


def test_callback_is_inactive_on_train_and_skips_a_loader_without_samples(run, tmp_path):
    callback = InterpretationCallback(run.flow, k=2, loaders=("valid",), logdir=str(tmp_path))
    loader = DataLoader(Subset(run.dataset, range(6)), batch_size=4)
    fake = SimpleNamespace(loader_key="train", loader=loader, epoch_step=1)
    callback.on_loader_start(fake)
    for batch in loader:
        fake.batch = {**batch, "outputs": run.model(batch["inputs"])}
        callback.on_batch_end(fake)
    callback.on_loader_end(fake)
    assert callback.selection == {} and not os.path.exists(tmp_path / "train")
    fake.loader_key = "valid"
    callback.on_loader_start(fake)
    callback.on_loader_end(fake)  # no batch at all
    assert callback.selection == {}
    with pytest.raises(ValueError, match="k must be a positive"):
        InterpretationCallback(run.flow, k=0)
    with pytest.raises(ValueError, match="pass logdir="):
        InterpretationCallback(run.flow).on_loader_start(SimpleNamespace(loader_key="valid"))


def test_images_from_uint8_and_float_in_both_layouts():
    hwc = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert (as_hwc_uint8(hwc) == hwc).all()
    assert (as_hwc_uint8(torch.from_numpy(hwc).permute(2, 0, 1).float() / 255, layout="CHW") == hwc).all()
    assert as_hwc_uint8(np.ones((5, 6))).shape == (5, 6, 3)  # grayscale, replicated to RGB
    assert as_hwc_uint8(np.array([[[-1.0, 1.0]]]).reshape(1, 1, 2).repeat(3, 0)).max() == 255  # min-max scaled
    with pytest.raises(ValueError, match=r"pic: no channel axis.*\(2, 5, 6\)"):
        as_hwc_uint8(np.zeros((2, 5, 6)), name="pic")
    assert looks_like_image(np.full((3, 4, 4), 0.5)) and not looks_like_image(np.full((4, 4, 3), 300.0))
    assert not looks_like_image(np.full((4, 4, 3), 2.5))


def test_publishers_are_chosen_by_column_then_type(tmp_path):
    publishers = Publishers()
    assert isinstance(publishers.get("x", "array"), ArrayPublisher)
    assert isinstance(publishers.get("x", "something_new"), TabularPublisher)
    publishers.col_mapping["x"] = lambda: TextPublisher(vocab=["<pad>", "a", "b"])
    assert publishers.get("x", "array").cell(torch.tensor([2, 1, 0, 7])) == "b a #7"
    assert ArrayPublisher().cell(torch.tensor([1.0, 2.5])) == "v0=1, v1=2.500"
    assert ArrayPublisher().cell(torch.zeros(3, 4, 4)) is None  # an image: no placeholder column in the table
    assert ArrayPublisher().image(torch.zeros(3, 5, 6)).shape == (5, 6, 3)
    assert ArrayPublisher().image(torch.tensor([1.0, 2.5])) is None
    assert TextPublisher().cell("a | b\nc") == "a \\| b c"
    publishers.col_mapping["y"] = lambda: "not a publisher"
    with pytest.raises(TypeError, match="input column 'y'"):
        publishers.get("y", None)


def test_numeric_cells_read_for_all_picked_samples_at_once_equal_the_per_sample_cells(tmp_path):
    from tensorboardX import SummaryWriter

    from dnn_cool_catalyst.data import FlowDataset
    from dnn_cool_catalyst.interpretation import SampleSource, publish_extremes

    class Bracketed(TabularPublisher):  # a publisher of your own gets the sample's value, as before
        def cell(self, value):
            return f"[{super().cell(value)}]"

    df = pd.DataFrame({"f": [0.5, 1.25, -2.0, 3.0, 7.125], "i": [1, 2, 3, 4, 5], "g": [9.5, 8.0, 7.0, 6.0, 5.5],
                       "v": [np.array([k, k + 0.5]) for k in range(5)], "y": [1, 0, 1, 0, 1]})
    converters = Converters()
    converters.type.type_mapping["v"] = "array"
    source = SampleSource(FlowDataset(converters.build(df, ["f", "i", "g", "v"], "y")))
    publishers = Publishers()
    publishers.col_mapping["g"] = Bracketed
    publishers = publishers.for_columns(source.types)
    one_by_one = SimpleNamespace(types=source.types, inputs=source.inputs)  # no numbers(): sample by sample
    assert set(source.numbers([4, 1], ["f", "i", "g", "v"])) == {"f", "i", "g"}  # "v": two numbers per sample
    selection = {"y": {"worst": [(4, "r4", 0.5), (1, "r1", 0.25)], "best": [(1, "r1", 0.25), (3, "r3", 0.1)]}}
    texts = []
    for i, src in enumerate((source, one_by_one)):
        writer = SummaryWriter(str(tmp_path / str(i)))
        publish_extremes(writer, selection, src, publishers, {"y": "flow.y"}, step=0)
        writer.close()
        texts.append(read_summaries(str(tmp_path / str(i)))["texts"])
    assert texts[0] == texts[1]
    first = texts[0]["flow.y/worst"][0][1].split("\n\n")[0]
    assert first == "**rank 1** · row r4 · loss 0.5  \ninputs: f = 7.125, i = 5, g = [5.500], v = v0=4, v1=4.500"


def test_shards_of_distributed_processes_are_merged_on_rank_zero_only(monkeypatch):
    from dnn_cool_catalyst.interpretation import callback as module

    other = {"is_even": (np.array([0.5]), np.array([7])), "overall": (np.array([0.5]), np.array([7]))}
    mine = {"is_even": (np.array([0.1, 0.2]), np.array([1, 2])), "overall": (np.zeros(0), np.zeros(0, dtype=int))}

    def all_gather_object(shards, obj):
        shards[:] = [obj, other]

    monkeypatch.setattr(module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(module.dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(module.dist, "get_rank", lambda: 0)
    merged = module._gather(mine)
    assert merged["is_even"][0].tolist() == [0.1, 0.2, 0.5] and merged["is_even"][1].tolist() == [1, 2, 7]
    assert merged["overall"][1].tolist() == [7]
    monkeypatch.setattr(module.dist, "get_rank", lambda: 1)
    assert module._gather(mine) is None
