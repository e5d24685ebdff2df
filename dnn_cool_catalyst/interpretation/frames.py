"""A best/worst frame as TensorBoard shows it: the input image at its own resolution with the target and predicted
boxes drawn on it, stored as PNG, or as JPEG when that is less than half the size.

TensorBoard draws image cards at the card's width with square pixels, so a 64x64 frame needs no enlarging. Image
cards have no caption field (an image summary carries only its tag; TensorBoard ignores a summary description on
images), and a caption drawn into the picture would have to be drawn at several times the frame's resolution:
measured on the security demo's noisy 64x64 frames, 30 KB per captioned card against 2 KB per JPEG frame, which
would make TensorBoard's folder many times the checkpoints' size. So the facts about each frame (rank, loss, row
id, target, prediction, box values) are in the markdown table of the same group and rank
(:func:`~dnn_cool_catalyst.interpretation.publish_extremes`).

Example:
    >>> import numpy as np
    >>> frame = np.zeros((16, 16, 3), dtype=np.uint8)
    >>> box = BoxOverlay("face", ("x", "y", "w", "h"))
    >>> out = draw_boxes(frame, [(box, (2, 2, 4, 4), (8, 8, 4, 4))])
    >>> out.shape, out[2, 2].tolist(), out[8, 8].tolist(), out[3, 3].tolist()   # target green, predicted red
    ((16, 16, 3), [0, 200, 0], [230, 30, 30], [0, 0, 0])
    >>> encode_frame(out)[1]                                              # flat: lossless PNG is small
    'png'
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

TARGET_COLOUR = (0, 200, 0)
PREDICTED_COLOUR = (230, 30, 30)
#: JPEG is used when it is less than this fraction of the PNG (noisy frames); flat images stay lossless.
JPEG_WHEN_SMALLER_THAN = 0.5
#: Full-resolution colour (4:4:4): the one-pixel box outlines keep their colours (the default 4:2:0 halves colour
#: resolution and turns them brown). Quality 65 keeps a noisy 64x64 demo frame near 1.9 KB (PNG: 10 KB).
JPEG_QUALITY = 65
Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class BoxOverlay:
    """Four scalar tasks that together are a box on an image input: ``tasks`` names them in the order of
    ``layout`` (``"xywh"``: left, top, width, height; ``"xyxy"``: left, top, right, bottom). Values are in
    ``units`` of the image: ``"pixels"`` or ``"fraction"`` (of its width / height). ``column`` is the image input
    column the box belongs to (None: every image column)."""

    name: str
    tasks: Tuple[str, str, str, str]
    layout: str = "xywh"
    units: str = "pixels"
    column: Optional[str] = None

    def __post_init__(self):
        if len(tuple(self.tasks)) != 4:
            raise ValueError(f"BoxOverlay '{self.name}': tasks must name 4 tasks ({self.layout}), got {self.tasks!r}")
        if self.layout not in ("xywh", "xyxy"):
            raise ValueError(f"BoxOverlay '{self.name}': layout must be 'xywh' or 'xyxy', got {self.layout!r}")
        if self.units not in ("pixels", "fraction"):
            raise ValueError(f"BoxOverlay '{self.name}': units must be 'pixels' or 'fraction', got {self.units!r}")

    def corners(self, values: Box, width: int, height: int) -> Box:
        """``(left, top, right, bottom)`` in pixels of the image."""
        a, b, c, d = (float(v) for v in values)
        if self.layout == "xywh":
            c, d = a + c, b + d
        if self.units == "fraction":
            a, c, b, d = a * width, c * width, b * height, d * height
        return a, b, c, d


def draw_boxes(image: np.ndarray, boxes: Sequence[Tuple[BoxOverlay, Optional[Box], Optional[Box]]]) -> np.ndarray:
    """``image`` (HWC uint8) as RGB with each ``(overlay, target box, predicted box)`` outlined, one pixel wide:
    target green, prediction red (drawn last, on top); a None box is skipped."""
    height, width = image.shape[:2]
    picture = Image.fromarray(_rgb(image))
    draw = ImageDraw.Draw(picture)
    for overlay, target, predicted in boxes:
        for values, colour in ((target, TARGET_COLOUR), (predicted, PREDICTED_COLOUR)):
            if values is None:
                continue
            left, top, right, bottom = (int(round(v)) for v in overlay.corners(values, width, height))
            draw.rectangle([left, top, max(left, right - 1), max(top, bottom - 1)], outline=colour)
    return np.asarray(picture)


def encode_frame(image: np.ndarray) -> Tuple[bytes, str]:
    """``(bytes, "png" | "jpeg")``: PNG, unless a JPEG of the image is less than half its size."""
    picture = Image.fromarray(_rgb(image))
    png, jpeg = io.BytesIO(), io.BytesIO()
    picture.save(png, format="PNG")
    picture.save(jpeg, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    if jpeg.tell() < JPEG_WHEN_SMALLER_THAN * png.tell():
        return jpeg.getvalue(), "jpeg"
    return png.getvalue(), "png"


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])  # JPEG has no alpha
