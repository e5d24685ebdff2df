"""Small pieces of the library's error messages."""
from __future__ import annotations

import os
import sys
import warnings


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (ending in ``...``): a damaged file's field may hold anything.

    >>> short_repr("0.3"), short_repr(list(range(40)), limit=12)
    ("'0.3'", '[0, 1, 2,...')
    """
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside this package: the line of the user's script
    (``runner.evaluate()``), not the library line that noticed the problem, however deep the call.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("no tuned parameters")
    >>> caught[0].filename == __file__ or not caught[0].filename.startswith(PACKAGE_DIR)
    True
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
