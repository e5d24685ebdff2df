"""The torch Dataset over :class:`ConvertedData`.

Each item is a nested dict of tensors, so the DataLoader's default collate batches it:

``{"inputs": {col: x}, "targets": {task: y}, "available": {task: mask}, "index": position}``

``index`` is the row's position in ``data`` (``data.row_ids[index]`` is the DataFrame label), which stays
correct under ``torch.utils.data.Subset`` and shuffling.

:meth:`FlowDataset.batch` gives the same batch without per-item dicts or collation: every column is indexed with
the batch's positions at once (``data/columns.py``). The runner's loaders use it (``parallel/sampler.py``,
``BatchedSubset``); ``dataset[i]`` stays for per-item use.

Example:
    >>> import pandas as pd, torch
    >>> from dnn_cool_catalyst.data import Converters
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, None, 0]}, index=[10, 20, 30])
    >>> ds = FlowDataset(Converters().build(df, input_cols=["x"], output_cols=["y"]))
    >>> batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    >>> batch["targets"]["y"].tolist(), batch["available"]["y"].tolist(), batch["index"].tolist()
    ([1.0, 0.0, 0.0], [True, False, True], [0, 1, 2])
    >>> ds.batch([2, 0])["inputs"]["x"].tolist()
    [3.0, 1.0]
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from .cells import plain_value
from .columns import in_memory, reads_per_item, take
from .converters import ConvertedData
from ..errors import ConverterError


class FlowDataset(Dataset):
    """``task_names`` / ``input_names`` select which output / input columns to include (default: all)."""

    def __init__(self, data: ConvertedData, task_names: Optional[Sequence[str]] = None,
                 input_names: Optional[Sequence[str]] = None):
        self.data = data
        self.task_names = list(data.targets) if task_names is None else list(task_names)
        self.input_names = list(data.inputs) if input_names is None else list(input_names)
        for kind, names, known in (("task", self.task_names, data.targets), ("input", self.input_names, data.inputs)):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ConverterError(f"FlowDataset: unknown {kind} column(s) {unknown}; converted {kind} columns are "
                                     f"{list(known)}")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i) -> dict:
        i = int(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"FlowDataset index {i} out of range for {n} rows")
        i %= n
        # Clone the target rows: a view would drag the whole column's storage into worker IPC.
        return {
            "inputs": {name: self.data.inputs[name][i] for name in self.input_names},
            "targets": {name: self.data.targets[name][i].clone() for name in self.task_names},
            "available": {name: self.data.available[name][i].clone() for name in self.task_names},
            "index": torch.tensor(i, dtype=torch.long),
        }

    def batch(self, positions) -> dict:
        """Rows ``positions`` as one batch: equal, tensor for tensor, to the default collate of
        ``[self[i] for i in positions]``, without building either."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        n = len(self)
        if positions.device.type == "cpu" and positions.numel():  # on a device the check would wait for it
            low, high = int(positions.min()), int(positions.max())
            if low < -n or high >= n:
                raise IndexError(f"FlowDataset index {low if low < -n else high} out of range for {n} rows")
            if low < 0:
                positions = positions % n
        return {
            "inputs": {name: take(self.data.inputs[name], positions) for name in self.input_names},
            "targets": {name: self.data.targets[name].index_select(0, positions) for name in self.task_names},
            "available": {name: self.data.available[name].index_select(0, positions) for name in self.task_names},
            "index": positions,
        }

    @property
    def in_memory(self) -> bool:
        """Whether every input column is in memory (a batch is then an index, needing no worker processes)."""
        return all(in_memory(self.data.inputs[name]) for name in self.input_names)

    @property
    def reads_per_item(self) -> bool:
        """Whether some input column reads per row (image files): the only case for DataLoader workers."""
        return any(reads_per_item(self.data.inputs[name]) for name in self.input_names)

    def row_id(self, i: int):
        """The DataFrame index label of position ``i``, as a Python scalar (``row_ids[i]`` of an index is a numpy
        one, which JSON cannot write)."""
        return plain_value(self.data.row_ids[i])
