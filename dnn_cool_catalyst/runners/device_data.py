"""Where a split's batches are gathered: ``device_data`` of :class:`~dnn_cool_catalyst.runners.DnnCoolSupervisedRunner`.

- ``"off"``: the split's DataLoader (batched fetching on the CPU, ``parallel/sampler.py`` ``BatchedSubset``);
  the engine moves each batch to the device.
- ``"resident"``: the split's in-memory tensors are copied to the device once (image bytes stay bytes) and every
  batch is gathered there by index, then decoded there (uint8 -> float). No per-batch host work but the keys
  (and columns read per item, e.g. image files, which are read on the CPU and copied).
- ``"pinned"``: batches are gathered on the CPU in their stored dtype, copied from pinned memory with
  ``non_blocking`` (the next batch is on its way while the current one is used) and decoded on the device.
- ``"auto"`` (the default): on a CUDA device, ``"resident"`` when every input column is in memory and the split's
  tensors take at most :data:`RESIDENT_FRACTION` of the free device memory, else ``"pinned"``. On the CPU,
  ``"pinned"`` when every input column is in memory: batches are gathered straight from the stored tensors (there
  is nothing to pin or copy; the DataLoader's own machinery cost more than the gathering), else ``"off"``, where
  DataLoader workers read the per-item columns (image files).

All four yield the same batches, in the same order, as the DataLoader: same keys
(``inputs, targets, available, index, valid``), same values, since the batch sampler is the same object.

Example (the CPU stands in for the device):
    >>> import pandas as pd, torch
    >>> from torch.utils.data import DataLoader
    >>> from dnn_cool_catalyst.data import Converters, FlowDataset
    >>> from dnn_cool_catalyst.parallel import BatchedSubset, ShardedBatchSampler, collate_batch
    >>> data = Converters().build(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1, 0, None, 1]}), "x", "y")
    >>> loader = DataLoader(BatchedSubset(FlowDataset(data), [3, 1, 2]), collate_fn=collate_batch,
    ...                     batch_sampler=ShardedBatchSampler(3, batch_size=2))
    >>> [b["index"].tolist() for b in DeviceBatches(loader, torch.device("cpu"), "resident")]
    [[3, 1], [2]]
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.columns import StoredColumn, in_memory, stored, take
from ..parallel.sampler import mark_padding, split_keys

MODES = ("auto", "resident", "pinned", "off")
#: "auto" keeps a split on the GPU only when its tensors take at most this share of the free memory at that time.
RESIDENT_FRACTION = 0.25


def check_mode(device_data) -> str:
    if device_data not in MODES:
        raise ValueError(f"device_data must be one of {MODES}, got {device_data!r}")
    return device_data


def _flow_dataset(loader):
    """The FlowDataset and split positions under a split loader's BatchedSubset, or (None, None)."""
    subset = getattr(loader, "dataset", None)
    flow_dataset = getattr(subset, "dataset", None)
    if getattr(flow_dataset, "data", None) is None or not hasattr(flow_dataset, "input_names"):
        return None, None
    return flow_dataset, subset.indices


def split_bytes(flow_dataset, n_rows: int) -> Optional[int]:
    """Bytes of ``n_rows`` rows of the dataset's tensors as stored; None when an input column is not in memory."""
    data = flow_dataset.data
    if not flow_dataset.in_memory:
        return None
    columns = [stored(data.inputs[name]) for name in flow_dataset.input_names]
    columns += [data.targets[name] for name in flow_dataset.task_names]
    columns += [data.available[name] for name in flow_dataset.task_names]
    per_row = sum(t.element_size() * t[:1].nelement() for t in columns if len(t))
    return per_row * n_rows


def resolve_mode(device_data: str, loader, device: torch.device) -> str:
    """The placement ``device_data`` means for this split loader on ``device`` (see the module docstring)."""
    flow_dataset, indices = _flow_dataset(loader)
    if device_data == "off" or flow_dataset is None:
        return "off"
    if device_data == "auto":
        if device.type != "cuda":
            return "pinned" if flow_dataset.in_memory else "off"
        nbytes = split_bytes(flow_dataset, len(indices))
        free, _ = torch.cuda.mem_get_info(device)
        return "resident" if nbytes is not None and nbytes <= RESIDENT_FRACTION * free else "pinned"
    return device_data


