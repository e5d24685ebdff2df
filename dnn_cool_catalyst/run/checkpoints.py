"""The checkpoint files of a run, read safely: a checkpoint loads without executing code, and the storage index
(``runner.storage.json``, see callbacks/checkpoint.py for how it is written) names only files of its own folder.

Example:
    >>> import tempfile
    >>> from dnn_cool_catalyst.atomic import atomic_write_text
    >>> folder = tempfile.mkdtemp()
    >>> atomic_write_text(os.path.join(folder, "runner.storage.json"),
    ...                   '{"storage": [{"logpath": "../other/runner.0001.pth", "metric": 0.5}]}')
    >>> read_storage_index(os.path.join(folder, "runner.storage.json"), folder)
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.CheckpointError: checkpoint index ... logpath '../other/runner.0001.pth' is not ...
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import List, Tuple

import torch

from ..errors import CheckpointError  # defined there with every library error; re-exported here
from ..safe_read import read_json


def read_checkpoint(path: str) -> dict:
    """``torch.load(path, weights_only=True)``: a checkpoint is data, so unpickling arbitrary objects (which can
    run code) is refused. Any failure names the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as e:
        # torch reports a truncated zip as OSError/RuntimeError and a forbidden global as UnpicklingError.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read as a weights-only checkpoint (truncated, not a "
                              f"checkpoint, or it holds pickled Python objects): {first_line}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict of states")
    return state


def is_inside(path: str, directory: str) -> bool:
    """Whether ``path``, symlinks resolved, is a file directly inside ``directory`` (symlinks resolved too)."""
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(directory)


def read_storage_index(path: str, logdir: str) -> List[Tuple[str, float]]:
    """The ``(checkpoint path, score)`` entries of a ``<mode>.storage.json`` whose files still exist.

    Each ``logpath`` must name a checkpoint file directly inside ``logdir``: relative (as written now), or, from
    an older version, absolute but pointing into ``logdir`` itself. An entry leading anywhere else (another run
    directory, ``..``, a symlink out) is refused: resume deletes and copies the files this index names."""
    try:
        saved = read_json(path)
        items = saved["storage"]
        if not isinstance(items, list):
            raise TypeError(f"'storage' is a {type(items).__name__}, expected a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint index {path} is corrupted ({e}); delete it to resume without "
                              f"the best-epoch record") from None
    entries = []
    for i, item in enumerate(items):
        logpath = item.get("logpath") if isinstance(item, dict) else None
        metric = item.get("metric") if isinstance(item, dict) else None
        if not isinstance(logpath, str) or not logpath or isinstance(metric, bool) \
                or not isinstance(metric, (int, float)):
            raise CheckpointError(f"checkpoint index {path}: entry storage[{i}] must be {{'logpath': <file name>, "
                                  f"'metric': <number>}}, got {item!r}; delete the index to resume without the "
                                  f"best-epoch record")
        # A bare file name (written now) lives in logdir; a path with directories is an older version's entry
        # (absolute, or relative to the working directory then), accepted only where it resolves into logdir.
        full = os.path.join(logdir, logpath) if os.path.basename(logpath) == logpath else logpath
        if not is_inside(full, logdir) or not logpath.endswith(".pth"):
            raise CheckpointError(f"checkpoint index {path}: entry storage[{i}] logpath {logpath!r} is not a "
                                  f"checkpoint file of {logdir} (copied from another run, or crafted); nothing "
                                  f"outside the run directory is read or deleted. Delete the index to resume "
                                  f"without the best-epoch record")
        if os.path.isfile(full):
            entries.append((os.path.join(logdir, os.path.basename(full)), float(metric)))
    return entries
