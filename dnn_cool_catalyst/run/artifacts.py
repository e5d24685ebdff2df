"""Inference outputs on disk: one ``.npz`` per split and task, a manifest per split, a JSON index; no pickle.

Each split is written to a fresh hidden directory (``infer/.<split>.new-*``), manifest last, then swapped in
for ``infer/<split>`` with two renames, so a process killed at any moment leaves either the previous complete
split, or no split directory, or a leftover hidden directory that nothing reads. The manifest
(``infer/<split>/manifest.json``) records which checkpoint produced the outputs (file name and sha256), the
split's rows (dataset positions and DataFrame index labels, in stored order) and the sha256 of every task file.
Readers check all of it (:func:`load_split`), so interrupted, mixed (files of two infers), swapped (a valid
``.npz`` copied over a test ``.npz``) and stale (checkpoint retrained since) outputs are refused.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import uuid
import zipfile
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..atomic import atomic_write_bytes, atomic_write_json
from ..errors import ArtifactError  # defined there with every library error; re-exported here
from ..messages import short_repr
from ..safe_read import loads_json, read_json, read_text, rows_limit

FIELDS = ("logits", "activations", "targets", "available", "mask_gt", "mask_decoded", "per_sample_loss", "index")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
AGAIN = "run runner.infer() again"
_CHECKPOINT_NAME = re.compile(r"runner\.[A-Za-z0-9_.-]+\.pth")  # fullmatch, as every name check here
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLOATING = ("logits", "activations", "per_sample_loss")
_BOOLEAN = ("available", "mask_gt", "mask_decoded")


# -- digests -------------------------------------------------------------------------------------------------


def manifest_path(split_folder: str) -> str:
    """``infer/<split>/manifest.json``, given the split's folder."""
    return os.path.join(split_folder, MANIFEST)

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_FILE_DIGESTS: Dict[tuple, str] = {}


