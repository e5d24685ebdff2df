"""Mixed precision: the model runs under autocast, losses and metric statistics never do.

Example:
    >>> import torch
    >>> at_least_float32(torch.ones(2, dtype=torch.bfloat16)).dtype, at_least_float32(torch.ones(2).double()).dtype
    (torch.float32, torch.float64)
    >>> autocast_dtype("bf16"), autocast_dtype("no")
    (torch.bfloat16, None)
"""
from __future__ import annotations

import contextlib

import torch

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision floats as float32; anything else unchanged (float64 keeps its precision, no copy)."""
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def autocast_dtype(mixed_precision) -> "torch.dtype | None":
    """The autocast dtype for an engine's ``mixed_precision`` ("no", "fp16", "bf16", or the engine itself)."""
    value = mixed_precision if isinstance(mixed_precision, str) or mixed_precision is None \
        else getattr(mixed_precision, "mixed_precision", "no")
    value = str(getattr(value, "value", value) or "no").lower()
    if value in ("no", "none", "fp32"):
        return None
    if value not in _DTYPES:
        raise ValueError(f"unsupported mixed_precision {value!r}: use 'no', 'fp16' or 'bf16'")
    return _DTYPES[value]


def autocast(device_type: str, dtype: "torch.dtype | None"):
    """``torch.autocast`` for the model's forward, or a no-op context when ``dtype`` is None.

    The runner enters it itself, on top of accelerate's wrapped ``model.forward``: accelerate leaves fp16 off on
    the CPU without a word, and DataParallel replicas (threads) would lose the bf16 dtype otherwise.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)
