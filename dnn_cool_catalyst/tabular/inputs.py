"""The input table of a tabular model: numeric columns side by side, categorical codes, and their
standardisation (fitted on a run's training split)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ..data.columns import StoredColumn
from ..errors import ConverterError

#: A categorical input with at most this many codes (vocabulary + unknown + missing) is one-hot encoded.
ONE_HOT_MAX_CODES = 8


def embedding_width(num_codes: int) -> int:
    return min(16, (num_codes + 1) // 2)


def _input_columns(converted, input_cols: Sequence[str]):
    """``(categorical, numeric)``: categorical column -> number of codes, and numeric/array column -> its values as
    a float tensor ``(N, width)`` (a view where the column is float already). Raises naming a column of another type
    (text, images)."""
    categorical, numeric = {}, {}
    for column in input_cols:
        data = converted.inputs[column]
        num_codes = getattr(converted.converters.get(column), "num_codes", None)
        if isinstance(data, StoredColumn):  # e.g. a uint8 array column, kept as bytes
            data = data.decode(data.values)
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"tabular_model: input column '{column}' has type {converted.types[column]!r}; "
                             f"the MLP takes numeric, array or categorical columns only")
        if num_codes is not None:
            categorical[column] = int(num_codes)
        else:
            numeric[column] = data.float().reshape(len(data), -1)
    return categorical, numeric


def _row_index(rows: Optional[Sequence[int]]) -> Optional[torch.Tensor]:
    if rows is None or isinstance(rows, torch.Tensor):
        return None if rows is None else rows.long()
    return torch.as_tensor(np.asarray(rows, dtype=np.int64))  # a split's int64 array, or a list


def input_table(converted, input_cols: Sequence[str], rows: Optional[Sequence[int]] = None):
    """``(columns, categorical, numeric)`` of the converted data (``project.data``, a dataset's ``data``):
    numeric/array column -> width, categorical column -> number of codes, and the numeric columns side by side as
    one float tensor ``(N, width)`` (of the positions ``rows``, all rows by default). Raises naming a column of
    another type (text, images)."""
    categorical, numeric = _input_columns(converted, input_cols)
    index = _row_index(rows)
    values = [flat if index is None else flat[index] for flat in numeric.values()]
    n = len(next(iter(converted.inputs.values()))) if rows is None else len(rows)
    columns = {column: flat.shape[1] for column, flat in numeric.items()}
    return columns, categorical, torch.cat(values, dim=1) if values else torch.zeros(n, 0)


def column_standardisation(converted, input_cols: Sequence[str], rows: Optional[Sequence[int]] = None):
    """``(columns, categorical, mean, std)``: what :func:`input_table` and :func:`standardisation` give, computed one
    column at a time, so that the numeric inputs are never copied side by side (at 10^6 rows the joined table and
    the temporaries of its overflow check were twice the size of the whole converted dataset)."""
    categorical, numeric = _input_columns(converted, input_cols)
    index = _row_index(rows)
    means, stds = [torch.zeros(0)], [torch.ones(0)]
    for column, flat in numeric.items():
        mean, std = standardisation(flat if index is None else flat[index], {column: flat.shape[1]})
        means.append(mean)
        stds.append(std)
    return {column: flat.shape[1] for column, flat in numeric.items()}, categorical, torch.cat(means), torch.cat(stds)


def standardisation(values: torch.Tensor, columns: Optional[Dict[str, int]] = None):
    """``(mean, std)`` per column of ``values`` ``(N, width)``; a constant column gets std 1 (no division by 0).
    ``columns`` (column -> width, in the order of ``values``) names a column whose values overflow float32."""
    # std of zero columns (categorical inputs only) warns in torch; there is nothing to standardise then.
    std = values.std(dim=0, unbiased=False) if values.shape[1] else torch.ones(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    mean = values.mean(dim=0)
    _check_standardisable(columns or {"(numeric inputs)": values.shape[1]}, values, mean, std)
    return mean, std


def _check_standardisable(columns: Dict[str, int], joined: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """Values finite in float32 can still overflow its mean, spread or ``(x - mean) / std`` (1e38-scale inputs):
    refuse here, naming the column, instead of a task's logits turning inf later."""
    # (x - mean) / std is monotonic in x, rounding included: the smallest and largest x overflow first, so checking
    # them is checking every row, without two temporaries the size of the column (at 10^6 rows).
    extremes = torch.stack([joined.amin(dim=0), joined.amax(dim=0)]) if len(joined) else joined
    finite = torch.isfinite(mean) & torch.isfinite(std) & torch.isfinite((extremes - mean) / std).all(dim=0)
    if bool(finite.all()):
        return
    start = 0
    for column, width in columns.items():
        if not bool(finite[start:start + width].all()):
            largest = float(joined[:, start:start + width].abs().max())
            raise ConverterError(f"input column '{column}': values up to {largest:.3g} overflow float32 when "
                                 f"standardised (mean, spread or (x - mean) / std is infinite); rescale the "
                                 f"column (e.g. divide it by a power of ten) before building the project")
        start += width
