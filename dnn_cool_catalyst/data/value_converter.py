"""The value converter contract for output columns: a pandas Series with NaN -> ``(values, available)`` tensors.

Every converter has the same four methods:

- ``fit(series, column)`` learns what it needs (class names, bounds, vocabulary) from the labelled cells;
- ``transform(series, column) -> (values, available)``: ``values`` holds a finite filler (0) where a label is
  missing and ``available`` (bool, same shape) says which elements are real labels;
- ``state_dict()`` / ``load_state_dict(d)``: the fitted state as a JSON-able dict, so a later run maps labels
  identically without refitting.

NaN (or None) always means "not annotated"; the mask is explicit, so a regression label of -3.2 is kept.

The built-in converters, by family: ``class_labels`` (binary, category), ``list_labels`` (multilabel, tokens) and
``numeric_labels`` (continuous, regression); ``output_types.OUTPUT_CONVERTERS`` maps type names to them.

Example:
    >>> import pandas as pd
    >>> from dnn_cool_catalyst.data.class_labels import CategoryConverter
    >>> conv = CategoryConverter().fit(pd.Series(["red", None, "blue"]), "shirt")
    >>> values, available = conv.transform(pd.Series(["red", None, "blue"]), "shirt")
    >>> values.tolist(), available.tolist(), conv.class_names
    ([1, 0, 0], [True, False, True], ['blue', 'red'])
"""
from __future__ import annotations

from typing import Tuple

import pandas as pd
import torch

from ..errors import ConverterError  # defined there with every library error; re-exported here


def require_labels(series: pd.Series, column: str) -> None:
    """Raise unless the output column has at least one labelled cell."""
    if len(series) == 0 or not series.notna().any():
        raise ConverterError(f"output column '{column}' has no labels (all values are NaN)")


class ValueConverter:
    """Base class: override :meth:`fit`, :meth:`transform` and the state methods for a custom output type
    (the contract is in the module docstring)."""

    type_name = "value"
    role = "output"

    def fit(self, series: pd.Series, column: str) -> "ValueConverter":
        return self

    def transform(self, series: pd.Series, column: str) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ConverterError(f"{self.type_name} converter has no state, got keys {sorted(state)}")

    def _require_fitted(self, column: str, fitted: bool) -> None:
        if not fitted:
            raise ConverterError(f"{self.type_name} converter for column '{column}' is not fitted: call fit() or "
                                 f"load_state_dict() first")

    def _state_field(self, state: dict, key: str):
        """``state[key]`` for :meth:`load_state_dict`; a state that is not a dict or lacks the key raises."""
        if not isinstance(state, dict) or key not in state:
            raise ConverterError(f"{self.type_name} converter state must be a dict with key '{key}', got {state!r}")
        return state[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.state_dict()})"
