import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from dnn_cool_catalyst import atomic
from dnn_cool_catalyst.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from dnn_cool_catalyst.data import ConvertedData, ConverterError, Converters, FlowDataset

nan = np.nan


def build(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (6, 4), (i * 40, 0, 0)).save(path)
        paths.append(str(path))
    df = pd.DataFrame({
        "img": paths,
        "feat": [np.full(3, float(i)) for i in range(5)],
        "door_open": [1, 0, nan, 1, 0],
        "shirt": ["a", "b", "c", nan, "a"],
        "facial": ["x", "", nan, "x,y", "y"],
        "pos": [[1, 2], [3], nan, [1, 1, 1], []],
    }, index=[50, 40, 30, 20, 10])
    return Converters().build(df, input_cols=["img", "feat"], output_cols=["door_open", "shirt", "facial", "pos"])


def test_item_structure(tmp_path):
    data = build(tmp_path)
    assert isinstance(data, ConvertedData)
    ds = FlowDataset(data)
    item = ds[2]
    assert set(item) == {"inputs", "targets", "available", "index"}
    assert set(item["inputs"]) == {"img", "feat"}
    assert set(item["targets"]) == set(item["available"]) == {"door_open", "shirt", "facial", "pos"}
    assert item["inputs"]["img"].shape == (3, 4, 6)
    assert item["inputs"]["feat"].tolist() == [2.0, 2.0, 2.0]
    assert item["available"]["door_open"].item() is False
    assert item["available"]["facial"].tolist() == [False, False]
    assert item["available"]["pos"].tolist() == [False, False, False]
    assert item["index"].dtype == torch.long and item["index"].item() == 2
    assert ds.row_id(2) == 30


def test_task_names_select_outputs(tmp_path):
    ds = FlowDataset(build(tmp_path), task_names=["shirt"])
    item = ds[0]
    assert list(item["targets"]) == list(item["available"]) == ["shirt"]
    with pytest.raises(ConverterError, match="nope"):
        FlowDataset(ds.data, task_names=["nope"])
    with pytest.raises(IndexError):
        ds[5]


def test_dataloader_collates_batches(tmp_path):
    data = build(tmp_path)
    loader = DataLoader(FlowDataset(data), batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch["inputs"]["img"].shape == (4, 3, 4, 6)
    assert batch["inputs"]["feat"].shape == (4, 3)
    assert batch["targets"]["door_open"].shape == (4,) and batch["targets"]["door_open"].dtype == torch.float32
    assert batch["targets"]["shirt"].dtype == torch.int64
    assert batch["targets"]["facial"].shape == batch["available"]["facial"].shape == (4, 2)
    assert batch["targets"]["pos"].shape == batch["available"]["pos"].shape == (4, 3)
    assert batch["available"]["door_open"].tolist() == [True, True, False, True]
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_index_is_position_and_row_ids_are_labels(tmp_path):
    data = build(tmp_path)
    assert list(data.row_ids) == [50, 40, 30, 20, 10]
    subset = Subset(FlowDataset(data), [4, 1])
    batch = next(iter(DataLoader(subset, batch_size=2)))
    assert batch["index"].tolist() == [4, 1]
    assert [data.row_ids[i] for i in batch["index"].tolist()] == [10, 40]
    assert batch["targets"]["shirt"].tolist() == [0, 1]


@pytest.mark.parametrize("index", [[50, 40, 30, 20, 10], ["e", "d", "c", "b", "a"]])
def test_row_ids_of_many_positions_at_once_are_each_positions_python_label(tmp_path, index):
    from dnn_cool_catalyst.interpretation import SampleSource

    data = build(tmp_path)
    data.row_ids = pd.Index(index)
    source = SampleSource(Subset(FlowDataset(data), [4, 1]))
    positions = np.array([4, 1, 1, 0])
    labels = source.row_ids(positions)
    assert labels == [source.row_id(p) for p in positions] == [index[4], index[1], index[1], index[0]]
    assert all(type(label) is type(index[0]) for label in labels)  # Python scalars: JSON writes them
    assert source.row_ids([]) == []


# -- atomic writes ---------------------------------------------------------------------------------------

def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "new" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert path.read_text() == "two" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["f.txt"]


def test_atomic_write_failing_midway_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write_json(path, {"not serialisable": object()})
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]