class DeviceBatches:
    """The batches of a split loader (a DataLoader over a ``BatchedSubset`` of a ``FlowDataset``), gathered on
    ``device`` (``mode="resident"``) or copied there from pinned memory (``mode="pinned"``).

    Catalyst and the runner see it as the loader: ``dataset`` (the same ``BatchedSubset``), ``batch_sampler``
    (``set_epoch`` reaches the same sampler), ``batch_size`` (None: read from the sampler), ``len``.
    ``batch_sampler`` may be given to iterate other keys (a DDP rank's slice of the same global batches).
    """

    def __init__(self, loader, device: torch.device, mode: str, batch_sampler=None):
        if mode not in ("resident", "pinned"):
            raise ValueError(f"DeviceBatches mode must be 'resident' or 'pinned', got {mode!r}")
        flow_dataset, indices = _flow_dataset(loader)
        if flow_dataset is None:
            raise ValueError("DeviceBatches needs a DataLoader over a BatchedSubset of a FlowDataset")
        self.dataset, self.device, self.mode = loader.dataset, torch.device(device), mode
        self.batch_sampler = batch_sampler if batch_sampler is not None else loader.batch_sampler
        self.batch_size, self.sampler, self.drop_last = None, None, False  # what Catalyst reads of a DataLoader
        self.num_workers, self.pin_memory = 0, mode == "pinned"
        data = flow_dataset.data
        self._inputs = {name: data.inputs[name] for name in flow_dataset.input_names}
        self._decoders = {name: column.decode for name, column in self._inputs.items()
                          if isinstance(column, StoredColumn)}
        self._targets = {name: data.targets[name] for name in flow_dataset.task_names}
        self._available = {name: data.available[name] for name in flow_dataset.task_names}
        self._index = torch.as_tensor(indices, dtype=torch.long)
        self._rows = self._index  # dataset positions of the split, on the CPU (for columns read per item)
        if mode == "resident":  # the split's rows, in split order, copied to the device once
            rows = self._index

            def move(tensor):
                return tensor.index_select(0, rows).to(self.device)
            # Columns read per item (image files) stay where they are: read per batch, then copied.
            self._inputs = {name: move(stored(column)) if in_memory(column) else column
                            for name, column in self._inputs.items()}
            self._targets = {name: move(t) for name, t in self._targets.items()}
            self._available = {name: move(t) for name, t in self._available.items()}
            self._index = self._index.to(self.device)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        # A DataLoader's iterator draws its workers' base seed from the global RNG; draw it too, so that dropout
        # and every other random op see the same RNG stream as on the DataLoader path (same results, same seed).
        torch.empty((), dtype=torch.int64).random_()
        if self.mode == "resident":
            for positions, valid in self._position_batches():
                yield self._gather(positions, valid)
            return
        pending = None
        for positions, valid in self._position_batches():
            batch = self._transfer(positions, valid)  # issued before the previous batch is handed out: overlap
            if pending is not None:
                yield pending
            pending = batch
        if pending is not None:
            yield pending

    def _position_batches(self):
        """``(positions, valid)`` per batch of the sampler: positions in the split (LongTensor), valid None when
        every sample is real, else a BoolTensor (DDP padding)."""
        index_batches = getattr(self.batch_sampler, "index_batches", None)
        if index_batches is not None:
            yield from index_batches()
            return
        for keys in self.batch_sampler:  # a sampler of keys of its own
            positions, real = split_keys(keys)
            yield torch.tensor(positions, dtype=torch.long), None if all(real) else torch.tensor(real)

    @staticmethod
    def _marked(batch: dict, n: int, valid: Optional[torch.Tensor], device: torch.device) -> dict:
        if valid is None:
            batch["valid"] = torch.ones(n, dtype=torch.bool, device=device)
            return batch
        batch["valid"] = valid.to(device, non_blocking=True)
        return mark_padding(batch, valid.tolist())

    # -- resident: everything on the device ------------------------------------------------------------------
    def _gather(self, positions: torch.Tensor, valid: Optional[torch.Tensor]) -> dict:
        pos = positions.to(self.device, non_blocking=True)
        inputs = {}
        for name, values in self._inputs.items():
            if not isinstance(values, torch.Tensor):  # read per item
                rows = take(values, self._rows.index_select(0, positions))
                inputs[name] = rows.to(self.device, non_blocking=True) if isinstance(rows, torch.Tensor) else rows
                continue
            rows = values.index_select(0, pos)
            decode = self._decoders.get(name)
            inputs[name] = decode(rows) if decode is not None else rows
        batch = {"inputs": inputs,
                 "targets": {name: t.index_select(0, pos) for name, t in self._targets.items()},
                 "available": {name: t.index_select(0, pos) for name, t in self._available.items()},
                 "index": self._index.index_select(0, pos)}
        return self._marked(batch, len(positions), valid, self.device)

    # -- pinned: gathered on the CPU as stored, decoded on the device (on the CPU: gathered, nothing to copy) --
    def _transfer(self, positions: torch.Tensor, valid: Optional[torch.Tensor]) -> dict:
        rows = self._index.index_select(0, positions)
        if self.device.type == "cpu":  # already where it is used (a no-op .to() per column still costs ~1 us)
            def send(tensor):
                return tensor
        else:
            pin = self.device.type == "cuda"

            def send(tensor):
                tensor = tensor.pin_memory() if pin else tensor
                return tensor.to(self.device, non_blocking=True)
        inputs = {}
        for name, column in self._inputs.items():
            decode = self._decoders.get(name)
            if decode is not None:
                inputs[name] = decode(send(column.values.index_select(0, rows)))
            elif isinstance(column, torch.Tensor):
                inputs[name] = send(column.index_select(0, rows))
            else:  # read per item (image files), or plain lists
                taken = take(column, rows)
                inputs[name] = send(taken) if isinstance(taken, torch.Tensor) else taken
        batch = {"inputs": inputs,
                 "targets": {name: send(t.index_select(0, rows)) for name, t in self._targets.items()},
                 "available": {name: send(t.index_select(0, rows)) for name, t in self._available.items()},
                 "index": send(rows)}
        return self._marked(batch, len(positions), valid, self.device)  # valid stays on the CPU: read as a list
