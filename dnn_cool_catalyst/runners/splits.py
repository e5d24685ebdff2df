"""Seeded train/valid/test splits, saved with the run and reused."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import numpy as np

from ..atomic import atomic_write_json

SPLITS = ("train", "valid", "test")


def make_splits(n: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 42) -> Dict[str, List[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut it by ``fractions`` (train, valid, test)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions)[:2] * n).astype(int)
    parts = np.split(order, cuts)
    return {name: sorted(int(i) for i in part) for name, part in zip(SPLITS, parts)}


def load_or_make_splits(path: str, n: int, fractions, seed: int) -> Dict[str, List[int]]:
    """Reuse the splits saved at ``path`` (checked against the dataset size), else make and save them."""
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            splits = {name: saved["splits"][name] for name in SPLITS}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"cannot read the saved splits {path}: {e}") from None
        if saved.get("num_samples") != n:
            raise ValueError(f"the splits saved in {path} are for {saved.get('num_samples')} samples, but the dataset "
                             f"has {n}; use a new runner_name (or delete the run directory) for a different dataset")
        return splits
    splits = make_splits(n, fractions, seed)
    atomic_write_json(path, {"num_samples": n, "seed": seed, "fractions": list(fractions), "splits": splits})
    return splits
