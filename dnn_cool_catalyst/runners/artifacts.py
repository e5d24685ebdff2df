"""Inference outputs on disk: one ``.npz`` per split and task plus a JSON index; no pickle anywhere."""
from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Dict

import numpy as np
import torch

from ..atomic import atomic_write_bytes, atomic_write_json


class ArtifactError(ValueError):
    """A stored inference output is missing, truncated or not ours; the message names the file."""


FIELDS = ("logits", "activations", "targets", "available", "mask_gt", "mask_decoded", "per_sample_loss", "index")


def save_split(directory: str, split: str, arrays: Dict[str, Dict[str, torch.Tensor]]) -> None:
    """``arrays[task][field]`` → ``<directory>/<split>/<task>.npz``, each written atomically."""
    for task, fields in arrays.items():
        buffer = io.BytesIO()
        np.savez(buffer, **{k: v.detach().cpu().numpy() for k, v in fields.items()})
        atomic_write_bytes(os.path.join(directory, split, f"{task}.npz"), buffer.getvalue())


def load_split(directory: str, split: str, tasks) -> Dict[str, Dict[str, torch.Tensor]]:
    result = {}
    for task in tasks:
        path = os.path.join(directory, split, f"{task}.npz")
        try:
            with np.load(path, allow_pickle=False) as data:
                result[task] = {k: torch.from_numpy(data[k]) for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            # allow_pickle=False turns an object array into a ValueError: nothing here can run code.
            raise ArtifactError(f"inference output {path} cannot be read ({e}); run runner.infer() again") from None
    return result


def write_index(directory: str, index: dict) -> None:
    atomic_write_json(os.path.join(directory, "index.json"), index)


def read_index(directory: str) -> dict:
    path = os.path.join(directory, "index.json")
    with open(path, encoding="utf-8") as f:
        try:
            index = json.load(f)
        except ValueError as e:
            raise ArtifactError(f"inference index {path} is corrupted ({e}); run runner.infer() again") from None
    if not isinstance(index, dict) or not isinstance(index.get("splits"), dict):
        raise ArtifactError(f"inference index {path} has no 'splits' object; run runner.infer() again")
    return index
