"""Input converters: a DataFrame column -> a sequence-like of tensors (``len`` and ``[i]``), one per row.

Inputs are not tasks, so they have no availability: a missing or non-finite input is an error.

- ``"img"``: file paths; the files are checked to exist at build time and loaded lazily on ``[i]`` as RGB,
  float32, CHW in [0, 1];
- ``"array"``: cells holding arrays or lists of numbers of one common shape -> a float32 tensor ``(N, ...)``;
- ``"numeric"``: a scalar numeric column -> a float32 tensor ``(N,)``.

Example:
    >>> import pandas as pd
    >>> NumericInput().build_column(pd.Series([1, 2.5]), "age")
    tensor([1.0000, 2.5000])
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np
import pandas as pd
import torch

from .columns import StoredColumn, stack_rows
from .values import ConverterError, _plain, as_float, preview


class InputConverter:
    """Base class of input converters. Inputs carry no fitted state; the methods exist for uniformity."""

    type_name = "input"
    role = "input"

    def fit(self, series: pd.Series, column: str) -> "InputConverter":
        return self

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def build_column(self, series: pd.Series, column: str):
        """Return a sequence-like of length ``len(series)`` whose ``[i]`` is a tensor."""
        raise NotImplementedError

    @staticmethod
    def require_no_missing(series: pd.Series, column: str, type_name: str) -> None:
        missing = series.isna().to_numpy(dtype=bool)
        if missing.any():
            rows = series.index[missing]
            raise ConverterError(f"{type_name} input column '{column}' has {int(missing.sum())} missing value(s) at "
                                 f"rows {preview(rows)}; input columns cannot have NaN")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- images ----------------------------------------------------------------------------------------------

class ImageColumn:
    """Lazily loaded images: ``column[i]`` reads the file only when asked (so it also works in DataLoader workers).

    ``transform`` (optional) is applied to the CHW float tensor, e.g. to resize images to one size.
    """

    def __init__(self, paths: List[str], column: str, transform: Optional[Callable] = None):
        self.paths = list(paths)
        self.column = column
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.paths[i]
        tensor = load_image(path, self.column)
        return self.transform(tensor) if self.transform is not None else tensor

    def __repr__(self) -> str:
        return f"ImageColumn({self.column!r}, {len(self)} images)"


def load_image(path: str, column: str = "?") -> torch.Tensor:
    """Read an image file as RGB float32 CHW in [0, 1]; unreadable files raise :class:`ConverterError`."""
    from PIL import Image, UnidentifiedImageError  # optional at import time: only image inputs need Pillow

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ConverterError(f"img input column '{column}': cannot read image {path!r}: {e}") from e
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageInput(InputConverter):
    """Image paths (str or Path, PNG/JPEG); relative paths are resolved against ``root`` when given.

    Example:
        >>> import os, tempfile, pandas as pd
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("RGB", (4, 3)).save(path)
        >>> ImageInput().build_column(pd.Series([path]), "img")[0].shape
        torch.Size([3, 3, 4])
    """

    type_name = "img"

    def __init__(self, root: Optional[str] = None, transform: Optional[Callable] = None):
        self.root = None if root is None else os.fspath(root)
        self.transform = transform

    def build_column(self, series, column):
        self.require_no_missing(series, column, self.type_name)
        is_path = series.map(lambda v: isinstance(v, (str, os.PathLike))).to_numpy(dtype=bool)
        if not is_path.all():
            raise ConverterError(f"img input column '{column}': expected file paths, got {preview(series[~is_path])}")
        paths = [os.fspath(p) for p in series]
        if self.root is not None:
            paths = [os.path.join(self.root, p) for p in paths]
        # Checking existence up front turns a crash in epoch 3 into an error before training starts.
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ConverterError(f"img input column '{column}': {len(missing)} file(s) not found: "
                                 f"{preview(missing)}")
        return ImageColumn(paths, column, self.transform)


# -- arrays and numbers ----------------------------------------------------------------------------------

class ArrayInput(InputConverter):
    """Cells holding arrays / lists of numbers, all of one shape -> float32 tensor ``(N, *shape)``; uint8 arrays
    are kept as uint8 (:class:`~dnn_cool_catalyst.data.columns.StoredColumn`) and give float32 rows and batches.

    Example:
        >>> import numpy as np, pandas as pd
        >>> ArrayInput().build_column(pd.Series([[1, 2], np.array([3, 4])]), "features").shape
        torch.Size([2, 2])
    """

    type_name = "array"

    def build_column(self, series, column):
        self.require_no_missing(series, column, self.type_name)
        cells = series.to_list()
        if cells and all(isinstance(c, np.ndarray) and c.dtype == np.uint8 and c.shape == cells[0].shape
                         for c in cells):
            # Bytes (e.g. pixels) stay bytes in memory, a quarter of float32; batches are converted when taken.
            return StoredColumn(torch.from_numpy(stack_rows(cells)), column)
        arrays = []
        first_shape = None
        for row, cell in series.items():  # cells are separate Python objects; stacking needs each one
            arr = self._cell(cell, column, row)
            if first_shape is None:
                first_shape = (row, arr.shape)
            elif arr.shape != first_shape[1]:
                raise ConverterError(f"array input column '{column}': cells have different shapes: "
                                     f"{first_shape[1]} at row {first_shape[0]!r} and {arr.shape} at row {row!r}")
            arrays.append(arr)
        stacked = np.stack(arrays) if arrays else np.zeros((0,), dtype=np.float64)
        bad = ~np.isfinite(stacked.reshape(len(arrays), -1)).all(axis=1) if arrays else np.zeros(0, dtype=bool)
        if bad.any():
            raise ConverterError(f"array input column '{column}': NaN or inf at row "
                                 f"{_plain(series.index[int(np.flatnonzero(bad)[0])])!r} ({int(bad.sum())} row(s))")
        return torch.from_numpy(stacked.astype(np.float32))

    @staticmethod
    def _cell(cell, column, row) -> np.ndarray:
        if not isinstance(cell, (list, tuple, np.ndarray, torch.Tensor)):
            raise ConverterError(f"array input column '{column}': row {row!r} holds {cell!r}; expected an array "
                                 f"or a list of numbers")
        try:
            arr = np.asarray(cell, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise ConverterError(f"array input column '{column}': row {row!r} is not a numeric array "
                                 f"({e})") from None
        return arr


class NumericInput(InputConverter):
    """A scalar numeric column -> float32 tensor ``(N,)`` (each row a 0-d tensor)."""

    type_name = "numeric"

    def build_column(self, series, column):
        self.require_no_missing(series, column, self.type_name)
        floats = as_float(series, column, "numeric input", "numbers")
        bad = ~np.isfinite(floats)
        if bad.any():
            raise ConverterError(f"numeric input column '{column}': infinite value at row "
                                 f"{_plain(series.index[int(np.flatnonzero(bad)[0])])!r} ({int(bad.sum())} "
                                 f"row(s)); inputs must be finite numbers")
        return torch.from_numpy(floats.astype(np.float32))


#: Default input converters by type name (zero-arg factories).
INPUT_CONVERTERS = {
    "img": ImageInput,
    "array": ArrayInput,
    "numeric": NumericInput,
}
