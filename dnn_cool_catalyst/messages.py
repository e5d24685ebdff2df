"""Small pieces of the library's error messages."""
from __future__ import annotations


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (ending in ``...``): a damaged file's field may hold anything.

    >>> short_repr("0.3"), short_repr(list(range(40)), limit=12)
    ("'0.3'", '[0, 1, 2,...')
    """
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
