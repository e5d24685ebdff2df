"""The batched data path (BatchedSubset, StoredColumn) and device placement (device_data) against the per-item
path: same batches, same order, same values, same training results."""
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.data import ConverterError, Converters, FlowDataset
from dnn_cool_catalyst.data.columns import StoredColumn, take
from dnn_cool_catalyst.data.inputs import InputConverter
from dnn_cool_catalyst.parallel import BatchedSubset, PaddingMarkedSubset, ShardedBatchSampler, collate_batch
from dnn_cool_catalyst.runners.device_data import DeviceBatches, resolve_mode
from dnn_cool_catalyst.runners.loaders import default_num_workers
from dnn_cool_catalyst.synthetic.security import ImageArrayInput, security_frame
from dnn_cool_catalyst.tabular import tabular_model

CPU = torch.device("cpu")


class TextInput(InputConverter):
    """A plain list of strings (e.g. titles the model ignores): indexed per row, collated as a list."""

    type_name = "text"

    def build_column(self, series, column):
        return [str(v) for v in series]  # stands in for the device: the resident and pinned code paths are the same


def all_types_frame(tmp_path, n=23):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = os.path.join(tmp_path, f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    pixels = rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "vec": [list(v) for v in rng.normal(size=(n, 3))],
        "bytes": list(rng.integers(0, 256, (n, 4), dtype=np.uint8)),
        "file": paths,
        "camera": list(pixels),
        "title": [f"frame {i}" for i in range(n)],
        "flag": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 2, n)),
        "colour": [None if i % 5 == 0 else ["red", "blue", "green"][i % 3] for i in range(n)],
        "tags": [np.nan if i % 7 == 0 else ",".join(["a", "b", "c"][: i % 3 + 1]) for i in range(n)],
        "pos": [np.nan if i % 6 == 0 else [i % 3] * (1 + i % 4) for i in range(n)],
        "score": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        "spend": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n) * 10),
    }, index=np.arange(n) * 10 + 3)
    converters = Converters()
    converters.values.col_mapping["camera"] = ImageArrayInput
    converters.values.col_mapping["title"] = TextInput
    converters.type.type_mapping.update(file="img", camera="img", colour="category", tags="multilabel", pos="tokens",
                                        score="continuous", spend="regression", flag="binary", vec="array",
                                        bytes="array", title="text")
    data = converters.build(df, input_cols=["x", "vec", "bytes", "file", "camera", "title"],
                            output_cols=["flag", "colour", "tags", "pos", "score", "spend"])
    return FlowDataset(data)


def assert_same_batches(expected, got):
    assert len(expected) == len(got) > 0
    for a, b in zip(expected, got):
        assert list(a) == list(b) == ["inputs", "targets", "available", "index", "valid"]
        for key in ("inputs", "targets", "available"):
            assert list(a[key]) == list(b[key])
            for name in a[key]:
                x, y = a[key][name], b[key][name]
                if not isinstance(x, torch.Tensor):
                    assert x == y and isinstance(y, list), (key, name)
                    continue
                assert x.dtype == y.dtype and x.shape == y.shape, (key, name)
                assert torch.equal(x, y), (key, name)
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["valid"], b["valid"])


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2), (2, 3)])
def test_index_batches_are_the_sampler_keys(shuffle, rank, world):
    sampler = ShardedBatchSampler(13, batch_size=5, shuffle=shuffle, seed=3).shard(rank, world)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        keys = [[(i, v is None or bool(v[j])) for j, i in enumerate(p.tolist())] for p, v in sampler.index_batches()]
        assert keys == list(sampler) and len(keys) == len(sampler)
        assert all(p.dtype == torch.long for p, _ in sampler.index_batches())


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("rank,world", [(0, 1), (2, 3)])  # (2, 3): a DDP rank's slices, padding included
def test_batched_fetching_yields_the_per_item_batches(tmp_path, shuffle, rank, world):
    dataset = all_types_frame(tmp_path)
    assert isinstance(dataset.data.inputs["camera"], StoredColumn)
    assert dataset.data.inputs["camera"].values.dtype == torch.uint8  # kept as bytes, floats per batch
    assert dataset.data.inputs["bytes"].values.dtype == torch.uint8
    split = [5, 17, 2, 9, 11, 0, 20, 14, 3, 8, 22, 1, 6]
    sampler = ShardedBatchSampler(len(split), batch_size=5, shuffle=shuffle, seed=7).shard(rank, world)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        per_item = list(DataLoader(PaddingMarkedSubset(dataset, split), batch_sampler=sampler))
        batched = list(DataLoader(BatchedSubset(dataset, split), batch_sampler=sampler, collate_fn=collate_batch))
        loader = DataLoader(BatchedSubset(dataset, split), batch_sampler=sampler, collate_fn=collate_batch)
        assert_same_batches(per_item, batched)
        assert_same_batches(per_item, list(DeviceBatches(loader, CPU, "resident")))
        assert_same_batches(per_item, list(DeviceBatches(loader, CPU, "pinned")))
    if world > 1:
        assert any(not b["valid"].all() for b in per_item)  # the padding was there, and marked the same way
    if shuffle:
        assert [b["index"].tolist() for b in per_item] != sorted([b["index"].tolist() for b in per_item])