def sha256_file(path: str) -> str:
    """The file's sha256, cached by (device, inode, size, mtime): a checkpoint is hashed once per version, not on
    every read of the outputs. Retraining replaces the file (new inode and mtime), so the cache never hides it."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if len(_FILE_DIGESTS) > 64:
            _FILE_DIGESTS.clear()
        _FILE_DIGESTS[key] = digest
    return digest


def row_label(label):
    """A DataFrame index label as JSON stores and compares it (numpy scalars as Python ones, tuples as lists,
    anything else - timestamps, non-finite floats - as its text)."""
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, tuple):
        return [row_label(v) for v in label]
    if isinstance(label, bool) or label is None or isinstance(label, (int, str)):
        return label
    if isinstance(label, float) and math.isfinite(label):
        return label
    return str(label)


# -- writing -------------------------------------------------------------------------------------------------

def save_split(directory: str, split: str, arrays: Dict[str, Dict[str, torch.Tensor]], checkpoint: str,
               checkpoint_sha256: str, labels: Sequence, tta: Sequence[str] = ()) -> None:
    """``arrays[task][field]`` → ``<directory>/<split>/<task>.npz`` plus the manifest, swapped in as a whole.

    ``checkpoint`` is the checkpoint's file name, ``labels`` the DataFrame index labels of the stored rows (in
    the order of the ``index`` field), ``tta`` the test-time augmentation views averaged (``outputs/tta.py``).
    """
    positions = next(iter(arrays.values()))["index"].tolist() if arrays else []
    if len(labels) != len(positions):
        raise ValueError(f"{len(labels)} row labels for {len(positions)} stored rows")
    os.makedirs(directory, exist_ok=True)
    _remove_leftovers(directory, split)
    fresh = os.path.join(directory, f".{split}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(fresh)  # not mkdtemp: its 0700 would ignore the umask
    try:
        files = {}
        for task, fields in arrays.items():
            buffer = io.BytesIO()
            np.savez(buffer, **{k: v.detach().cpu().numpy() for k, v in fields.items()})
            data = buffer.getvalue()
            atomic_write_bytes(os.path.join(fresh, f"{task}.npz"), data)
            files[task] = {"sha256": sha256_bytes(data)}
        manifest = {"version": MANIFEST_VERSION, "split": split,
                    "checkpoint": {"file": checkpoint, "sha256": checkpoint_sha256},
                    "rows": {"positions": [int(p) for p in positions], "labels": [row_label(r) for r in labels]},
                    "tasks": files, "tta": [str(view) for view in tta]}
        atomic_write_json(manifest_path(fresh), manifest)  # last: its presence means "complete"
        _swap_in(fresh, os.path.join(directory, split))
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def _swap_in(fresh: str, target: str) -> None:
    old = None
    if os.path.lexists(target):
        old = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(fresh, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(directory: str, split: str) -> None:
    """Hidden directories of an earlier, interrupted write of this split (nothing ever reads them)."""
    for name in os.listdir(directory):
        if name.startswith((f".{split}.new-", f".{split}.old-")):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def write_index(directory: str, index: dict) -> None:
    atomic_write_json(os.path.join(directory, "index.json"), index)


# -- reading -------------------------------------------------------------------------------------------------

def read_index(directory: str) -> dict:
    """The informational index (which splits were inferred); the per-split manifests are what is checked."""
    path = os.path.join(directory, "index.json")
    try:
        index = read_json(path)
    except ValueError as e:
        raise ArtifactError(f"inference index {path} is corrupted ({e}); {AGAIN}") from None
    if not isinstance(index, dict) or not isinstance(index.get("splits"), dict):
        raise ArtifactError(f"inference index {path}: field 'splits' is missing or not an object; {AGAIN}")
    for split, count in index["splits"].items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ArtifactError(f"inference index {path}: field 'splits.{split}' must be a sample count, got "
                                f"{count!r}; {AGAIN}")
    return index


def read_manifest(directory: str, split: str, tasks: Sequence[str], rows: int = 0) -> dict:
    """The split's manifest, checked field by field. Raises FileNotFoundError when the split has none. ``rows``:
    the split's size (the manifest lists its rows, so its size limit grows with them)."""
    path = manifest_path(os.path.join(directory, split))
    text = read_text(path, rows_limit(rows))
    try:
        manifest = loads_json(text, path, parse_constant=_refuse_constant)
    except ValueError as e:
        raise ArtifactError(f"inference manifest {path} is corrupted ({e}); {AGAIN}") from None

    def bad(field: str, expected: str, got) -> ArtifactError:
        shown = short_repr(got)
        return ArtifactError(f"inference manifest {path}: field '{field}' must be {expected}, got {shown}; {AGAIN}")

    if not isinstance(manifest, dict):
        raise bad("(top level)", "an object", manifest)
    if manifest.get("version") != MANIFEST_VERSION or isinstance(manifest.get("version"), bool):
        raise bad("version", str(MANIFEST_VERSION), manifest.get("version"))
    if manifest.get("split") != split:
        raise bad("split", repr(split), manifest.get("split"))
    checkpoint = manifest.get("checkpoint")
    if not isinstance(checkpoint, dict):
        raise bad("checkpoint", "an object", checkpoint)
    if not isinstance(checkpoint.get("file"), str) or not _CHECKPOINT_NAME.fullmatch(checkpoint["file"]):
        raise bad("checkpoint.file", "a checkpoint file name like 'runner.best.pth'", checkpoint.get("file"))
    if not isinstance(checkpoint.get("sha256"), str) or not _SHA256.fullmatch(checkpoint["sha256"]):
        raise bad("checkpoint.sha256", "a sha256 hex digest", checkpoint.get("sha256"))
    rows = manifest.get("rows")
    if not isinstance(rows, dict):
        raise bad("rows", "an object", rows)
    positions = rows.get("positions")
    if not isinstance(positions, list) or not all(type(p) is int and p >= 0 for p in positions):
        raise bad("rows.positions", "a list of dataset positions (non-negative ints)", positions)
    if len(set(positions)) != len(positions):
        raise bad("rows.positions", "distinct positions", positions)
    labels = rows.get("labels")
    if not isinstance(labels, list) or len(labels) != len(positions):
        raise bad("rows.labels", f"a list of {len(positions)} row labels", labels)
    tta = manifest.get("tta", [])  # absent in manifests written before test-time augmentation existed
    if not isinstance(tta, list) or not all(isinstance(view, str) for view in tta):
        raise bad("tta", "a list of test-time augmentation names", tta)
    files = manifest.get("tasks")
    if not isinstance(files, dict):
        raise bad("tasks", "an object", files)
    if sorted(files) != sorted(tasks):
        raise bad("tasks", f"the flow's tasks {sorted(tasks)}", sorted(files))
    for task, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(
                entry["sha256"]):
            raise bad(f"tasks.{task}.sha256", "a sha256 hex digest", entry)
    return manifest


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def load_split(directory: str, split: str, tasks: Sequence[str], manifest: Optional[dict] = None,
               targets_like: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, Dict[str, torch.Tensor]]:
    """Every task's stored fields, each file checked against the manifest (digest) and field by field (names,
    dtypes, row counts, the ``index`` equal to the manifest's positions). ``targets_like[task]`` (optional) is a
    tensor with the dtype and trailing shape the stored targets must have."""
    if manifest is None:
        manifest = read_manifest(directory, split, tasks)
    positions = manifest["rows"]["positions"]
    result = {}
    for task in tasks:
        path = os.path.join(directory, split, f"{task}.npz")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ArtifactError(f"inference output {path} cannot be read ({e}); {AGAIN}") from None
        if sha256_bytes(data) != manifest["tasks"][task]["sha256"]:
            raise ArtifactError(f"inference output {path} cannot be read as this split's output: it is not the file "
                                f"infer() wrote (its sha256 differs from {MANIFEST}; a copied, mixed or damaged "
                                f"file); {AGAIN}")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            # allow_pickle=False turns an object array into a ValueError: nothing here can run code.
            raise ArtifactError(f"inference output {path} cannot be read ({e}); {AGAIN}") from None
        _check_fields(path, arrays, positions, None if targets_like is None else targets_like.get(task))
        result[task] = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return result


