"""Guess a column's type name from its values when the user did not map it.

Rules, applied to the non-null values, first match wins:

1. ``type_mapping[column]`` if present (the user's word beats any heuristic);
2. bool dtype, or every value in {0, 1} (True/False included) -> ``"binary"``;
3. strings ending in ``.png``/``.jpg``/``.jpeg`` (any case; also ``pathlib.Path`` cells) -> ``"img"``;
4. strings, at least one containing ``","`` -> ``"multilabel"``;
5. strings with exactly two distinct values -> ``"binary"``; other strings (or strings mixed with numbers)
   -> ``"category"``;
6. list / tuple / ndarray cells -> ``"array"`` (the caller turns this into ``"tokens"`` or ``"multilabel"``
   for an output column); set cells -> ``"multilabel"``;
7. integers (integral floats too, since NaN makes pandas store ints as floats) with <= 20 distinct values
   -> ``"category"``;
8. floats all within [0, 1] -> ``"continuous"``;
9. other numbers -> ``"regression"``.

An all-NaN column cannot be guessed and raises :class:`ConverterError`. For an INPUT column the caller maps
numeric guesses (and bools) to ``"numeric"`` and string / ``category`` guesses to ``"categorical"``.

Example:
    >>> import pandas as pd
    >>> guesser = TypeGuesser()
    >>> guesser.guess(pd.Series([0, 1, None]), "door_open"), guesser.guess(pd.Series(["a.jpg"]), "img")
    ('binary', 'img')
    >>> guesser.type_mapping["age"] = "regression"
    >>> guesser.guess(pd.Series([1, 0]), "age")
    'regression'
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ..errors import ConverterError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_CATEGORY_INTS = 20


class TypeGuesser:
    """``type_mapping`` (column -> type name) overrides the heuristic in :meth:`guess`."""

    def __init__(self, type_mapping: Dict[str, str] = None):
        self.type_mapping: Dict[str, str] = dict(type_mapping or {})

    def guess(self, series: pd.Series, column: str) -> str:
        if column in self.type_mapping:
            return self.type_mapping[column]
        return guess_type(series, column)


def guess_type(series: pd.Series, column: str = "?") -> str:
    """The heuristic of the module docstring, without ``type_mapping``."""
    values = series.dropna()
    if len(values) == 0:
        raise ConverterError(f"cannot guess the type of column '{column}': all values are NaN; set "
                             f"converters.type.type_mapping[{column!r}]")
    if ptypes.is_bool_dtype(values.dtype):
        return "binary"
    if ptypes.is_numeric_dtype(values.dtype):
        return _guess_numeric(values.to_numpy(dtype=np.float64))

    # Object / string columns: classify cells by their Python type once, then decide on the counts.
    kinds = values.map(_cell_kind)
    counts = kinds.value_counts()
    if "other" in counts:
        return "category"  # e.g. Decimals or dates: treat as labels, the converter validates them
    if "str" in counts or "path" in counts:
        if "number" not in counts and "list" not in counts and "set" not in counts:
            text = values.map(os.fspath).astype(str)
            lowered = text.str.lower()
            if lowered.str.endswith(IMAGE_EXTENSIONS).all():
                return "img"
            if text.str.contains(",", regex=False).any():
                return "multilabel"
            if text.nunique() == 2:
                return "binary"  # yes/no, male/female: two labels are a binary task, not a 2-way category
        return "category"
    if "set" in counts:
        return "multilabel"
    if "list" in counts:
        return "array"
    # Only numbers (and bools) stored as objects.
    return _guess_numeric(values.to_numpy(dtype=np.float64))


def _cell_kind(v) -> str:
    if isinstance(v, str):
        return "str"
    if isinstance(v, os.PathLike):
        return "path"
    if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
        return "number"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "list"
    if isinstance(v, (set, frozenset)):
        return "set"
    return "other"


def _guess_numeric(floats: np.ndarray) -> str:
    if np.isin(floats, (0.0, 1.0)).all():
        return "binary"
    finite = np.isfinite(floats)
    if finite.all() and (floats == np.round(floats)).all() and len(np.unique(floats)) <= MAX_CATEGORY_INTS:
        return "category"
    if finite.all() and floats.min() >= 0.0 and floats.max() <= 1.0:
        return "continuous"
    return "regression"
