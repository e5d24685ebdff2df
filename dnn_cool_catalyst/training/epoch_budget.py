"""How long ``runner.train()`` trains when it is not told: a budget in optimizer steps, not a fixed epoch count.

A fixed number of epochs is too few steps on a small table (300 rows at batch 64 are 4 steps an epoch: 10 epochs
are 40 steps, and the model is still learning) and needlessly many on a large one. So without ``num_epochs``,
``train()`` runs ``ceil(STEP_BUDGET / steps_per_epoch)`` epochs, clamped to ``[MIN_EPOCHS, MAX_EPOCHS]``, and
early stopping (patience from :func:`default_patience`, held while a task is still at its trivial baseline: see
:mod:`dnn_cool_catalyst.callbacks.early_stopping`) ends the run once validation stops improving.

The count depends only on the number of training batches, so a resumed run (``resume=True``, where
``num_epochs`` is the total) computes the same total as the run it continues.
"""
from __future__ import annotations

import math

#: Optimizer steps a run without ``num_epochs`` aims at (early stopping usually ends it sooner).
STEP_BUDGET = 4000
#: Epoch bounds of the budget: at least a few passes over a large table, at most this many over a tiny one.
MIN_EPOCHS, MAX_EPOCHS = 10, 200
#: Early-stopping patience bounds; between them, a twelfth of the run's epochs.
MIN_PATIENCE, MAX_PATIENCE = 5, 16


def default_num_epochs(steps_per_epoch: int) -> int:
    """Epochs for ``steps_per_epoch`` training batches: the step budget, within the epoch bounds.

    >>> default_num_epochs(4), default_num_epochs(40), default_num_epochs(1000)
    (200, 100, 10)
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch))))


def default_patience(num_epochs: int) -> int:
    """Epochs without improvement before early stopping, for a run of ``num_epochs``.

    >>> default_patience(10), default_patience(100), default_patience(200)
    (5, 8, 16)
    """
    return int(min(MAX_PATIENCE, max(MIN_PATIENCE, num_epochs // 12)))


def plateau_patience(early_stopping_patience: int) -> int:
    """Epochs without improvement before the default plateau scheduler halves the learning rate: a third of
    early stopping's patience, at least 2, so the lr drops a few times before a run stops.

    >>> plateau_patience(5), plateau_patience(16)
    (2, 5)
    """
    return max(2, early_stopping_patience // 3)
