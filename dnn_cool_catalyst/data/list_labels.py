"""List label converters: a cell holds several labels, either a set of class names (multilabel) or a sequence of
class ids (tokens).

Both give a 2-D ``(N, C)`` or ``(N, T)`` tensor with a mask of the same shape; a NaN cell is a missing row (every
element unavailable), while an empty list is a labelled row with no class (multilabel) or no token (tokens).

Example:
    >>> import numpy as np, pandas as pd
    >>> MultilabelConverter().fit(pd.Series(["beard, glasses", np.nan]), "face").class_names
    ['beard', 'glasses']
    >>> TokensConverter().fit(pd.Series([[0, 2], np.nan]), "pos").n_classes
    3
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import ConverterError
from .cells import preview, short_list, split_missing
from .value_converter import ValueConverter, require_labels


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
        missing, labelled = split_missing(series)
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
                                 f"are {short_list(self.class_names)}")
        values = np.zeros((len(series), len(self.class_names)), dtype=np.float32)
        values[np.repeat(rows, lengths), ids] = 1.0
        available = np.repeat(~missing[:, None], len(self.class_names), axis=1)
        return torch.from_numpy(values), torch.from_numpy(available)

    def state_dict(self):
        return {"class_names": list(self.class_names or [])}

    def load_state_dict(self, state):
        self._set_vocab([str(c) for c in self._state_field(state, "class_names")], "<state>")


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
        missing, labelled = split_missing(series)
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
        n = self._state_field(state, "n_classes")
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConverterError(f"tokens converter state needs an integer 'n_classes', got {state!r}")
        self._set_n_classes(n, "<state>")
