"""TensorBoard runs of a run directory: one numbered folder per runner.

Each runner object writes everything it logs (training scalars, validation frames, inference summaries) under
``<run_dir>/tensorboard/run-<N>/<loader>/``, ``N`` one more than the highest already there. Running the same
experiment again therefore shows up in TensorBoard as ``run-2/train``, ``run-2/valid``... next to ``run-1/...``
instead of a second event file appended to the same folder (which TensorBoard would draw as one zig-zagging line).

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> [os.path.basename(claim_tensorboard_run(root)) for _ in range(3)]
    ['run-1', 'run-2', 'run-3']
    >>> os.path.basename(tensorboard_run(root, claim=False))  # a process that writes nothing takes no number
    'run-unused'
"""
from __future__ import annotations

import os
import re

from .layout import RUN_PREFIX

#: The run of a process that writes nothing (a later DDP node): named, never created.
UNCLAIMED_RUN = f"{RUN_PREFIX}unused"


def claim_tensorboard_run(root: str) -> str:
    """Create and return ``<root>/run-<N>``, ``N`` one more than the highest existing run (``mkdir`` decides
    between two processes claiming the same number)."""
    os.makedirs(root, exist_ok=True)
    pattern = re.compile(re.escape(RUN_PREFIX) + r"(\d+)")
    taken = [int(m.group(1)) for m in map(pattern.fullmatch, os.listdir(root)) if m]
    number = max(taken, default=0) + 1
    while True:
        path = os.path.join(root, f"{RUN_PREFIX}{number}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            number += 1


def tensorboard_run(root: str, claim: bool) -> str:
    """The TensorBoard run of a runner under ``root`` (``<run_dir>/tensorboard``): a new ``run-<N>`` claimed now
    when ``claim`` (the process writes the run's files), else ``run-unused``, which must not take a number."""
    return claim_tensorboard_run(root) if claim else os.path.join(root, UNCLAIMED_RUN)
