"""Reading the cells of a column, shared by input and output converters: numbers, integer text, short previews.

The previews keep error messages short however long the column is; ``as_float`` names the offending cells
instead of letting numpy fail on the first one.

Example:
    >>> import pandas as pd
    >>> preview(["yes", 2, "yes", 3, 4, 5, 6])
    "['yes', 2, 3, 4, 5] (and 2 more)"
    >>> as_float(pd.Series([1, True, 2.5]), "age", "numeric input", "numbers").tolist()
    [1.0, 1.0, 2.5]
"""
from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ..errors import ConverterError

_REAL_TYPES = (bool, np.bool_, int, np.integer, float, np.floating)
_PREVIEW = 5


def preview(values: Iterable, limit: int = _PREVIEW) -> str:
    """Up to ``limit`` distinct values as reprs, e.g. ``['yes', 2] (and 3 more)``; keeps messages short."""
    seen: list = []
    total = 0
    for v in values:
        total += 1
        if len(seen) < limit and not any(_same(v, s) for s in seen):
            seen.append(v)
    text = "[" + ", ".join(repr(plain_value(v)) for v in seen) + "]"
    rest = total - len(seen)
    return text + (f" (and {rest} more)" if rest > 0 else "")


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and other cells without a scalar ==
        return a is b


def plain_value(v):
    # numpy scalars print as np.int64(2) in numpy 2; the plain Python value is what the user typed.
    return v.item() if isinstance(v, np.generic) else v


def as_float(values: pd.Series, column: str, type_name: str, expected: str) -> np.ndarray:
    """Non-null cells as float64; strings and other non-numbers raise naming the offending values."""
    if ptypes.is_numeric_dtype(values.dtype):  # includes bool and nullable Int64/boolean dtypes
        return values.to_numpy(dtype=np.float64)
    # Object/string columns can hold anything; pd.to_numeric would silently accept "1", so check the types.
    ok = values.map(lambda v: isinstance(v, _REAL_TYPES)).to_numpy(dtype=bool)
    if not ok.all():
        wrong = values[~ok]
        culprits = wrong[~wrong.map(_reads_as_number).to_numpy(dtype=bool)]
        if len(culprits) and len(culprits) < len(wrong):
            # One word in a CSV column makes pandas read every cell of it as text: name the word(s), not the
            # numbers that only became text because of them.
            raise ConverterError(f"{type_name} column '{column}': expected {expected}, got {len(culprits)} value(s) "
                                 f"that are not numbers: {preview(culprits)} at row(s) "
                                 f"{preview(culprits.index)} (so the whole column was read as text)")
        raise ConverterError(f"{type_name} column '{column}': expected {expected}, got {int((~ok).sum())} invalid "
                             f"value(s): {preview(wrong)} at row(s) {preview(wrong.index)}")
    return values.to_numpy(dtype=np.float64)


def _reads_as_number(value) -> bool:
    """Whether a text cell is a number written as text (``"944.0"``), as pandas writes numbers to a CSV."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def split_missing(series: pd.Series) -> Tuple[np.ndarray, pd.Series]:
    """``(missing mask, the labelled cells)``: NaN or None is a cell nobody annotated."""
    missing = series.isna().to_numpy(dtype=bool)
    return missing, series[~missing]


def is_int_text(text: str) -> bool:
    """Whether ``text`` is an integer as ``str(int)`` writes it (``"10"``; not ``"010"`` or ``"1.0"``)."""
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def short_list(items: Sequence, limit: int = 20) -> str:
    """``items`` as a list repr, cut after ``limit`` of them (a vocabulary can have thousands)."""
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return str(items[:limit])[:-1] + f", ... ({len(items) - limit} more)]"