def test_batch_equals_items_and_checks_range():
    data = Converters().build(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, None, 0]}), "x", "y")
    dataset = FlowDataset(data)
    batch = dataset.batch([-1, 0])
    assert batch["index"].tolist() == [2, 0] and batch["inputs"]["x"].tolist() == [3.0, 1.0]
    with pytest.raises(IndexError, match="out of range for 3 rows"):
        dataset.batch([0, 3])


def test_stored_column_decodes_rows_as_batches_and_never_in_place():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    column = StoredColumn(values, "x", scale=2.0)
    assert column[1].tolist() == [1.5, 2.0] and column[-2].tolist() == [0.5, 1.0]
    assert take(column, torch.tensor([1, 1])).tolist() == [[1.5, 2.0], [1.5, 2.0]]
    assert values.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # float32 stored: decoding copied before dividing
    with pytest.raises(IndexError):
        column[2]


def test_security_images_share_the_frame_memory():
    df = security_frame(30, seed=1)
    column = ImageArrayInput().build_column(df["img"], "img")
    # One copy of the pixels: the column is the frame's array, not a stack of it.
    assert column.values.data_ptr() == df["img"].iloc[0].ctypes.data
    assert column[3].dtype == torch.float32 and column[3].shape == (3, 64, 64)
    assert torch.equal(column[3], torch.from_numpy(df["img"].iloc[3]).permute(2, 0, 1).float() / 255)
    shuffled = ImageArrayInput().build_column(df["img"].iloc[::-1], "img")  # not in block order: copied
    assert shuffled.values.data_ptr() != column.values.data_ptr() and torch.equal(shuffled[0], column[29])


def test_default_workers_and_placement_modes(tmp_path):
    dataset = all_types_frame(tmp_path)
    assert not dataset.in_memory and default_num_workers(dataset) >= 1  # image files are decoded in workers
    in_memory = FlowDataset(dataset.data, input_names=["x", "vec", "camera"])
    assert in_memory.in_memory and default_num_workers(in_memory) == 0
    listed = FlowDataset(dataset.data, input_names=["x", "title"])  # a plain list: no workers either
    assert not listed.in_memory and not listed.reads_per_item and default_num_workers(listed) == 0
    loader = DataLoader(BatchedSubset(dataset, [0, 1]), batch_sampler=ShardedBatchSampler(2, 2),
                        collate_fn=collate_batch)
    assert resolve_mode("auto", loader, CPU) == "off"  # image files on the CPU: the DataLoader's workers read them
    memory_loader = DataLoader(BatchedSubset(in_memory, [0, 1]), batch_sampler=ShardedBatchSampler(2, 2),
                               collate_fn=collate_batch)
    assert resolve_mode("auto", memory_loader, CPU) == "pinned"  # in memory: gathered from the tensors directly
    assert resolve_mode("pinned", loader, CPU) == "pinned" and resolve_mode("resident", loader, CPU) == "resident"


def test_bad_device_data_is_refused(tmp_path):
    project, model = tabular_project(tmp_path)
    with pytest.raises(ValueError, match="device_data must be one of"):
        project.runner(model, "bad", device_data="gpu")


def tabular_project(tmp_path, n=300):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                       "bytes": list(rng.integers(0, 256, (n, 4), dtype=np.uint8))})
    df["active"] = (x[:, 0] > 0).astype(float)
    df["segment"] = np.where(x[:, 0] > 0, np.digitize(x[:, 1], [-0.5, 0.5]), np.nan)
    df["spend"] = np.where(x[:, 0] <= 0, 2 * x[:, 2], np.nan)
    converters = Converters()
    converters.type.type_mapping.update(active="binary", segment="category", spend="regression", bytes="array")
    project = Project(df, ["a", "b", "c", "bytes"], ["active", "segment", "spend"], converters=converters,
                      project_dir=str(tmp_path))

    @project.add_flow
    def customers(flow, x, out):
        out += flow.active(x.features)
        out += flow.segment(x.features) | out.active
        out += flow.spend(x.features) | ~out.active
        return out

    torch.manual_seed(0)
    return project, tabular_model(project, hidden=16, dropout=0.3)  # dropout: the RNG stream must match too


