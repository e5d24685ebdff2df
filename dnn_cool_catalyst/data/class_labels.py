"""Value converters for output columns: a pandas Series with NaN -> ``(values, available)`` tensors.

Every converter has the same four methods:

- ``fit(series, column)`` learns what it needs (class names, bounds, vocabulary) from the labelled cells;
- ``transform(series, column) -> (values, available)``: ``values`` holds a finite filler (0) where a label is
  missing and ``available`` (bool, same shape) says which elements are real labels;
- ``state_dict()`` / ``load_state_dict(d)``: the fitted state as a JSON-able dict, so a later run maps labels
  identically without refitting.

NaN (or None) always means "not annotated"; the mask is explicit, so a regression label of -3.2 is kept.

Example:
    >>> import pandas as pd
    >>> conv = CategoryConverter().fit(pd.Series(["red", None, "blue"]), "shirt")
    >>> values, available = conv.transform(pd.Series(["red", None, "blue"]), "shirt")
    >>> values.tolist(), available.tolist(), conv.class_names
    ([1, 0, 0], [True, False, True], ['blue', 'red'])
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from ..errors import ConverterError  # defined there with every library error; re-exported here
from ..tasks.labels import check_kind, kind_of_column, kind_of_keys


# -- shared helpers --------------------------------------------------------------------------------------

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
    text = "[" + ", ".join(repr(_plain(v)) for v in seen) + "]"
    rest = total - len(seen)
    return text + (f" (and {rest} more)" if rest > 0 else "")


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and other cells without a scalar ==
        return a is b


def _plain(v):
    # numpy scalars print as np.int64(2) in numpy 2; the plain Python value is what the user typed.
    return v.item() if isinstance(v, np.generic) else v


def require_labels(series: pd.Series, column: str) -> None:
    """Raise unless the output column has at least one labelled cell."""
    if len(series) == 0 or not series.notna().any():
        raise ConverterError(f"output column '{column}' has no labels (all values are NaN)")


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


def require_finite(floats: np.ndarray, index: pd.Index, column: str, type_name: str) -> None:
    bad = ~np.isfinite(floats)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ConverterError(f"{type_name} column '{column}': infinite value {floats[first]} at row "
                             f"{_plain(index[first])!r}; use NaN for a missing label")


def _split_missing(series: pd.Series) -> Tuple[np.ndarray, pd.Series]:
    missing = series.isna().to_numpy(dtype=bool)
    return missing, series[~missing]


class ValueConverter:
    """Base class: override :meth:`fit`, :meth:`transform` and the state methods for a custom output type."""

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.state_dict()})"


def _state_get(state: dict, key: str, type_name: str):
    if not isinstance(state, dict) or key not in state:
        raise ConverterError(f"{type_name} converter state must be a dict with key '{key}', got {state!r}")
    return state[key]


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
        self.positive_arg = _plain(positive)
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
        value = _plain(value)
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
        _, labelled = _split_missing(series)
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
        missing, labelled = _split_missing(series)
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
        labels = _state_get(state, "labels", self.type_name)
        positive = _state_get(state, "positive", self.type_name)
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
            self.label_kind = kind_of_keys([_plain(c) for c in class_names])
            self.class_names = [str(c) for c in class_names]
            self.kind = "int" if all(_is_int_text(c) for c in self.class_names) else "str"
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
        _, labelled = _split_missing(series)
        keys, self.kind = self._keys(labelled, column)
        self.label_kind = kind_of_column(labelled)
        unique = pd.unique(keys.to_numpy())
        order = (lambda k: int(k)) if self.kind == "int" else (lambda k: k)
        self.class_names = sorted((str(k) for k in unique), key=order)
        self._check_classes(column)
        return self

    def transform(self, series, column):
        self._require_fitted(column, self.class_names is not None)
        missing, labelled = _split_missing(series)
        keys, _ = self._keys(labelled, column)
        ids = pd.Index(self.class_names).get_indexer(keys.to_numpy())
        unknown = ids < 0
        if unknown.any():
            raise ConverterError(f"category column '{column}': unknown class(es) {preview(labelled[unknown])}; "
                                 f"known classes are {_short_list(self.class_names)}")
        values = np.zeros(len(series), dtype=np.int64)
        values[~missing] = ids
        return torch.from_numpy(values), torch.from_numpy(~missing)

    def state_dict(self):
        names = list(self.class_names or [])
        return {"class_names": names, "kind": self.kind, "label_kind": self.label_kind or kind_of_keys(names)}

    def load_state_dict(self, state):
        names = _state_get(state, "class_names", self.type_name)
        self.class_names = [str(c) for c in names]
        self.kind = state.get("kind") or ("int" if all(_is_int_text(c) for c in self.class_names) else "str")
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


def _is_int_text(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _short_list(items: Sequence, limit: int = 20) -> str:
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return str(items[:limit])[:-1] + f", ... ({len(items) - limit} more)]"


# -- multilabel ------------------------------------------------------------------------------------------

class MultilabelConverter(ValueConverter):
    """Comma-separated strings (or lists/tuples/sets of strings) -> float32 ``(N, C)`` with a ``(N, C)`` mask.

    ``""`` (or an empty list) is a labelled sample with no class: every class is available and 0. NaN is a
    missing sample: every class is unavailable. The vocabulary is sorted; pass ``class_names`` to fix it.

    Example:
        >>> import numpy as np, pandas as pd
        >>> s = pd.Series(["beard, glasses", "", np.nan])
        >>> conv = MultilabelConverter().fit(s, "face")
        >>> v, a = conv.transform(s, "face")
        >>> conv.class_names, v.tolist(), a.tolist()
        (['beard', 'glasses'], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]], [[True, True], [True, True], [False, False]])
    """

    type_name = "multilabel"

    def __init__(self, class_names: Optional[Sequence[str]] = None):
        self.class_names: Optional[List[str]] = None
        if class_names is not None:
            self._set_vocab([str(c) for c in class_names], "<explicit class_names>")

    def _set_vocab(self, names: List[str], column: str) -> None:
        if not names:
            raise ConverterError(f"multilabel column '{column}' has no class names (every labelled cell is empty)")
        if len(set(names)) != len(names):
            raise ConverterError(f"multilabel column '{column}': duplicate class names {names}")
        self.class_names = names

    @staticmethod
    def parse_cell(cell, column: str, row) -> List[str]:
        """One cell -> its stripped labels; ``"a, b"`` and ``["a", "b"]`` give the same result."""
        if isinstance(cell, str):
            items = cell.split(",")
        elif isinstance(cell, (list, tuple, set, frozenset, np.ndarray)):
            items = list(cell)
            if not all(isinstance(item, str) for item in items):
                raise ConverterError(f"multilabel column '{column}': row {row!r} holds non-string labels {cell!r}; "
                                     f"expected a comma-separated string or a list of strings")
        else:
            raise ConverterError(f"multilabel column '{column}': row {row!r} holds {cell!r}; expected a "
                                 f"comma-separated string or a list of strings (NaN for a missing label)")
        return [label for label in (item.strip() for item in items) if label]

    def _parse(self, series: pd.Series, column: str):
        missing, labelled = _split_missing(series)
        return missing, [self.parse_cell(cell, column, row) for row, cell in labelled.items()]

    def fit(self, series, column):
        require_labels(series, column)
        if self.class_names is not None:
            self.transform(series, column)
            return self
        _, parsed = self._parse(series, column)
        self._set_vocab(sorted(set().union(*parsed)), column)
        return self

    def transform(self, series, column):
        self._require_fitted(column, self.class_names is not None)
        missing, parsed = self._parse(series, column)
        rows = np.flatnonzero(~missing)
        lengths = np.fromiter((len(p) for p in parsed), dtype=np.int64, count=len(parsed))
        flat = [label for labels in parsed for label in labels]
        ids = pd.Index(self.class_names).get_indexer(flat) if flat else np.zeros(0, dtype=np.int64)
        if (ids < 0).any():
            unknown = [label for label, i in zip(flat, ids) if i < 0]
            raise ConverterError(f"multilabel column '{column}': unknown label(s) {preview(unknown)}; known labels "
                                 f"are {_short_list(self.class_names)}")
        values = np.zeros((len(series), len(self.class_names)), dtype=np.float32)
        values[np.repeat(rows, lengths), ids] = 1.0
        available = np.repeat(~missing[:, None], len(self.class_names), axis=1)
        return torch.from_numpy(values), torch.from_numpy(available)

    def state_dict(self):
        return {"class_names": list(self.class_names or [])}

    def load_state_dict(self, state):
        self._set_vocab([str(c) for c in _state_get(state, "class_names", self.type_name)], "<state>")


# -- continuous (bounded) and regression -----------------------------------------------------------------

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
        missing, labelled = _split_missing(series)
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
            rows = [_plain(labelled.index[int(np.argmin(floats))]), _plain(labelled.index[int(np.argmax(floats))])]
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
                                 f"{_plain(labelled.index[first])!r} is outside the bounds [{self.lo}, {self.hi}] "
                                 f"({int(outside.sum())} value(s) outside)")
        values = np.zeros(len(series), dtype=np.float32)
        values[~missing] = (floats - self.lo) / (self.hi - self.lo)
        return torch.from_numpy(values), torch.from_numpy(~missing)

    def state_dict(self):
        return {"lo": self.lo, "hi": self.hi}

    def load_state_dict(self, state):
        lo = _state_get(state, "lo", self.type_name)
        hi = _state_get(state, "hi", self.type_name)
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
        missing, labelled = _split_missing(series)
        floats = as_float(labelled, column, self.type_name, "numbers (NaN for a missing label)")
        require_finite(floats, labelled.index, column, self.type_name)
        values = np.zeros(len(series), dtype=np.float32)
        values[~missing] = floats
        return torch.from_numpy(values), torch.from_numpy(~missing)


# -- tokens ----------------------------------------------------------------------------------------------

class TokensConverter(ValueConverter):
    """Sequences of int class ids -> int64 ``(N, T)`` padded with 0, availability False on padding.

    ``T`` is the longest sequence in the Series being transformed. A NaN cell is a missing sequence (all
    unavailable). ``n_classes`` is fitted as max id + 1 unless given.

    Example:
        >>> import numpy as np, pandas as pd
        >>> s = pd.Series([[1, 2, 3], [2], np.nan])
        >>> conv = TokensConverter().fit(s, "pos")
        >>> v, a = conv.transform(s, "pos")
        >>> conv.n_classes, v.tolist(), a.tolist()
        (4, [[1, 2, 3], [2, 0, 0], [0, 0, 0]], [[True, True, True], [True, False, False], [False, False, False]])
    """

    type_name = "tokens"

    def __init__(self, n_classes: Optional[int] = None):
        self._n_classes_arg = None if n_classes is None else int(n_classes)
        self.n_classes: Optional[int] = None

    def _parse(self, series, column):
        missing, labelled = _split_missing(series)
        sequences = [self._parse_cell(cell, column, row) for row, cell in labelled.items()]
        return missing, labelled, sequences

    @staticmethod
    def _parse_cell(cell, column, row) -> np.ndarray:
        if not isinstance(cell, (list, tuple, np.ndarray)):
            raise ConverterError(f"tokens column '{column}': row {row!r} holds {cell!r}; expected a list of int "
                                 f"class ids (NaN for a missing sequence)")
        try:
            arr = np.asarray(cell)
        except ValueError:  # ragged nested lists
            arr = np.asarray(cell, dtype=object)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        integral = arr.dtype.kind in "iu" or (
            arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all())
        if arr.ndim != 1 or not integral:
            raise ConverterError(f"tokens column '{column}': row {row!r} holds {cell!r}; expected a flat list of "
                                 f"int class ids")
        arr = arr.astype(np.int64)
        if (arr < 0).any():
            raise ConverterError(f"tokens column '{column}': row {row!r} has negative class id(s) "
                                 f"{preview(arr[arr < 0])}; ids must be >= 0 (use NaN for a missing sequence)")
        return arr

    def _set_n_classes(self, n: int, column: str) -> None:
        if n < 2:
            raise ConverterError(f"tokens column '{column}' has {n} class(es); token classification needs at least "
                                 f"2 (pass TokensConverter(n_classes=...) if the data shows too few ids)")
        self.n_classes = int(n)

    def fit(self, series, column):
        require_labels(series, column)
        _, _, sequences = self._parse(series, column)
        if self._n_classes_arg is not None:
            self._set_n_classes(self._n_classes_arg, column)
        else:
            ids = np.concatenate(sequences)
            if ids.size == 0:
                raise ConverterError(f"tokens column '{column}' has no token labels (every sequence is empty)")
            self._set_n_classes(int(ids.max()) + 1, column)
        self.transform(series, column)
        return self

    def transform(self, series, column):
        self._require_fitted(column, self.n_classes is not None)
        missing, labelled, sequences = self._parse(series, column)
        lengths = np.zeros(len(series), dtype=np.int64)
        lengths[~missing] = [len(s) for s in sequences]
        flat = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        too_big = flat >= self.n_classes
        if too_big.any():
            raise ConverterError(f"tokens column '{column}': class id(s) {preview(flat[too_big])} out of range for "
                                 f"{self.n_classes} classes")
        width = int(lengths.max()) if len(lengths) else 0
        available = np.arange(width)[None, :] < lengths[:, None]
        values = np.zeros((len(series), width), dtype=np.int64)
        values[available] = flat  # boolean assignment fills row-major, i.e. in sequence order
        return torch.from_numpy(values), torch.from_numpy(available)

    def state_dict(self):
        return {"n_classes": self.n_classes}

    def load_state_dict(self, state):
        n = _state_get(state, "n_classes", self.type_name)
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConverterError(f"tokens converter state needs an integer 'n_classes', got {state!r}")
        self._set_n_classes(n, "<state>")


#: Default output converters by type name (zero-arg factories).
OUTPUT_CONVERTERS = {
    "binary": BinaryConverter,
    "category": CategoryConverter,
    "multilabel": MultilabelConverter,
    "continuous": ContinuousConverter,
    "regression": RegressionConverter,
    "tokens": TokensConverter,
}
