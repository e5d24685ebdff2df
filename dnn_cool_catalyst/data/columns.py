"""In-memory input columns kept in their stored dtype, and batch gathering over any input column.

A column of ``N`` rows is anything with ``len`` and ``[i]``; three kinds are gathered differently:

- a ``torch.Tensor`` ``(N, ...)``: a batch is ``index_select`` on its first dimension;
- a :class:`StoredColumn`: the stored values (e.g. uint8 pixels, a quarter of the bytes of float32) are gathered,
  then decoded for the batch as a whole (on the device when the values live there);
- anything else (e.g. lazily read image files, or a plain list): one ``[i]`` per row, collated as the
  DataLoader's default collate does (tensors stacked, strings listed). Columns that read something per row
  (:func:`reads_per_item`, e.g. image files) are the only ones worth DataLoader worker processes.

Example:
    >>> import numpy as np, torch
    >>> pixels = StoredColumn(torch.tensor([[0], [255], [51]], dtype=torch.uint8), "grey", scale=255.0)
    >>> pixels[1], take(pixels, torch.tensor([2, 0])).tolist()
    (tensor([1.]), [[0.20000000298023224], [0.0]])
    >>> take(torch.arange(5) * 10, torch.tensor([4, 1])).tolist()
    [40, 10]
    >>> block = np.zeros((3, 2), np.uint8)
    >>> stack_rows(list(block)) is block, stack_rows([block[1], block[0]]) is block
    (True, False)
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data._utils.collate import default_collate


class StoredColumn:
    """``values`` ``(N, ...)`` kept as stored; ``[i]`` and :meth:`take` give float32 (``dtype``) rows divided by
    ``scale`` (when given) and with the row dimensions permuted by ``row_permutation`` (when given, e.g. HWC ->
    CHW). Every row is decoded by the same elementwise operations whether alone or in a batch, so the two agree
    bit for bit."""

    def __init__(self, values: torch.Tensor, column: str, scale: Optional[float] = None,
                 dtype: torch.dtype = torch.float32, row_permutation: Optional[Sequence[int]] = None):
        if not isinstance(values, torch.Tensor) or values.dim() < 1:
            raise TypeError(f"StoredColumn '{column}': values must be a tensor (N, ...), got {type(values).__name__}")
        self.values, self.column, self.scale, self.dtype = values, column, scale, dtype
        self.row_permutation = None if row_permutation is None else tuple(int(d) for d in row_permutation)

    def __len__(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        i = range(len(self))[int(i)]  # IndexError out of range; negative positions count from the end
        return self.decode(self.values[i:i + 1])[0]

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows ``positions`` (a long tensor on the values' device), decoded."""
        return self.decode(self.values.index_select(0, positions))

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Stored rows ``(n, ...)`` (anywhere, e.g. just copied to the GPU) -> the model's rows."""
        if self.row_permutation is not None:
            raw = raw.permute(0, *(1 + d for d in self.row_permutation))
        out = raw.to(self.dtype, memory_format=torch.contiguous_format)
        if self.scale is None:
            return out
        if out.data_ptr() == raw.data_ptr():  # already float and contiguous: never scale the stored values in place
            out = out.clone()
        return out.div_(self.scale)

    def with_values(self, values: torch.Tensor) -> "StoredColumn":
        """The same decoding over other stored rows (a split's, or a copy on another device)."""
        column = object.__new__(type(self))
        column.__dict__.update(self.__dict__)
        column.values = values
        return column

    @property
    def stored_bytes(self) -> int:
        return self.values.element_size() * self.values.nelement()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.column!r}, {len(self)} rows of {tuple(self.values.shape[1:])} "
                f"{self.values.dtype})")


def in_memory(column) -> bool:
    """Whether a batch of ``column`` is an index into memory (a tensor or a :class:`StoredColumn`)."""
    return isinstance(column, (torch.Tensor, StoredColumn))


def stored(column) -> torch.Tensor:
    """The tensor an in-memory column keeps (what moves to a device)."""
    return column.values if isinstance(column, StoredColumn) else column


def take(column, positions: torch.Tensor) -> torch.Tensor:
    """Rows ``positions`` of any column as one batch tensor (see the module docstring)."""
    if isinstance(column, torch.Tensor):
        return column.index_select(0, positions)
    if isinstance(column, StoredColumn):
        return column.take(positions)
    return default_collate([column[i] for i in positions.tolist()])


def reads_per_item(column) -> bool:
    """Whether ``column[i]`` does real work per row (e.g. decodes an image file), unlike tensors and plain lists."""
    return not in_memory(column) and not isinstance(column, (list, tuple, np.ndarray))


def stack_rows(cells: list) -> np.ndarray:
    """``np.stack(cells)``, except when the cells are already rows ``0..N-1`` of one C-contiguous array, in order
    (e.g. ``list(array)``): then that array itself, so the column shares the frame's memory instead of doubling it.
    """
    base = getattr(cells[0], "base", None) if cells else None
    if (isinstance(base, np.ndarray) and base.flags.c_contiguous and base.ndim >= 1 and base.shape[0] == len(cells)
            and all(isinstance(cell, np.ndarray) for cell in cells)
            and base.shape[1:] == cells[0].shape and base.dtype == cells[0].dtype):
        start, step = base.ctypes.data, base.strides[0]
        if all(cell.base is base and cell.ctypes.data == start + i * step for i, cell in enumerate(cells)):
            return base
    return np.stack(cells)
