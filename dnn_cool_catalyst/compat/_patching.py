"""What the three patch modules share: the mark on every replacement and the objects it replaced.

One registry for ``catalyst.py``, ``accelerate.py`` and ``distributed.py``, so that ``compat.original(name)`` answers
for any patch and :func:`is_ours` recognises a replacement whichever module made it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

# attribute set on every replacement function (its value is the replaced original)
_FLAG = "_dnn_cool_compat_original"

# patch name -> the object that patch replaced (filled by the patches, read by compat.original)
ORIGINALS: Dict[str, Any] = {}


def mark(replacement: Callable, replaced: Any) -> Callable:
    setattr(replacement, _FLAG, replaced)
    return replacement


def is_ours(obj: Any) -> bool:
    return hasattr(obj, _FLAG)
