"""Labels as the DataFrame column holds them: one *label kind* per task, ``bool``, ``int``, ``float`` or ``str``.

Converters store labels under keys (a binary task's two JSON values, a classification task's class names as
strings: ``"1"`` for the labels 1 and 1.0), which lose the column's type. The kind, fitted from the column and
saved with the converter state, gives it back: :func:`typed_label` turns a stored key into the value the column
holds (``"5"`` -> ``5.0`` on a float column, ``1`` -> ``True`` on a bool column), :data:`PANDAS_DTYPES` names the
nullable pandas dtype ``runner.predict`` returns for it (``pd.NA`` where a task does not apply, so a gated task
has the dtype of an ungated one), and :func:`find_label` resolves a condition value (``out.level == 5``) the same
way for every kind: by equality under the column's own dtype. Numbers (and bools, as in numpy: ``True == 1``)
compare as numbers on ``bool``/``int``/``float`` columns, so ``5``, ``5.0`` and ``np.int64(5)`` are the same label;
text compares as text on ``str`` columns. A string on a numeric column (``"5"``) or a number on a text column is
refused, with the labels listed as the column holds them.

Example:
    >>> typed_labels("float", ["1", "2"]), typed_labels("bool", [0, 1]), typed_labels("str", ["no", "yes"])
    ([1.0, 2.0], [False, True], ['no', 'yes'])
    >>> find_label("float", ["1", "5"], 5), find_label("float", ["1", "5"], "5")
    (1, None)
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

#: Label kind -> the nullable pandas dtype of predictions of that kind.
PANDAS_DTYPES = {"bool": "boolean", "int": "Int64", "float": "Float64", "str": "string"}
LABEL_KINDS = tuple(PANDAS_DTYPES)
_NUMERIC = ("bool", "int", "float")


def kind_of_column(labelled: pd.Series) -> str:
    """The label kind of a column's labelled (non-missing) cells: its dtype when it has one (bool, integer,
    float, string), else what the cells are (an object column of bools is ``bool``, of ints ``int``, of ints and
    floats ``float``; anything holding text is ``str``).

    >>> kind_of_column(pd.Series([1.0, 5.0])), kind_of_column(pd.Series([True, False], dtype=object))
    ('float', 'bool')
    >>> kind_of_column(pd.Series([3, "cat"], dtype=object)), kind_of_column(pd.Series([1, 2], dtype="Int64"))
    ('str', 'int')
    """
    dtype = labelled.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return kind_of_column(pd.Series(labelled.astype(object).tolist(), dtype=object).infer_objects())
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_integer_dtype(dtype):
        return "int"
    if ptypes.is_float_dtype(dtype):
        return "float"
    inferred = ptypes.infer_dtype(labelled, skipna=True)
    if inferred == "boolean":
        return "bool"
    if inferred == "integer":
        return "int"
    if inferred in ("floating", "mixed-integer-float"):
        return "float"
    cells = labelled.dropna().tolist()
    if cells and all(isinstance(c, (bool, int, float, np.bool_, np.number)) for c in cells):
        return "float"  # numbers of mixed kinds (bools and ints): compared as numbers
    return "str"


def kind_of_keys(keys: Sequence) -> str:
    """The label kind of stored keys when no kind was saved (tasks built by hand, older converter states):
    bools -> ``bool``, integers or integer text -> ``int``, other numbers -> ``float``, else ``str``.

    >>> kind_of_keys([0, 1]), kind_of_keys(["1", "10"]), kind_of_keys([36, 60.5]), kind_of_keys(["3", "cat"])
    ('int', 'int', 'float', 'str')
    """
    keys = list(keys)
    if keys and all(isinstance(k, (bool, np.bool_)) for k in keys):
        return "bool"
    if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) or _is_int_text(k) for k in keys):
        return "int"
    if all(isinstance(k, (int, float, np.number)) and not isinstance(k, bool) for k in keys):
        return "float"
    return "str"


def check_kind(kind, where: str) -> str:
    """``kind`` if it is a label kind, else a ValueError naming ``where``."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"{where}: label kind must be one of {list(LABEL_KINDS)}, got {kind!r}")
    return kind


def typed_label(kind: str, key):
    """A stored key as the value the column holds (``kind``: see :data:`LABEL_KINDS`)."""
    if kind == "str":
        return str(key)
    number = _number(key)
    if kind == "bool":
        return bool(number)
    if kind == "int":
        return int(key) if _is_int_text(key) else int(number)
    return float(number)


def typed_labels(kind: str, keys: Sequence) -> list:
    return [typed_label(kind, key) for key in keys]


def find_label(kind: str, keys: Sequence, value) -> Optional[int]:
    """The position in ``keys`` of the label equal to ``value`` under the column's dtype, None if no label is
    (including a string on a numeric column and a number on a text column)."""
    value = value.item() if isinstance(value, np.generic) else value
    if kind == "str":
        texts = [str(k) for k in keys]
        return texts.index(value) if isinstance(value, str) and value in texts else None
    if isinstance(value, str) or not isinstance(value, (bool, int, float)):
        return None
    for i, key in enumerate(keys):
        if _number(key) == float(value):
            return i
    return None


def mismatch_hint(kind: str, value) -> str:
    """Why a value of the wrong type is not a label: ``""`` when its type fits the column."""
    value = value.item() if isinstance(value, np.generic) else value
    if kind != "str" and isinstance(value, str):
        return (f"; the column holds {kind} labels, so compare with a {kind} value (without quotes), not the text "
                f"{value!r}")
    if kind == "str" and not isinstance(value, str):
        return f"; the column holds text labels, so compare with a string such as {str(value)!r}"
    return ""


def series_of(kind: Optional[str], cells: List) -> pd.Series:
    """``cells`` (label values, ``None`` where a task does not apply) as a Series of ``kind``'s nullable dtype
    with ``pd.NA`` there; ``kind=None``: objects (e.g. lists of labels) with ``pd.NA``.

    >>> series_of("float", [1.0, None]).tolist(), str(series_of("bool", [True, None]).dtype)
    ([1.0, <NA>], 'boolean')
    """
    cells = [pd.NA if c is None else c for c in cells]
    if kind is None:
        return pd.Series(cells, dtype=object)
    return pd.Series(pd.array(cells, dtype=PANDAS_DTYPES[kind]))


def _number(key) -> float:
    if isinstance(key, str):
        return {"True": 1.0, "False": 0.0}.get(key) if key in ("True", "False") else float(key)
    return float(key)


def _is_int_text(key) -> bool:
    if not isinstance(key, str):
        return False
    try:
        return str(int(key)) == key
    except ValueError:
        return False
