"""The one float32 check on converted columns: every value a model will see must be finite *after* conversion.

A finite float64 beyond float32's range (about 3.4e38) becomes inf when a converter casts it, and training then
fails with a NaN naming no column. :class:`~dnn_cool_catalyst.data.Converters` calls :func:`require_finite_float32`
on every converted input and target tensor, so custom converters are covered too.

Example:
    >>> import pandas as pd, torch
    >>> series = pd.Series([1.0, 1e39], index=["a", "b"])
    >>> require_finite_float32(torch.tensor(series.to_numpy(), dtype=torch.float32), series, "price", "input")
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.ConverterError: input column 'price': value 1e+39 at row 'b' is not finite in float32 (inf after conversion; float32 holds magnitudes up to 3.4e+38): rescale the column or drop the row
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from ..errors import ConverterError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def require_finite_float32(values, series: pd.Series, column: str, role: str,
                           available: Optional[torch.Tensor] = None) -> None:
    """Raise a ConverterError naming the column, the row label and the original value when a floating tensor
    ``values`` (rows aligned with ``series``) holds a non-finite element; elements where ``available`` is False
    are fillers and not checked. Non-tensors (lazily loaded columns) and integer tensors are left alone."""
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.ndim == 0 or not values.numel():
        return
    bad = ~torch.isfinite(values)
    if available is not None and available.shape == values.shape:
        bad &= available.bool()
    if not bool(bad.any()):
        return
    per_row = bad.reshape(bad.shape[0], -1)
    row = int(per_row.any(dim=1).nonzero()[0, 0])
    converted = values.reshape(values.shape[0], -1)[row][per_row[row]][0]
    label = series.index[row] if row < len(series) else row
    label = label.item() if isinstance(label, np.generic) else label
    raise ConverterError(f"{role} column '{column}': value {_original(series, row, column)} at row {label!r} is not "
                         f"finite in float32 ({_plain(converted)} after conversion; float32 holds magnitudes up to "
                         f"{FLOAT32_MAX:.2g}): rescale the column or drop the row")


def _original(series: pd.Series, row: int, column: str) -> str:
    """The cell as the user wrote it; for an array cell, its first element that float32 cannot hold."""
    if row >= len(series):
        return "?"
    cell = series.iloc[row]
    try:
        flat = np.asarray(cell, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return repr(cell)[:60]
    if flat.size == 1:
        return repr(float(flat[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        out_of_range = ~np.isfinite(flat.astype(np.float32))
    return repr(float(flat[out_of_range][0])) if out_of_range.any() else repr(cell)[:60]


def _plain(value) -> str:
    number = float(value)
    return "NaN" if number != number else ("inf" if number > 0 else "-inf")
