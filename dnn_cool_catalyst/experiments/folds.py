"""Seeded folds by row identity, their checks, and the files of a fold group (``cv.json``, each fold's splits).

Folds partition the rows outside the hold-out test split. Like the splits (run/splits.py) the assignment
depends only on the *set* of row labels and the seed: labels are put in canonical order, shuffled with the seed
and dealt to the folds in turn, so a reordered frame gets the same folds, and every experiment with the same seed
the same folds. Stratified folds deal each class in turn, continuing where the previous class stopped, so fold
sizes differ by at most one row and each class's count per fold by at most one.

Example:
    >>> fold_labels(list(range(10)), folds=3, seed=0)
    [[0, 1, 2, 3], [4, 6, 7], [5, 8, 9]]
    >>> fold_labels([10, 11, 12, 13], folds=2, seed=0, strata=["a", "b", "a", "b"])
    [[10, 13], [11, 12]]
"""
from __future__ import annotations

import numbers
import os
from collections import Counter
from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_write_json
from ..errors import RunnerError
from ..run.layout import RunDir, fold_name
from ..run.splits import FORMAT, SPLITS, _read, _validated, index_fingerprint, stratum_groups
from ..safe_read import read_json

KIND = "cross_validation"
STATUSES = ("running", "failed", "done")


def fold_labels(labels: Sequence, folds: int, seed: int, strata: Optional[Sequence[Hashable]] = None
                ) -> List[list]:
    """``labels`` (unique ints/strs) dealt into ``folds`` seeded folds; each fold lists its labels in the order of
    ``labels``. ``strata`` (one key per label, ``None`` for "no label") deals each class separately."""
    groups = stratum_groups(labels, strata)
    # A stream of its own: the folds must not repeat the pattern of the train/valid/test permutation.
    rng = np.random.default_rng([int(seed), folds])
    members: List[List[int]] = [[] for _ in range(folds)]
    dealt = 0
    for group in groups:
        for i in rng.permutation(len(group)):
            members[dealt % folds].append(group[int(i)])
            dealt += 1
    return [[labels[i] for i in sorted(fold)] for fold in members]


def check_folds(folds, num_rows: int, num_test: int) -> int:
    """``folds`` as an int in ``[2, num_rows]`` (rows outside the test split), or a RunnerError saying why not."""
    if isinstance(folds, (bool, np.bool_)) or not isinstance(folds, numbers.Integral):
        raise RunnerError(f"folds must be an int >= 2, got {folds!r}")
    folds = int(folds)
    if folds < 2:
        raise RunnerError(f"folds={folds}: cross-validation needs at least 2 folds")
    if folds > num_rows:
        raise RunnerError(f"folds={folds} is more than the {num_rows} rows outside the test split (the data has "
                          f"{num_rows + num_test} rows, {num_test} held out for testing); every fold needs at least "
                          f"one row: use fewer folds")
    return folds


def check_strata(strata: Sequence[Optional[int]], folds: int, stratify: str, class_name) -> None:
    """Every labelled class of the stratifying task needs a row in each fold; ``class_name(id)`` names a class."""
    counts = Counter(s for s in strata if s is not None)
    for cls, count in sorted(counts.items()):
        if count < folds:
            raise RunnerError(f"stratify={stratify!r}: class {class_name(cls)!r} has only {count} row(s) outside the "
                              f"test split, fewer than folds={folds}; each fold needs at least one row of every class "
                              f"(use at most {count} folds, or stratify=None)")


# -- cv.json ----------------------------------------------------------------------------------------------------

def settings_of(folds: int, seed: int, stratify: Optional[str], test_fraction: float) -> dict:
    return {"kind": KIND, "folds": folds, "seed": seed, "stratify": stratify, "test_fraction": test_fraction}


def load_or_start(group: str, settings: dict, write: bool = True) -> dict:
    """The fold group's ``cv.json``: read and checked against ``settings`` when it exists, else started (and
    written) with no fold status yet, which means "not started"."""
    path = RunDir(group).cv_json
    if not os.path.exists(path):
        state = {**settings, "fold_dirs": [fold_name(k) for k in range(settings["folds"])], "status": {},
                 "trained": []}
        if write:
            atomic_write_json(path, state)
        return state
    try:
        state = read_json(path)
    except (OSError, ValueError) as e:
        raise RunnerError(f"cannot read {path} ({e}): the fold group {group} is damaged; delete it or choose "
                          f"another runner_name") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise RunnerError(f"{path}: field 'kind' must be {KIND!r}; the fold group {group} is damaged; delete it or "
                          f"choose another runner_name")
    differ = {k: (state.get(k), v) for k, v in settings.items()
              if (not np.isclose(state.get(k), v) if k == "test_fraction" and isinstance(state.get(k), float)
                  else state.get(k) != v)}
    if differ:
        text = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in differ.items())
        raise RunnerError(f"the fold group {group} was made with {text} ({path}); its folds were trained on those "
                          f"settings. Use the same settings or another runner_name")
    status = state.get("status")
    if not isinstance(status, dict) or any(v not in STATUSES for v in status.values()):
        raise RunnerError(f"{path}: field 'status' must map fold names to one of {list(STATUSES)}, got "
                          f"{status!r}; delete the file to start the folds again")
    trained = state.setdefault("trained", [])
    if not isinstance(trained, list) or not all(isinstance(name, str) for name in trained):
        raise RunnerError(f"{path}: field 'trained' must list fold names, got {trained!r}; delete the file to start "
                          f"the folds again")
    return state


def save_state(group: str, state: dict) -> None:
    atomic_write_json(RunDir(group).cv_json, state)


# -- each fold's splits.json -----------------------------------------------------------------------------------

def write_or_check_fold_splits(path: str, splits: Dict[str, list], seed: int, stratify: Optional[str], k: int,
                               folds: int, write: bool = True) -> None:
    """A fold's ``splits.json`` in the format of run/splits.py (train = the other folds, valid = this fold,
    test = the group's test split); an existing file must list exactly these rows."""
    if os.path.exists(path):
        saved = _validated(path, _read(path, sum(len(splits[name]) for name in SPLITS)))
        if saved != splits:
            raise RunnerError(f"{path} lists other rows than fold {k} of {folds} with seed={seed} (edited, or made "
                              f"from other data); delete the fold group or choose another runner_name")
        return
    if not write:
        return
    labels = [label for name in SPLITS for label in splits[name]]
    fractions = [len(splits[name]) / len(labels) for name in SPLITS]
    atomic_write_json(path, {"format": FORMAT, "seed": seed, "fractions": fractions, "stratify": stratify,
                             "num_samples": len(labels), "index_fingerprint": index_fingerprint(labels),
                             "splits": splits, "fold": {"index": k, "folds": folds}})
