"""Input converters: a DataFrame column -> a sequence-like of tensors (``len`` and ``[i]``), one per row.

Inputs are not tasks, so they have no availability: a missing or non-finite input is an error, except where a
converter says how to fill it (``NumericInput(missing="indicator")``, the missing code of ``CategoricalInput``).
Fitted input state (a vocabulary, a median) is computed from the rows the Project is built from (inputs only,
never labels), stored in ``converters.json`` and reloaded like an output converter's.

- ``"img"``: file paths; the files are checked to exist at build time and loaded lazily on ``[i]`` as RGB,
  float32, CHW in [0, 1];
- ``"array"``: cells holding arrays or lists of numbers of one common shape -> a float32 tensor ``(N, ...)``;
- ``"numeric"``: a scalar numeric column (bools become 0/1) -> a float32 tensor ``(N,)``, or ``(N, 2)`` holding
  (value, was-missing) with ``missing="indicator"``;
- ``"categorical"``: strings, pandas ``category`` cells or other labels -> int64 codes ``(N,)`` (see
  :class:`CategoricalInput`).

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
from ..tasks.base import label_key
from ..errors import ConverterError
from .cells import as_float, is_int_text, plain_value, preview
from ..messages import warn_user


class InputConverter:
    """Base class of input converters. ``fit`` learns state from the project's rows (default: none);
    ``state_dict`` / ``load_state_dict`` store and reload it, as for output converters."""

    type_name = "input"
    role = "input"

    def fit(self, series: pd.Series, column: str) -> "InputConverter":
        return self

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ConverterError(f"{self.type_name} input converter has no state, got keys {sorted(state)}")

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
            first = plain_value(series.index[int(np.flatnonzero(bad)[0])])
            raise ConverterError(f"array input column '{column}': NaN or inf at row {first!r} ({int(bad.sum())} "
                                 f"row(s))")
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


MISSING_INPUT_MODES = ("error", "indicator")


def check_missing_mode(missing, where: str) -> str:
    if missing not in MISSING_INPUT_MODES:
        raise ConverterError(f"{where}: missing must be one of {list(MISSING_INPUT_MODES)}, got {missing!r}")
    return missing


class NumericInput(InputConverter):
    """A scalar numeric column -> float32 tensor ``(N,)`` (bools become 0.0/1.0).

    ``missing``: ``"error"`` refuses NaN (the default); ``"indicator"`` fills NaN with the median of the
    column's non-missing values (fitted on the rows the Project is built from, stored, reused at inference) and
    returns ``(N, 2)``: the filled value and a was-missing 0/1 column. ``None`` takes the project-wide
    ``Converters(missing_inputs=...)``.

    Example:
        >>> import pandas as pd
        >>> NumericInput(missing="indicator").fit(pd.Series([1.0, None, 5.0, 4.0]), "age").build_column(
        ...     pd.Series([1.0, None]), "age").tolist()
        [[1.0, 0.0], [4.0, 1.0]]
    """

    type_name = "numeric"

    def __init__(self, missing: Optional[str] = None):
        self.missing = None if missing is None else check_missing_mode(missing, "NumericInput")
        self.median: Optional[float] = None

    @property
    def mode(self) -> str:
        return self.missing or "error"

    def fit(self, series, column):
        if self.mode == "indicator":
            present = series.dropna()
            if len(present) == 0:
                raise ConverterError(f"numeric input column '{column}' has no values (all NaN); nothing to impute "
                                     f"from")
            floats = self._finite(present, column)
            self.median = float(np.median(floats))
        return self

    def state_dict(self):
        return {"missing": "indicator", "median": self.median} if self.mode == "indicator" else {}

    def load_state_dict(self, state):
        stored = state.get("missing", "error") if isinstance(state, dict) else None
        if stored not in MISSING_INPUT_MODES:
            raise ConverterError(f"numeric input state must have 'missing' in {list(MISSING_INPUT_MODES)}, got "
                                 f"{state!r}")
        if stored != self.mode:
            raise ConverterError(f"numeric input converter has missing={self.mode!r} but its saved state was fitted "
                                 f"with missing={stored!r}")
        if stored == "indicator":
            median = state.get("median")
            if isinstance(median, bool) or not isinstance(median, (int, float)) or not np.isfinite(median):
                raise ConverterError(f"numeric input state needs a finite 'median', got {state!r}")
            self.median = float(median)

    def _finite(self, series, column):
        floats = as_float(series, column, "numeric input", "numbers")
        bad = ~np.isfinite(floats)
        if bad.any():
            raise ConverterError(f"numeric input column '{column}': infinite value at row "
                                 f"{plain_value(series.index[int(np.flatnonzero(bad)[0])])!r} ({int(bad.sum())} "
                                 f"row(s)); inputs must be finite numbers")
        return floats

    def build_column(self, series, column):
        if self.mode != "indicator":
            if series.isna().any():
                missing = series.isna().to_numpy(dtype=bool)
                raise ConverterError(f"numeric input column '{column}' has {int(missing.sum())} missing value(s) at "
                                     f"rows {preview(series.index[missing])}; input columns cannot have NaN (or "
                                     f"use NumericInput(missing='indicator') / Converters(missing_inputs="
                                     f"'indicator') to impute the median and add a was-missing column)")
            return torch.from_numpy(self._finite(series, column).astype(np.float32))
        if self.median is None:
            raise ConverterError(f"numeric input converter for column '{column}' is not fitted: call fit() first")
        missing = series.isna().to_numpy(dtype=bool)
        floats = np.full(len(series), self.median, dtype=np.float64)
        floats[~missing] = self._finite(series[~missing], column)
        return torch.from_numpy(np.stack([floats, missing.astype(np.float64)], axis=1).astype(np.float32))


class CategoricalInput(InputConverter):
    """Strings, pandas ``category`` cells, bools or integer labels -> int64 codes ``(N,)``.

    Codes: ``0`` = unknown (a value not in the fitted vocabulary), ``1`` = missing (NaN), ``2 + i`` = the i-th
    vocabulary value (sorted). The vocabulary is fitted state; a value unseen when the state is reloaded maps to
    the unknown code with one warning per column naming the values. ``num_codes`` is the embedding size.

    Example:
        >>> import pandas as pd
        >>> conv = CategoricalInput().fit(pd.Series(["Biscoe", "Dream", None]), "island")
        >>> conv.vocab, conv.build_column(pd.Series(["Dream", None, "Biscoe"]), "island").tolist()
        (['Biscoe', 'Dream'], [3, 1, 2])
    """

    type_name = "categorical"
    UNKNOWN, MISSING, FIRST = 0, 1, 2

    def __init__(self):
        self.vocab: Optional[List[str]] = None

    @property
    def num_codes(self) -> int:
        return self.FIRST + len(self.vocab or [])

    @staticmethod
    def _keys(series: pd.Series) -> pd.Series:
        # Labels keyed as class names are (3.0 is the label 3, as NaN turns an int column into floats).
        return series.astype(object).map(lambda v: label_key(v) or str(v))

    def fit(self, series, column):
        present = series.dropna()
        if len(present) == 0:
            raise ConverterError(f"categorical input column '{column}' has no values (all NaN)")
        keys = pd.unique(self._keys(present).to_numpy())
        ints = all(is_int_text(k) for k in keys)
        self.vocab = sorted(keys, key=int) if ints else sorted(keys)
        return self

    def state_dict(self):
        return {"vocab": list(self.vocab or [])}

    def load_state_dict(self, state):
        vocab = state.get("vocab") if isinstance(state, dict) else None
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
            raise ConverterError(f"categorical input state needs 'vocab', a list of distinct strings, got {state!r}")
        self.vocab = list(vocab)

    def build_column(self, series, column):
        if self.vocab is None:
            raise ConverterError(f"categorical input converter for column '{column}' is not fitted: call fit() "
                                 f"first")
        missing = series.isna().to_numpy(dtype=bool)
        codes = np.full(len(series), self.MISSING, dtype=np.int64)
        keys = self._keys(series[~missing])
        ids = pd.Index(self.vocab).get_indexer(keys.to_numpy())
        codes[~missing] = np.where(ids >= 0, ids + self.FIRST, self.UNKNOWN)
        if (ids < 0).any():
            unseen = pd.unique(keys[ids < 0].to_numpy())
            warn_user(f"categorical input column '{column}': {len(unseen)} value(s) not seen when its vocabulary "
                      f"was fitted map to the 'unknown' code: {preview(unseen)}")
        return torch.from_numpy(codes)



#: Default input converters by type name (zero-arg factories).
INPUT_CONVERTERS = {
    "img": ImageInput,
    "array": ArrayInput,
    "numeric": NumericInput,
    "categorical": CategoricalInput,
}
