"""Development subsets: the whole pipeline on ``dev=N`` seeded rows, in a run directory of its own.

The rows are chosen by row identity, like the splits (run/splits.py): the DataFrame's index labels are put in
their canonical order and shuffled with the seed, and the first ``N`` are kept. The same seed and ``N`` therefore
pick the same rows from a reordered frame, and a larger ``N`` keeps the rows of a smaller one. The run directory is
``<run_dir>-dev<N>`` (``exp1`` -> ``exp1-dev200``: ``RunDir.dev`` in run/layout.py), so a debugging run never
touches the full run's files.

Example:
    >>> dev_positions(["a", "b", "c", "d", "e"], 3, seed=0)
    [1, 3, 4]
    >>> dev_positions(["e", "d", "c", "b", "a"], 3, seed=0)  # the same rows ('b', 'd', 'e') of a reordered frame
    [0, 1, 3]
"""
from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import RunnerError
from ..run.splits import _canonical, encode_labels


def check_dev(dev, num_rows: int) -> int:
    """``dev`` as an int in ``[1, num_rows]``, or a RunnerError saying what was expected."""
    if isinstance(dev, (bool, np.bool_)) or not isinstance(dev, numbers.Integral):
        raise RunnerError(f"dev must be a number of rows (an int), got {dev!r}")
    if not 1 <= int(dev) <= num_rows:
        raise RunnerError(f"dev={int(dev)}: a development subset needs between 1 and {num_rows} rows (the dataset "
                          f"has {num_rows})")
    return int(dev)


def dev_positions(row_ids: Sequence, dev: int, seed: int) -> List[int]:
    """Dataset positions of the ``dev`` rows chosen with ``seed``, in dataset order."""
    labels = encode_labels(row_ids)
    canonical = sorted(range(len(labels)), key=lambda i: _canonical(labels[i]))
    # A stream of its own, so that the subset is not the head of the split permutation made with the same seed.
    order = np.random.default_rng([int(seed), 0x5EED]).permutation(len(canonical))
    return sorted(canonical[int(i)] for i in order[:dev])


def subset(values: Optional[Sequence], positions: Optional[List[int]]):
    """``values`` (one per dataset row) restricted to ``positions``; unchanged when either is None."""
    if values is None or positions is None:
        return values
    return [values[p] for p in positions]


def to_dataset_positions(splits: Dict[str, np.ndarray], positions: Optional[List[int]]) -> Dict[str, np.ndarray]:
    """Splits made over the subset's rows (positions into the subset) as positions into the whole dataset."""
    if positions is None:
        return splits
    positions = np.asarray(positions, dtype=np.int64)
    return {name: positions[np.asarray(members, dtype=np.int64)] for name, members in splits.items()}
