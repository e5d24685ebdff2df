"""Class label converters: one label per row, either one of two (binary) or one of many (category).

Both keep the labels as the user wrote them (``"yes"``, ``36``, ``True``) in their fitted state, with the kind of
the column (``label_kind``, see tasks/labels.py), so predictions come back in the same form.

Example:
    >>> import pandas as pd
    >>> BinaryConverter().fit(pd.Series(["no", "yes", None]), "smoker").state_dict()
    {'labels': ['no', 'yes'], 'positive': 'yes', 'label_kind': 'str'}
    >>> CategoryConverter().fit(pd.Series(["red", "blue"]), "shirt").class_names
    ['blue', 'red']
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from ..errors import ConverterError
from ..tasks.labels import check_kind, kind_of_column, kind_of_keys
from .cells import as_float, is_int_text, plain_value, preview, short_list, split_missing
from .value_converter import ValueConverter, require_labels


# -- binary ----------------------------------------------------------------------------------------------

class BinaryConverter(ValueConverter):
    """Any two distinct labels -> float32 ``(N,)``: 1.0 where the label is the positive class, else 0.0.

    Labels may be 0/1, True/False (also numpy bools and object columns mixing them), two numbers (``36``/``60``)
    or two strings (``"yes"``/``"no"``, ``"male"``/``"female"``). The positive class is ``positive`` when given
    (it must be one of the labels); otherwise, by default: 1 (True) when the labels are 0/1 or bools; else the
    label that is a conventional positive word (``yes``, ``true``, ``positive``, ``y``, any case) if exactly one
    is; else the second label in sorted order. The labels and the positive class are fitted state (stored in
    ``converters.json``). A third distinct label is an error.

    Example:
        >>> import numpy as np, pandas as pd
        >>> v, a = BinaryConverter().transform(pd.Series([True, np.nan, 0]), "door_open")
        >>> v.tolist(), a.tolist()
        ([1.0, 0.0, 0.0], [True, False, True])
        >>> conv = BinaryConverter().fit(pd.Series(["no", "yes", None]), "smoker")
        >>> conv.labels, conv.positive, conv.transform(pd.Series(["no", "yes"]), "smoker")[0].tolist()
        (['no', 'yes'], 'yes', [0.0, 1.0])
        >>> BinaryConverter(positive="female").fit(pd.Series(["male", "female"]), "sex").state_dict()
        {'labels': ['male', 'female'], 'positive': 'female', 'label_kind': 'str'}
    """

    type_name = "binary"
    _expected = "0/1, True/False or two distinct labels (NaN for a missing label)"
    POSITIVE_WORDS = ("yes", "true", "positive", "y")

    def __init__(self, positive=None):
        self.positive_arg = plain_value(positive)
        self.labels: Optional[list] = None  # [negative, positive], JSON values (numbers or strings)
        # How the column holds them ("bool", "int", "float", "str"; see tasks/labels.py): predictions come back so.
        self.label_kind: Optional[str] = None

    @property
    def positive(self):
        return None if self.labels is None else self.labels[1]

    @staticmethod
    def _keys(labelled: pd.Series, column: str) -> Tuple[str, np.ndarray]:
        """("number", float64 keys) for numbers and bools, ("str", object keys) for strings."""
        if isinstance(labelled.dtype, pd.CategoricalDtype):
            labelled = labelled.astype(object)
        if ptypes.is_numeric_dtype(labelled.dtype):  # includes bool and nullable Int64/boolean dtypes
            return "number", labelled.to_numpy(dtype=np.float64)
        is_str = labelled.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if is_str.all():
            return "str", labelled.astype(str).to_numpy(dtype=object)
        if is_str.any():
            raise ConverterError(f"binary column '{column}': labels mix strings and other values "
                                 f"{preview(labelled)}; expected {BinaryConverter._expected}")
        return "number", as_float(labelled, column, "binary", BinaryConverter._expected)

    @staticmethod
    def _key_of(value):
        value = plain_value(value)
        if isinstance(value, str):
            return "str", value
        if isinstance(value, (bool, int, float)):
            return "number", float(value)
        return None, None

    def _label_index(self, value) -> Optional[int]:
        """0 (negative) / 1 (positive) when ``value`` is one of the labels, else None."""
        kind, key = self._key_of(value)
        for i, label in enumerate(self.labels or []):
            if self._key_of(label) == (kind, key):
                return i
        return None

    def fit(self, series, column):
        require_labels(series, column)
        _, labelled = split_missing(series)
        kind, keys = self._keys(labelled, column)
        distinct = pd.unique(keys)
        if kind == "number" and set(distinct.tolist()) <= {0.0, 1.0}:
            labels = [0, 1]
        elif len(distinct) == 2:
            labels = sorted(_json_number(k) if kind == "number" else k for k in distinct)
        elif len(distinct) > 2:
            shown = [_json_number(k) for k in distinct] if kind == "number" else list(distinct)
            raise ConverterError(f"binary column '{column}': expected {self._expected}, got {len(distinct)} distinct "
                                 f"labels {preview(shown)}; use 'category' for more than two classes")
        else:
            raise ConverterError(f"binary column '{column}' has a single label {preview(labelled[:1])}; a binary "
                                 f"column needs two distinct labels (or 0/1, True/False)")
        self.labels = labels
        if self.positive_arg is not None:
            index = self._label_index(self.positive_arg)
            if index is None:
                raise ConverterError(f"binary column '{column}': positive class {self.positive_arg!r} is not one of "
                                     f"its labels {labels}")
        elif labels == [0, 1]:
            index = 1
        else:
            words = [i for i, label in enumerate(labels)
                     if isinstance(label, str) and label.strip().lower() in self.POSITIVE_WORDS]
            index = words[0] if len(words) == 1 else 1
        self.labels = [labels[1 - index], labels[index]]
        self.label_kind = kind_of_column(labelled)
        self.transform(series, column)  # validates every value now rather than at the first batch
        return self

    def transform(self, series, column):
        if self.labels is None:  # the historical default: 0/1 labels need no fitting
            self.labels = [0, 1]
        missing, labelled = split_missing(series)
        kind, keys = self._keys(labelled, column)
        label_keys = [self._key_of(label) for label in self.labels]
        matching = [k == kind for k, _ in label_keys]
        is_positive = keys == label_keys[1][1] if matching[1] else np.zeros(len(keys), dtype=bool)
        is_negative = keys == label_keys[0][1] if matching[0] else np.zeros(len(keys), dtype=bool)
        bad = ~(is_positive | is_negative)
        if bad.any():
            raise ConverterError(f"binary column '{column}': expected the labels {self.labels} (NaN for a missing "
                                 f"label), got {int(bad.sum())} invalid value(s): {preview(labelled[bad])}")
        values = np.zeros(len(series), dtype=np.float32)
        values[~missing] = is_positive
        return torch.from_numpy(values), torch.from_numpy(~missing)

    def state_dict(self):
        labels = self.labels or [0, 1]
        return {"labels": list(labels), "positive": labels[1], "label_kind": self.label_kind or kind_of_keys(labels)}

    def load_state_dict(self, state):
        if not state:  # saved before binary labels had state: 0/1 labels
            state = {"labels": [0, 1], "positive": 1}
        labels = self._state_field(state, "labels")
        positive = self._state_field(state, "positive")
        if (not isinstance(labels, list) or len(labels) != 2
                or any(self._key_of(label)[0] is None for label in labels)
                or self._key_of(labels[0]) == self._key_of(labels[1])):
            raise ConverterError(f"binary converter state needs 'labels': two distinct numbers or strings, got "
                                 f"{labels!r}")
        self.labels = list(labels)
        index = self._label_index(positive)
        if index is None:
            raise ConverterError(f"binary converter state: positive class {positive!r} is not one of {labels}")
        if self.positive_arg is not None and self._label_index(self.positive_arg) != index:
            raise ConverterError(f"positive class {self.positive_arg!r} differs from the saved positive class "
                                 f"{positive!r}")
        self.labels = [labels[1 - index], labels[index]]
        self.label_kind = _state_kind(state, labels, self.type_name)


def _json_number(value: float):
    """A float key back as the number the user wrote: ``36.0`` -> ``36``."""
    return int(value) if float(value).is_integer() else float(value)


# -- category --------------------------------------------------------------------------------------------

class CategoryConverter(ValueConverter):
    """Integer or string labels -> int64 class ids ``(N,)``; class names are sorted and stored as strings.

    Integer labels sort numerically (``2 < 10``), strings lexicographically. Pass ``class_names`` to fix the
    classes (and their order) instead of fitting them.

    Example:
        >>> import pandas as pd
        >>> conv = CategoryConverter().fit(pd.Series([10, 2, None]), "digit")
        >>> conv.class_names, conv.transform(pd.Series([10, 2, None]), "digit")[0].tolist()
        (['2', '10'], [1, 0, 0])
    """

    type_name = "category"

    def __init__(self, class_names: Optional[Sequence] = None):
        self.class_names: Optional[List[str]] = None
        self.kind: Optional[str] = None  # "int" or "str": how labels were keyed when fitted
        # How the column holds them ("bool", "int", "float", "str"; see tasks/labels.py): predictions come back so.
        self.label_kind: Optional[str] = None
        if class_names is not None:
            self.label_kind = kind_of_keys([plain_value(c) for c in class_names])
            self.class_names = [str(c) for c in class_names]
            self.kind = "int" if all(is_int_text(c) for c in self.class_names) else "str"
            self._check_classes("<explicit class_names>")

    def _keys(self, labelled: pd.Series, column: str) -> Tuple[pd.Series, str]:
        """Labels as the strings class names are stored as, plus whether they were integers."""
        is_number = (ptypes.is_numeric_dtype(labelled.dtype) and not ptypes.is_bool_dtype(labelled.dtype)) or (
            labelled.dtype == object and len(labelled) > 0
            and ptypes.infer_dtype(labelled, skipna=True) in ("integer", "floating", "mixed-integer-float"))
        if not is_number:
            return labelled.astype(str), "str"
        floats = as_float(labelled, column, self.type_name, "integer or string class labels")
        fractional = ~np.isfinite(floats) | (floats != np.round(floats))
        if fractional.any():
            raise ConverterError(f"category column '{column}': expected integer or string class labels, got "
                                 f"non-integer numbers {preview(labelled[fractional])}; use 'continuous' or "
                                 f"'regression' for real-valued labels")
        return pd.Series(floats.astype(np.int64).astype(str), index=labelled.index), "int"

    def _check_classes(self, column: str) -> None:
        if len(self.class_names) < 2:
            raise ConverterError(f"category column '{column}' has only {len(self.class_names)} class "
                                 f"{self.class_names}; a category needs at least 2 classes (use 'binary' for "
                                 f"yes/no labels, or pass the full class_names)")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConverterError(f"category column '{column}': duplicate class names {self.class_names}")

    def fit(self, series, column):
        require_labels(series, column)
        if self.class_names is not None:  # explicit or loaded classes are never refitted
            self.transform(series, column)
            return self
        _, labelled = split_missing(series)
        keys, self.kind = self._keys(labelled, column)
        self.label_kind = kind_of_column(labelled)
        unique = pd.unique(keys.to_numpy())
        order = (lambda k: int(k)) if self.kind == "int" else (lambda k: k)
        self.class_names = sorted((str(k) for k in unique), key=order)
        self._check_classes(column)
        return self

    def transform(self, series, column):
        self._require_fitted(column, self.class_names is not None)
        missing, labelled = split_missing(series)
        keys, _ = self._keys(labelled, column)
        ids = pd.Index(self.class_names).get_indexer(keys.to_numpy())
        unknown = ids < 0
        if unknown.any():
            raise ConverterError(f"category column '{column}': unknown class(es) {preview(labelled[unknown])}; "
                                 f"known classes are {short_list(self.class_names)}")
        values = np.zeros(len(series), dtype=np.int64)
        values[~missing] = ids
        return torch.from_numpy(values), torch.from_numpy(~missing)

    def state_dict(self):
        names = list(self.class_names or [])
        return {"class_names": names, "kind": self.kind, "label_kind": self.label_kind or kind_of_keys(names)}

    def load_state_dict(self, state):
        names = self._state_field(state, "class_names")
        self.class_names = [str(c) for c in names]
        self.kind = state.get("kind") or ("int" if all(is_int_text(c) for c in self.class_names) else "str")
        self.label_kind = _state_kind(state, self.class_names, self.type_name)
        self._check_classes("<state>")


def _state_kind(state: dict, keys: list, type_name: str) -> str:
    """The saved label kind, or (a state saved before kinds were) the one the keys suggest."""
    kind = state.get("label_kind")
    if kind is None:
        return kind_of_keys(keys)
    try:
        return check_kind(kind, f"{type_name} converter state, field 'label_kind'")
    except ValueError as e:
        raise ConverterError(str(e)) from None
