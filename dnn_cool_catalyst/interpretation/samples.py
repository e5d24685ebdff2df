"""Reading back the inputs and DataFrame row ids of samples picked by their dataset index."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset


def plain(value):
    """numpy scalars → Python scalars, so row ids print and serialise like the DataFrame's labels."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


class SampleSource:
    """Inputs, input types and row ids of a dataset by dataset index.

    ``dataset`` may be wrapped in ``Subset``s (as the runner's loaders are): ``batch["index"]`` is the index in
    the innermost dataset, so that is the one read. For a :class:`~dnn_cool_catalyst.data.FlowDataset` only the
    input columns are read (no targets) and types come from its converters; for any other dataset the item's
    ``"inputs"`` are read and types are unknown."""

    def __init__(self, dataset):
        while isinstance(dataset, Subset):
            dataset = dataset.dataset
        self.dataset = dataset
        data = getattr(dataset, "data", None)
        self._data = data if hasattr(data, "inputs") and hasattr(data, "types") else None

    @property
    def types(self) -> Dict[str, Optional[str]]:
        if self._data is not None:
            names = getattr(self.dataset, "input_names", list(self._data.inputs))
            return {name: self._data.types.get(name) for name in names}
        if len(self.dataset) == 0:
            return {}
        return {name: None for name in self.dataset[0]["inputs"]}

    def inputs(self, position: int, names: Optional[Sequence[str]] = None) -> dict:
        """The sample's inputs by column (only ``names`` when given and the dataset stores columns)."""
        if self._data is not None:
            return {name: self._data.inputs[name][position] for name in (self.types if names is None else names)}
        return dict(self.dataset[position]["inputs"])

    def numbers(self, positions: Sequence[int], names: Sequence[str]) -> Dict[str, Dict[int, float]]:
        """``{column: {position: value}}`` for those of ``names`` stored as one number per sample (a 1-D
        tensor), as Python numbers: one gather per column instead of one tensor per sample and column."""
        if self._data is None or not positions:
            return {}
        rows = torch.as_tensor(list(positions), dtype=torch.long)
        found = {}
        for name in names:
            column = self._data.inputs.get(name)
            if isinstance(column, torch.Tensor) and column.dim() == 1:
                found[name] = dict(zip(positions, column.index_select(0, rows).tolist()))
        return found

    def batch(self, positions) -> dict:
        """The samples at dataset ``positions`` as one batch (inputs, targets, available, index), as a loader of
        the dataset would give them."""
        fetch = getattr(self.dataset, "batch", None)
        if callable(fetch):
            return dict(fetch(list(positions)))
        from torch.utils.data import default_collate

        return dict(default_collate([self.dataset[int(p)] for p in positions]))

    def row_id(self, position: int):
        row_id = getattr(self.dataset, "row_id", None)
        return plain(row_id(position)) if row_id is not None else position

    def row_ids(self, positions: Sequence[int]) -> list:
        """:meth:`row_id` of each position: one take from the frame's index for a project's dataset (a split of
        10^6 rows looked up label by label in a ``pandas.Index`` takes seconds)."""
        ids = getattr(self._data, "row_ids", None)
        if isinstance(ids, pd.Index) and callable(getattr(self.dataset, "row_id", None)):
            return ids.take(np.asarray(positions, dtype=np.int64)).tolist()
        return [self.row_id(p) for p in positions]
