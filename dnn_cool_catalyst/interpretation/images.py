"""Turning input tensors into images TensorBoard can show: HWC uint8 from CHW/HWC, float or uint8.

Example:
    >>> import numpy as np
    >>> chw = np.zeros((3, 2, 5), dtype=np.float32); chw[0] = 1.0       # red, floats in [0, 1]
    >>> hwc = as_hwc_uint8(chw)
    >>> hwc.shape, hwc.dtype.name, hwc[0, 0].tolist()
    ((2, 5, 3), 'uint8', [255, 0, 0])
    >>> looks_like_image(np.full((4, 4, 3), 200.0)), looks_like_image(np.array([0.5, 7.0]))
    (True, False)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

CHANNELS = (1, 3, 4)


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _channel_axis(shape, layout: Optional[str]) -> Optional[int]:
    """0 for CHW, 2 for HWC, None when neither fits. Ambiguous shapes follow ``layout``, else HWC (numpy's
    habit: in-memory images in a DataFrame are usually HWC)."""
    first, last = shape[0] in CHANNELS, shape[-1] in CHANNELS
    if layout == "CHW" and first:
        return 0
    if layout == "HWC" and last:
        return 2
    if last:
        return 2
    return 0 if first else None


def looks_like_image(value) -> bool:
    """A 3-D array with 1, 3 or 4 channels first or last and pixel values in [0, 1] or integers in [0, 255]."""
    arr = to_numpy(value)
    if arr.ndim != 3 or _channel_axis(arr.shape, None) is None or arr.size == 0:
        return False
    if arr.dtype == np.uint8:
        return True
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        return False
    lo, hi = float(arr.min()), float(arr.max())
    return lo >= 0 and (hi <= 1 or (hi <= 255 and bool(np.all(arr == np.round(arr)))))


def as_hwc_uint8(value, layout: Optional[str] = None, name: str = "image") -> np.ndarray:
    """``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` → ``(H, W, 3 or 4)`` uint8.

    uint8 is kept; floats in [0, 1] are scaled by 255; values in [0, 255] are rounded; anything else is
    min-max scaled so it is still visible. ``layout`` ("CHW"/"HWC") settles shapes that fit both."""
    arr = to_numpy(value)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected an image of shape (H, W), (C, H, W) or (H, W, C) with C in {CHANNELS}, "
                         f"got shape {arr.shape}")
    axis = _channel_axis(arr.shape, layout)
    if axis is None:
        raise ValueError(f"{name}: no channel axis of size {CHANNELS} first or last in shape {arr.shape}")
    if axis == 0:
        arr = np.transpose(arr, (1, 2, 0))
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: NaN or inf pixel values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1:
            arr = arr * 255.0
        elif not (lo >= 0 and hi <= 255):
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)