def test_resident_and_pinned_train_exactly_like_the_dataloader(tmp_path):
    results = {}
    for mode in ("off", "resident", "pinned"):
        project, model = tabular_project(tmp_path / mode)
        runner = project.runner(model, "run", batch_size=32, seed=5, device_data=mode, engine=None)
        runner.interpretation_k = 0
        runner.train(num_epochs=2, lr=3e-3)
        runner.infer(splits=["test"], checkpoint="last")
        stored = runner._stored("test")[3]
        results[mode] = ({k: v.clone() for k, v in runner.model.state_dict().items()},
                         {task: stored[task]["logits"] for task in stored},
                         runner.experiment_metrics[2]["valid"]["loss"])
    reference = results["off"]
    for mode in ("resident", "pinned"):
        weights, logits, loss = results[mode]
        assert weights.keys() == reference[0].keys()
        assert all(torch.equal(weights[k], reference[0][k]) for k in weights), mode
        assert all(torch.equal(logits[t], reference[1][t]) for t in logits), mode
        assert loss == reference[2], mode


def test_numpy_row_labels_print_as_plain_numbers():
    df = pd.DataFrame({"x": [1.0, np.inf], "y": [1.0, 0.0]}, index=np.array([4, 5], dtype=np.int64))
    with pytest.raises(ConverterError, match=r"infinite value at row 5 \(") as error:
        Converters().build(df, input_cols="x", output_cols="y")
    assert "np." not in str(error.value)
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, np.inf]}, index=np.array([4, 5], dtype=np.int64))
    converters = Converters()
    converters.type.type_mapping["y"] = "regression"
    with pytest.raises(ConverterError, match=r"at row 5; use NaN") as error:
        converters.build(df, input_cols="x", output_cols="y")
    assert "np." not in str(error.value)


def test_accelerate_package_lookup_runs_once_per_process():
    import accelerate.accelerator
    import accelerate.optimizer

    from dnn_cool_catalyst import compat

    compat.apply()
    original = compat.original("accelerate_lomo_lookup")
    assert accelerate.optimizer.is_lomo_available is accelerate.accelerator.is_lomo_available
    assert accelerate.optimizer.is_lomo_available is not original
    assert accelerate.optimizer.is_lomo_available() is bool(original())


def test_readme_data_path_example_runs(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Data path and device-resident data", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "['available', 'index', 'inputs', 'targets', 'valid'] (64,)" in printed
    assert (tmp_path / "datapath_project" / "exp" / "checkpoints" / "runner.last.pth").exists()


def test_fused_binary_statistics_equal_per_task_statistics():
    from dnn_cool_catalyst import BinaryTask, ClassificationTask, TaskFlow
    from dnn_cool_catalyst.measures.metrics import FlowMetrics, TaskMetric

    tasks = [BinaryTask("a", 4), BinaryTask("b", 4, threshold=0.7), BinaryTask("c", 4),
             ClassificationTask("k", 3, in_features=4)]

    def flow_fn(flow, x, out):
        out += flow.a(x.features)
        out += flow.b(x.features) | out.a
        out += flow.c(x.features) | ~out.a
        out += flow.k(x.features)
        return out

    flow = TaskFlow.from_function(flow_fn, tasks)
    g = torch.Generator().manual_seed(1)
    n = 50
    module = flow.torch()
    outputs = module({"features": torch.randn(n, 4, generator=g)})
    coin = {name: (torch.rand(n, generator=g) > 0.5).float() for name in "abc"}
    batch = {"targets": {**coin, "k": torch.randint(0, 3, (n,), generator=g)},
             "available": {name: torch.rand(n, generator=g) > 0.2 for name in "abck"}, "index": torch.arange(n)}
    fused = FlowMetrics(flow.graph)
    assert fused._fusable_binary(*_labels_logits(flow, outputs, batch)) == ["a", "b", "c"]
    fused.update(outputs, batch)
    fused.update(outputs, batch)
    fused.flush()
    logits, targets, masks = _labels_logits(flow, outputs, batch)
    for name, metric in fused.metrics.items():
        one = TaskMetric(metric.task)
        one.update(logits[name], targets[name], masks[name])
        one.update(logits[name], targets[name], masks[name])
        assert torch.equal(metric.state, one.state), name
        assert metric.num_samples == one.num_samples > 0, name


def _labels_logits(flow, outputs, batch):
    from dnn_cool_catalyst.graph.batch import batch_labels, ground_truth_masks, output_logits

    labels = batch_labels(flow.graph, batch)
    masks = ground_truth_masks(flow.graph, batch, labels)
    return output_logits(flow.graph, outputs, len(batch["index"])), labels[0], masks
