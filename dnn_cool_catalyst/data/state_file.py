"""The converter state file (a run's ``converters.json``): per column its role, type and fitted state.

``Converters.build(..., state_path=...)`` reads it with :func:`load_state`, which checks every entry field by field,
so a damaged or crafted file is our error naming the field rather than a TypeError deep inside ``build``; after a
converter loads its state, :func:`check_round_trip` makes sure the converter reads every field as stored.

Example:
    >>> load_state(None)
    {'version': 1, 'columns': {}}
    >>> stored_entry({"age": {"role": "input", "type": "numeric", "state": {}}}, "age", "output") is None
    True
"""
from __future__ import annotations

import json
import os
from typing import Optional

from ..errors import ConverterError
from ..messages import short_repr
from ..safe_read import read_json

STATE_VERSION = 1


def stored_entry(columns_state: dict, column: str, role: str) -> Optional[dict]:
    """The file's entry for ``column`` in this ``role``, or None (not stored: fit the converter)."""
    entry = columns_state.get(column)
    # A column that changed role (input <-> output) is refitted rather than reusing the other role's state.
    return entry if isinstance(entry, dict) and entry.get("role", role) == role else None


def load_state(state_path: Optional[str]) -> dict:
    """The checked contents of ``state_path``; an empty state when no path is given or the file does not exist."""
    empty = {"version": STATE_VERSION, "columns": {}}
    if state_path is None or not os.path.exists(state_path):
        return empty
    try:
        state = read_json(state_path)
    except (OSError, ValueError) as e:  # ValueError: bad UTF-8 / JSON, or beyond the safe_read limits
        raise ConverterError(f"cannot read converter state file {state_path!r}: {e}; fix or delete it to refit") from e
    if not isinstance(state, dict) or not isinstance(state.get("columns"), dict):
        raise ConverterError(f"converter state file {state_path!r} is not a converter state (expected an object "
                             f"with a 'columns' object); fix or delete it to refit")
    for column, entry in state["columns"].items():
        _check_state_entry(state_path, column, entry)
    return state


def _bad_state_field(state_path: str, field: str, expected: str, got) -> ConverterError:
    shown = short_repr(got)
    return ConverterError(f"converter state file {state_path!r}: field '{field}' must be {expected}, got {shown}; "
                          f"fix or delete it to refit")


def _check_state_entry(state_path: str, column: str, entry) -> None:
    # Field by field, so a crafted or damaged file gives our error, not a TypeError deep inside build().
    where = f"columns.{column}"
    if not isinstance(entry, dict):
        raise _bad_state_field(state_path, where, "an object with 'role', 'type' and 'state'", entry)
    unknown = sorted(set(entry) - {"role", "type", "state"})
    if unknown:
        raise _bad_state_field(state_path, f"{where}.{unknown[0]}", "absent (fields are role, type, state)",
                               entry[unknown[0]])
    if "role" in entry and entry["role"] not in ("input", "output"):
        raise _bad_state_field(state_path, f"{where}.role", "'input' or 'output'", entry["role"])
    if not isinstance(entry.get("type"), str) or not entry["type"]:
        raise _bad_state_field(state_path, f"{where}.type", "a type name (a string)", entry.get("type"))
    if not isinstance(entry.get("state", {}), dict):
        raise _bad_state_field(state_path, f"{where}.state", "an object", entry.get("state"))


def check_round_trip(converter, stored: dict, column: str, state_path: Optional[str]) -> None:
    """Every stored state field must come back unchanged from the loaded converter: load_state_dict may coerce
    (``"0.3"`` -> 0.3, ``"ab"`` -> ``['a', 'b']``) or ignore fields, and either would silently change the
    mapping. Fields the file lacks (older versions) are left to the converter's defaults."""
    loaded = json.loads(json.dumps(converter.state_dict()))
    for key, value in stored.items():
        if key not in loaded:
            raise _bad_state_field(state_path, f"columns.{column}.state.{key}",
                                   f"absent (the {type(converter).__name__} state has {sorted(loaded)})", value)
        if not _same_json(value, loaded[key]):
            raise _bad_state_field(state_path, f"columns.{column}.state.{key}",
                                   f"like {loaded[key]!r} (as the converter reads it)", value)


def _same_json(a, b) -> bool:
    """Equality of JSON values that does not equate True with 1 or "1" with 1 (1 and 1.0 are equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
