"""Keeping per-batch tensors over a whole loader without growing the C heap.

Each small tensor kept across steps is carved out of the hole that the step's large temporaries (an image batch
converted to float, activations) leave in glibc's heap; the next step's temporaries then no longer fit there and
the heap grows by about one batch for every batch kept. On the security demo that was 20 KB of resident memory per
12 KB frame. Joining what is kept every few batches gives the holes back.

Example:
    >>> import torch
    >>> parts = []
    >>> for i in range(10):
    ...     keep(parts, torch.tensor([i]))
    >>> len(parts), torch.cat(parts).tolist()
    (3, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
"""
from __future__ import annotations

import torch

#: Batches after which the kept pieces are joined into one tensor.
JOIN_EVERY = 8


def keep(parts: list, tensor: torch.Tensor) -> None:
    """Append ``tensor`` to ``parts``, joining them along the first dimension once :data:`JOIN_EVERY` are there."""
    parts.append(tensor)
    if len(parts) >= JOIN_EVERY:
        parts[:] = [torch.cat(parts)]
