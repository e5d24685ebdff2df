"""CSV files written for people open in spreadsheets, where a text cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is run as a formula (CSV injection). :func:`spreadsheet_safe` prefixes such text cells,
and such column names, with a single quote, as OWASP advises; numbers (``-0.5``, and text that is just a number)
are left as they are. Every CSV the library writes for people goes through it: ``report.csv``, the predictions
of ``dnn-cool-predict``, ``evaluation_*.csv`` and ``cv_summary.csv``.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"name": ["=1+1", "-cmd", "@SUM(A1)", "ok", "-3"], "value": [-1.5, 2, 3, 4, 5]})
    >>> spreadsheet_safe(table).to_dict("list")
    {'name': ["'=1+1", "'-cmd", "'@SUM(A1)", 'ok', '-3'], 'value': [-1.5, 2.0, 3.0, 4.0, 5.0]}
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value  # "-3", "+1e5": a number written as text runs nothing
    except ValueError:
        return "'" + value


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells and column names cannot run as spreadsheet formulas."""
    safe = table.rename(columns=safe_cell)
    for column in range(safe.shape[1]):
        values = safe.iloc[:, column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            safe.isetitem(column, values.map(safe_cell))
    return safe
