"""Numeric label converters: a real number per row, either within bounds (continuous, rescaled to [0, 1]) or
unbounded (regression, kept as is).

Text, bools mixed with words and infinite values are errors naming the rows; NaN is a missing label, so a
negative or zero label is a real one.

Example:
    >>> import pandas as pd
    >>> ContinuousConverter().fit(pd.Series([10.0, 30.0, None]), "age").state_dict()
    {'lo': 10.0, 'hi': 30.0}
    >>> RegressionConverter().fit(pd.Series([-1.5, 0.0]), "temperature").transform(pd.Series([-1.5]), "t")[0]
    tensor([-1.5000])
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from ..errors import ConverterError
from .cells import as_float, plain_value, split_missing
from .value_converter import ValueConverter, require_labels


def require_finite(floats: np.ndarray, index: pd.Index, column: str, type_name: str) -> None:
    """Raise naming the first row with an infinite label: only NaN means missing."""
    bad = ~np.isfinite(floats)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ConverterError(f"{type_name} column '{column}': infinite value {floats[first]} at row "
                             f"{plain_value(index[first])!r}; use NaN for a missing label")


class ContinuousConverter(ValueConverter):
    """Bounded numbers -> float32 ``(N,)`` rescaled to [0, 1] as ``(v - lo) / (hi - lo)``.

    ``lo``/``hi`` are fitted from the data's min/max unless given; they are stored, and a later value outside
    them is an error (a model's sigmoid cannot reach it).

    Example:
        >>> import pandas as pd
        >>> conv = ContinuousConverter(lo=0, hi=64).fit(pd.Series([16.0, None]), "face_x1")
        >>> conv.transform(pd.Series([16.0, None]), "face_x1")[0].tolist()
        [0.25, 0.0]
    """

    type_name = "continuous"
    _expected = "numbers (NaN for a missing label)"

    def __init__(self, lo: Optional[float] = None, hi: Optional[float] = None):
        self._lo_arg = None if lo is None else float(lo)
        self._hi_arg = None if hi is None else float(hi)
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None

    def _floats(self, series, column):
        missing, labelled = split_missing(series)
        floats = as_float(labelled, column, self.type_name, self._expected)
        require_finite(floats, labelled.index, column, self.type_name)
        return missing, labelled, floats

    def _set_bounds(self, lo: float, hi: float, column: str) -> None:
        if not np.isfinite([lo, hi]).all() or not hi > lo:
            raise ConverterError(f"continuous column '{column}': bounds need lo < hi, got lo={lo}, hi={hi}; a "
                                 f"column with a single value needs explicit bounds "
                                 f"(ContinuousConverter(lo=..., hi=...)) or the 'regression' type")
        # The task rescales predictions back as lo + p * (hi - lo) in float32: the span must fit there too.
        with np.errstate(over="ignore"):
            span = np.float32(hi) - np.float32(lo)
        if not np.isfinite(span):
            raise ConverterError(f"continuous column '{column}': bounds lo={lo}, hi={hi} are not finite in float32 "
                                 f"(hi - lo must stay below {float(np.finfo(np.float32).max):.2g}); rescale the "
                                 f"column or use the 'regression' type")
        self.lo, self.hi = float(lo), float(hi)

    def fit(self, series, column):
        require_labels(series, column)
        _, labelled, floats = self._floats(series, column)
        lo = self._lo_arg if self._lo_arg is not None else float(floats.min())
        hi = self._hi_arg if self._hi_arg is not None else float(floats.max())
        try:
            self._set_bounds(lo, hi, column)
        except ConverterError as e:
            if self._lo_arg is not None and self._hi_arg is not None:
                raise
            rows = [plain_value(labelled.index[int(i)]) for i in (np.argmin(floats), np.argmax(floats))]
            raise ConverterError(f"{e} (bounds fitted from the values at rows {rows[0]!r} and {rows[1]!r})") from None
        self.transform(series, column)  # explicit bounds narrower than the data fail here, not mid-training
        return self

    def transform(self, series, column):
        self._require_fitted(column, self.lo is not None)
        missing, labelled, floats = self._floats(series, column)
        outside = (floats < self.lo) | (floats > self.hi)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise ConverterError(f"continuous column '{column}': value {floats[first]} at row "
                                 f"{plain_value(labelled.index[first])!r} is outside the bounds [{self.lo}, {self.hi}] "
                                 f"({int(outside.sum())} value(s) outside)")
        values = np.zeros(len(series), dtype=np.float32)
        values[~missing] = (floats - self.lo) / (self.hi - self.lo)
        return torch.from_numpy(values), torch.from_numpy(~missing)

    def state_dict(self):
        return {"lo": self.lo, "hi": self.hi}

    def load_state_dict(self, state):
        lo = self._state_field(state, "lo")
        hi = self._state_field(state, "hi")
        try:
            self._set_bounds(float(lo), float(hi), "<state>")
        except TypeError:
            raise ConverterError(f"continuous converter state needs numeric 'lo' and 'hi', got {state!r}") from None


class RegressionConverter(ValueConverter):
    """Unbounded numbers -> raw float32 ``(N,)``; negative values are real labels, NaN is missing.

    Example:
        >>> import pandas as pd
        >>> v, a = RegressionConverter().transform(pd.Series([-3.5, None]), "temperature")
        >>> v.tolist(), a.tolist()
        ([-3.5, 0.0], [True, False])
    """

    type_name = "regression"

    def fit(self, series, column):
        require_labels(series, column)
        self.transform(series, column)
        return self

    def transform(self, series, column):
        missing, labelled = split_missing(series)
        floats = as_float(labelled, column, self.type_name, "numbers (NaN for a missing label)")
        require_finite(floats, labelled.index, column, self.type_name)
        values = np.zeros(len(series), dtype=np.float32)
        values[~missing] = floats
        return torch.from_numpy(values), torch.from_numpy(~missing)
