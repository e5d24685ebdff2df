"""Seeded train/valid/test splits by row identity, saved with the run (``splits.json``) and reused.

A split is a list of DataFrame index labels, never of positions: the same frame shuffled, or with its rows in
another order, gets the same rows in every split (and in the same order within a split, so the same seed gives
the same batches). The assignment itself depends only on the *set* of labels: labels are put in a canonical
order (ints by value, then strings) before the seeded shuffle, so for a frame with a sorted integer index (a
``RangeIndex``) the splits are those of a plain ``permutation(n)``.

``splits.json`` holds the labels of each split, a fingerprint of the frame's index (order-independent), and the
``seed`` / ``fractions`` / ``stratify`` that made them. Reusing a run directory with other rows or other split
settings is an error unless ``resplit=True`` asks for fresh splits.

Example:
    >>> make_splits(10, (0.6, 0.2, 0.2), seed=0)
    {'train': [2, 3, 4, 5, 6, 7], 'valid': [0, 9], 'test': [1, 8]}
    >>> split_labels(["b", "a", "c", "d"], (0.5, 0.25, 0.25), seed=0)
    {'train': ['a', 'c'], 'valid': ['b'], 'test': ['d']}
    >>> split_labels(["d", "c", "b", "a"], (0.5, 0.25, 0.25), seed=0)  # same rows, listed in the given order
    {'train': ['c', 'a'], 'valid': ['b'], 'test': ['d']}
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from typing import Dict, Hashable, Iterator, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_write_chunks
from ..messages import short_repr
from ..errors import RunnerError
from ..safe_read import read_json, rows_limit
from ..messages import warn_user

SPLITS = ("train", "valid", "test")
FORMAT = 2
_FEW = 5  # how many labels an error message quotes
_CHUNK = 1 << 16  # labels per piece of splits.json's text


def check_fractions(fractions) -> List[float]:
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        values = None
    if (values is None or len(values) != 3 or not all(math.isfinite(f) and f >= 0 for f in values)
            or not np.isclose(sum(values), 1.0)):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return values


def encode_label(label):
    """A DataFrame index label as a JSON value that reads back equal: a Python int or str. Other label types
    (floats, timestamps, tuples of a MultiIndex, bools) are refused rather than stored lossily."""
    if isinstance(label, (bool, np.bool_)):
        raise TypeError(label)
    if isinstance(label, numbers.Integral):
        return int(label)
    if isinstance(label, str):
        return str(label)
    raise TypeError(label)


def encode_labels(row_ids: Sequence) -> list:
    try:
        return [encode_label(label) for label in row_ids]
    except TypeError as e:
        label = e.args[0]
        raise RunnerError(f"the DataFrame index holds the label {label!r} of type {type(label).__name__}; splits are "
                          f"stored by row label, which must be an int or a str to be saved and read back exactly "
                          f"(e.g. df.reset_index(drop=True), or df.index = df.index.astype(str))") from None


def label_keys(row_ids: Sequence):
    """The row labels as the functions below take them: an int64 array when every label is an int, else
    :func:`encode_labels`' list. An integer index (a ``RangeIndex``) or ``range`` is read as its array at once:
    encoding it label by label makes a Python int per row (36 MB at 10^6 rows) only to pack them into the array.

    >>> label_keys(range(3)), label_keys(["a", 1])
    (array([0, 1, 2]), ['a', 1])
    """
    if isinstance(row_ids, range):
        return np.arange(row_ids.start, row_ids.stop, row_ids.step, dtype=np.int64)
    dtype = getattr(row_ids, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(row_ids):
        array = np.asarray(row_ids)
        if dtype.kind == "i" or array.max() <= np.iinfo(np.int64).max:  # larger uint64: the general path
            return array.astype(np.int64, copy=False)
    labels = encode_labels(row_ids)
    array = _int_array(labels)
    return labels if array is None else array


def _canonical(label):
    return (0, label, "") if isinstance(label, int) else (1, 0, label)


def _int_array(labels) -> Optional[np.ndarray]:
    """``labels`` as an int64 array when every one is an int (a ``RangeIndex``, an integer index), else ``None``.
    The functions below then sort and look up with numpy: at 10^6 rows the key tuples and dicts of the general path
    took ~140 MB at their peak for 8 MB of labels. An int64 array is returned as it is."""
    if isinstance(labels, np.ndarray):
        return labels if labels.dtype == np.int64 and labels.ndim == 1 else None
    if not len(labels) or type(labels[0]) is not int:
        return None
    try:
        array = np.asarray(labels)
    except OverflowError:  # an int beyond int64: the general path handles it
        return None
    return array if array.dtype == np.int64 and array.ndim == 1 else None


def index_fingerprint(labels) -> str:
    """sha256 of the sorted labels: the same for any order of the same rows.

    >>> index_fingerprint([3, 1, 2]) == index_fingerprint([1, 2, 3]) == index_fingerprint(np.array([2, 3, 1]))
    True
    """
    array = _int_array(labels)
    if array is None:
        text = json.dumps(sorted(labels, key=_canonical), separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    # The same bytes as json.dumps of the sorted list ("[1,2,3]"), written in chunks instead of one string.
    digest, ordered = hashlib.sha256(b"["), np.sort(array)
    for start in range(0, len(ordered), 1 << 16):
        chunk = ",".join(map(str, ordered[start:start + (1 << 16)].tolist()))
        digest.update(((b"," if start else b"") + chunk.encode("ascii")))
    digest.update(b"]")
    return "sha256:" + digest.hexdigest()


def stratum_groups(labels: Sequence, strata: Optional[Sequence[Hashable]] = None) -> List[List[int]]:
    """Positions of ``labels`` grouped by stratum (one group without ``strata``), each group in the labels'
    canonical order and the groups in a fixed order (``None``, "no label", last): what a seeded draw needs to
    give the same result for the same rows in any order."""
    array = _int_array(labels)
    if array is not None:  # unique ints: their canonical order is the ascending one
        canonical = np.argsort(array, kind="stable")
    else:
        canonical = sorted(range(len(labels)), key=lambda i: _canonical(labels[i]))
    if strata is None:
        return [canonical]
    by_key: Dict[Hashable, list] = {}
    for i in np.asarray(canonical, dtype=np.int64).tolist():
        by_key.setdefault(strata[i], []).append(i)
    return [by_key[key] for key in sorted(by_key, key=lambda k: (k is None, 0 if k is None else k))]


def split_labels(labels: Sequence, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42,
                 strata: Optional[Sequence[Hashable]] = None) -> Dict[str, list]:
    """Seeded split of ``labels`` (JSON-able, unique) by ``fractions`` (train, valid, test); each split lists its
    labels in the order of ``labels``. ``strata`` (one key per label, ``None`` for "no label") splits each
    stratum by the fractions separately."""
    return {name: members.tolist() if isinstance(members, np.ndarray) else members
            for name, members in _split_keys(labels, fractions, seed, strata).items()}


def _split_keys(labels: Sequence, fractions: Sequence[float], seed: int, strata: Optional[Sequence[Hashable]]):
    """:func:`split_labels`, with the splits of integer labels as int64 arrays (no Python int per row)."""
    fractions = check_fractions(fractions)
    array = _int_array(labels)
    groups = stratum_groups(labels if array is None else array, strata)
    rng = np.random.default_rng(seed)
    chosen = {name: [] for name in SPLITS}
    for group in groups:
        order = np.asarray(group, dtype=np.int64)[rng.permutation(len(group))]
        cuts = np.round(np.cumsum(fractions)[:2] * len(group)).astype(int)
        for name, part in zip(SPLITS, np.split(order, cuts)):
            chosen[name].append(part)
    return {name: (array[np.sort(np.concatenate(parts))] if array is not None else
                   [labels[i] for i in sorted(np.concatenate(parts).tolist())]) for name, parts in chosen.items()}


def make_splits(n: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42) -> Dict[str, List[int]]:
    """Splits of the positions ``range(n)`` (the labels of a ``RangeIndex``)."""
    return split_labels(list(range(n)), fractions, seed)


def load_or_make_splits(path: str, row_ids: Sequence, fractions=(0.7, 0.15, 0.15), seed: int = 42,
                        stratify: Optional[str] = None, strata: Optional[Sequence[Hashable]] = None,
                        resplit: bool = False) -> Dict[str, np.ndarray]:
    """The splits saved at ``path``, checked against the frame's rows and the split settings, as dataset
    *positions* (an int64 array per split, in its saved order); made and saved when there are none (or
    ``resplit``)."""
    fractions = check_fractions(fractions)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise RunnerError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    if stratify is not None and not isinstance(stratify, str):
        raise RunnerError(f"stratify must be a task name or None, got {stratify!r}")
    keys = label_keys(row_ids)  # once: the steps below take integer labels as this array
    if resplit or not os.path.exists(path):
        splits = _split_keys(keys, fractions, seed, strata)
        atomic_write_chunks(path, splits_json({"format": FORMAT, "seed": seed, "fractions": fractions,
                                               "stratify": stratify, "num_samples": len(keys),
                                               "index_fingerprint": index_fingerprint(keys)}, splits))
        return _positions(splits, keys)
    saved = _read(path, len(keys))
    if "format" not in saved:
        return _legacy_positions(path, saved, len(keys))
    splits = _validated(path, saved)
    settings = {"seed": seed, "fractions": fractions, "stratify": stratify}
    differ = {k: (saved[k], v) for k, v in settings.items()
              if (not np.allclose(saved[k], v) if k == "fractions" else saved[k] != v)}
    if differ:
        text = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in differ.items())
        raise RunnerError(f"{path} was made with {text}; the run's existing checkpoints were trained on those "
                          f"splits. Use the same settings, another runner_name, or resplit=True for fresh splits")
    if _same_rows(splits, keys):
        return _positions(splits, keys)
    labels = keys.tolist() if isinstance(keys, np.ndarray) else keys
    saved_set, current = set(sum(splits.values(), [])), set(labels)
    if saved_set != current:
        added, removed = sorted(current - saved_set, key=_canonical), sorted(saved_set - current, key=_canonical)
        raise RunnerError(
            f"the DataFrame's rows differ from those split in {path}: {len(added)} row(s) added "
            f"{added[:_FEW]}, {len(removed)} removed {removed[:_FEW]} (the frame has {len(current)} rows, the file "
            f"{len(saved_set)}). Splits are kept by row label so that no training row lands in valid/test; use the "
            f"same rows, another runner_name, or resplit=True (fresh splits: the run's existing checkpoints may "
            f"then have trained on rows of the new valid/test splits)")
    return _positions(splits, labels)


def splits_json(header: dict, splits: Dict[str, Sequence]) -> Iterator[bytes]:
    """The bytes of ``atomic_write_json``'s ``{**header, "splits": splits}`` (``json.dumps`` with ``indent=2``),
    a chunk at a time, with the labels of integer splits read from their arrays: as one text, with the lists
    ``json`` needs, 10^6 labels took ~50 MB at once.

    >>> header = {"format": 2, "fractions": [0.5, 0.5]}
    >>> text = b"".join(splits_json(header, {"train": np.array([3, 1]), "test": np.zeros(0, dtype=np.int64)}))
    >>> text.decode() == json.dumps({**header, "splits": {"train": [3, 1], "test": []}}, indent=2)
    True
    """
    if not all(isinstance(members, np.ndarray) for members in splits.values()):  # string labels: json as it is
        lists = {name: members.tolist() if isinstance(members, np.ndarray) else list(members)
                 for name, members in splits.items()}
        yield json.dumps({**header, "splits": lists}, indent=2, allow_nan=False).encode("utf-8")
        return
    # "splits" is the last key: json's text of the header with "splits": null, minus that null and the closing brace.
    head = json.dumps({**header, "splits": None}, indent=2, allow_nan=False)
    yield head[:-len("null\n}")].encode("utf-8")
    for k, (name, members) in enumerate(splits.items()):
        yield ("{" if k == 0 else ",").encode() + f"\n    {json.dumps(name)}: ".encode("utf-8")
        if not len(members):
            yield b"[]"
            continue
        for start in range(0, len(members), _CHUNK):
            items = "\n      " + ",\n      ".join(map(str, members[start:start + _CHUNK].tolist()))
            yield ("[" if start == 0 else ",").encode() + items.encode("ascii")
        yield b"\n    ]"
    yield b"\n  }\n}" if splits else b"{}\n}"


def _positions(splits: Dict[str, Sequence], labels: Sequence) -> Dict[str, np.ndarray]:
    """Each split's labels as dataset positions, an int64 array per split (a list would hold a Python int per
    row: 36 MB at 10^6 rows)."""
    array = _int_array(labels)
    if array is not None and all(not len(members) or _int_array(members) is not None for members in splits.values()):
        order = np.argsort(array, kind="stable")
        ordered = array[order]
        return {name: order[np.searchsorted(ordered, np.asarray(members, dtype=np.int64))]
                for name, members in splits.items()}
    position = {label: i for i, label in enumerate(labels)}
    return {name: np.array([position[label] for label in members], dtype=np.int64)
            for name, members in splits.items()}


def _same_rows(splits: Dict[str, list], labels: list) -> bool:
    """Whether the saved splits hold exactly the rows ``labels`` (``False`` also when only the general comparison
    by sets can tell)."""
    array = _int_array(labels)
    saved = [_int_array(members) for members in splits.values() if members]
    if array is None or any(part is None for part in saved):
        return False
    together = np.concatenate(saved) if saved else np.zeros(0, dtype=np.int64)
    return len(together) == len(array) and bool(np.array_equal(np.sort(together), np.sort(array)))


def _read(path: str, rows: int) -> dict:
    """The saved splits of a frame of ``rows`` rows, parsed (the size limit grows with the rows it lists)."""
    try:
        saved = read_json(path, max_bytes=rows_limit(rows))
    except (OSError, ValueError) as e:
        raise RunnerError(f"cannot read the saved splits {path} as JSON ({e}); delete it or pass resplit=True") \
            from None
    if not isinstance(saved, dict):
        raise RunnerError(f"the saved splits {path} hold a {type(saved).__name__}, expected an object with "
                          f"'splits'; delete it or pass resplit=True")
    return saved


def _bad(path: str, field: str, expected: str, got) -> RunnerError:
    shown = short_repr(got)
    return RunnerError(f"the saved splits {path}: field '{field}' must be {expected}, got {shown}; the file is "
                       f"damaged (delete it, or pass resplit=True)")


def _validated(path: str, saved: dict) -> Dict[str, list]:
    if saved["format"] != FORMAT or isinstance(saved["format"], bool):
        raise _bad(path, "format", str(FORMAT), saved["format"])
    seed = saved.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _bad(path, "seed", "an int", seed)
    fractions = saved.get("fractions")
    try:
        check_fractions(fractions if isinstance(fractions, list) else None)
    except ValueError:
        raise _bad(path, "fractions", "three non-negative numbers summing to 1", fractions) from None
    if not (saved.get("stratify") is None or isinstance(saved.get("stratify"), str)):
        raise _bad(path, "stratify", "a task name or null", saved.get("stratify"))
    if not isinstance(saved.get("index_fingerprint"), str):
        raise _bad(path, "index_fingerprint", "a string", saved.get("index_fingerprint"))
    splits = saved.get("splits")
    if not isinstance(splits, dict) or sorted(splits) != sorted(SPLITS):
        raise _bad(path, "splits", f"an object with the lists {list(SPLITS)}", splits)
    for name in SPLITS:
        if not isinstance(splits[name], list):
            raise _bad(path, f"splits.{name}", "a list of row labels", splits[name])
    rows = _distinct_ints([splits[name] for name in SPLITS])
    if rows is None:  # other labels, or a label listed twice: checked one by one, naming the offending one
        rows = list(_owners(path, splits))
    if saved.get("num_samples") != len(rows) or isinstance(saved.get("num_samples"), bool):
        raise _bad(path, "num_samples", f"the number of rows listed in 'splits' ({len(rows)})",
                   saved.get("num_samples"))
    if index_fingerprint(rows) != saved["index_fingerprint"]:
        raise RunnerError(f"the saved splits {path}: field 'index_fingerprint' does not match the rows listed in "
                          f"'splits' (the file was edited or damaged); delete it, or pass resplit=True")
    return {name: splits[name] for name in SPLITS}


def _distinct_ints(parts: List[list]) -> Optional[np.ndarray]:
    """The labels of ``parts`` joined as one int64 array when every one is an int (not a bool) and none repeats;
    else None. At 10^6 rows the label-by-label check below holds a dict of every label (~70 MB)."""
    if not all(type(label) is int for part in parts for label in part):
        return None
    arrays = [_int_array(part) if part else np.zeros(0, dtype=np.int64) for part in parts]
    if any(array is None for array in arrays):
        return None
    together = np.concatenate(arrays)
    ordered = np.sort(together)
    return together if not np.any(ordered[1:] == ordered[:-1]) else None


def _owners(path: str, splits: dict) -> Dict:
    """Each label of the saved splits -> its split, checking that labels are ints or strings listed once."""
    owner = {}
    for name in SPLITS:
        for label in splits[name]:
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise _bad(path, f"splits.{name}", "a list of row labels (ints or strings)", label)
            if label in owner:
                where = "twice" if owner[label] == name else f"also in '{owner[label]}'"
                raise RunnerError(f"the saved splits {path}: field 'splits.{name}' lists the row {label!r} {where}; "
                                  f"splits must not overlap (delete the file, or pass resplit=True)")
            owner[label] = name
    return owner


def _legacy_positions(path: str, saved: dict, n: int) -> Dict[str, np.ndarray]:
    """A ``splits.json`` of an older version: positions, valid only for the frame in its original order."""
    if saved.get("num_samples") != n:
        raise RunnerError(f"the splits saved in {path} are for {saved.get('num_samples')} samples, but the dataset "
                          f"has {n}; use a new runner_name (or resplit=True) for a different dataset")
    splits = saved.get("splits")
    if not isinstance(splits, dict) or not all(isinstance(splits.get(name), list) for name in SPLITS):
        raise _bad(path, "splits", f"an object with the lists {list(SPLITS)}", splits)
    seen = set()
    for name in SPLITS:
        for i in splits[name]:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n or i in seen:
                raise _bad(path, f"splits.{name}", f"distinct row positions in [0, {n})", i)
            seen.add(i)
    warn_user(f"{path} stores row positions (an older format): a reordered DataFrame would change the splits; "
              f"pass resplit=True to store them by row label (fresh splits)")
    return {name: np.array(splits[name], dtype=np.int64) for name in SPLITS}