def _check_fields(path: str, arrays: Dict[str, np.ndarray], positions: List[int],
                  targets_like: Optional[torch.Tensor]) -> None:
    def bad(field: str, message: str) -> ArtifactError:
        return ArtifactError(f"inference output {path}: field '{field}' {message}; {AGAIN}")

    missing = [f for f in FIELDS if f not in arrays]
    if missing:
        raise bad(missing[0], f"is missing (fields present: {sorted(arrays)})")
    extra = sorted(set(arrays) - set(FIELDS))
    if extra:
        raise bad(extra[0], f"is not an inference field (expected {list(FIELDS)})")
    n = len(positions)
    for field in FIELDS:
        value = arrays[field]
        if value.ndim == 0 or value.shape[0] != n:
            raise bad(field, f"has shape {tuple(int(s) for s in value.shape)}, expected {n} rows (the split's rows "
                             f"in {MANIFEST})")
        if value.dtype.kind not in "biuf":
            raise bad(field, f"has dtype {value.dtype.name}, expected numbers")
    for field in _FLOATING:
        if arrays[field].dtype.kind != "f":
            raise bad(field, f"has dtype {arrays[field].dtype.name}, expected floating point")
    for field in _BOOLEAN:
        if arrays[field].dtype != np.bool_:
            raise bad(field, f"has dtype {arrays[field].dtype.name}, expected bool")
    index = arrays["index"]
    if index.dtype.kind not in "iu" or index.ndim != 1:
        raise bad("index", f"has dtype {index.dtype.name} and {index.ndim} dimension(s), expected 1-d integers")
    if index.tolist() != positions:
        raise bad("index", f"holds rows other than the split's rows in {MANIFEST}")
    # (mask_decoded is per sample, mask_gt per element: a multilabel task's is (n, classes).)
    for field, like in (("activations", "logits"), ("available", "targets")):
        if arrays[field].shape != arrays[like].shape:
            raise bad(field, f"has shape {tuple(arrays[field].shape)}, expected that of '{like}' "
                             f"{tuple(arrays[like].shape)}")
    if targets_like is not None:
        expected_dtype = str(targets_like.dtype).replace("torch.", "")
        if arrays["targets"].dtype.name != expected_dtype or arrays["targets"].shape[1:] != tuple(
                targets_like.shape[1:]):
            raise bad("targets", f"has dtype {arrays['targets'].dtype.name} and shape "
                                 f"{tuple(arrays['targets'].shape)}, expected {expected_dtype} and "
                                 f"{(n, *tuple(targets_like.shape[1:]))}")
