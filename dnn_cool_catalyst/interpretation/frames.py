"""A best/worst frame as TensorBoard shows it: the input image enlarged, target and predicted boxes drawn on it,
and a caption (rank, loss, row id, target, prediction) printed under it.

TensorBoard's image cards have no caption field (an image summary carries only a tag), so what a user must read
next to the picture is drawn into the picture itself; the same facts are also in the text table of the group.

Example:
    >>> import numpy as np
    >>> frame = np.zeros((16, 16, 3), dtype=np.uint8)
    >>> box = BoxOverlay("face", ("x", "y", "w", "h"))
    >>> out = compose_frame(frame, ["worst #1, loss 2.5"], [(box, (2, 2, 4, 4), (8, 8, 4, 4))], min_width=64)
    >>> out.shape[1], out.shape[0] > 64, out.dtype.name
    (64, True, 'uint8')
    >>> tuple(out[8, 8]), tuple(out[32, 32])         # target box outline green, predicted red (4x enlarged)
    ((0, 200, 0), (230, 30, 30))
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TARGET_COLOUR = (0, 200, 0)
PREDICTED_COLOUR = (230, 30, 30)
CAPTION_BACKGROUND = (255, 255, 255)
CAPTION_TEXT = (20, 20, 20)
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
        """``(left, top, right, bottom)`` in pixels of the original image."""
        a, b, c, d = (float(v) for v in values)
        if self.layout == "xywh":
            c, d = a + c, b + d
        if self.units == "fraction":
            a, c, b, d = a * width, c * width, b * height, d * height
        return a, b, c, d


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def compose_frame(image: np.ndarray, caption: Sequence[str],
                  boxes: Sequence[Tuple[BoxOverlay, Optional[Box], Optional[Box]]] = (),
                  min_width: int = 320, max_scale: int = 8, font_size: int = 12) -> np.ndarray:
    """``image`` (HWC uint8) enlarged by a whole factor to at least ``min_width`` pixels (at most ``max_scale``
    times), each ``(overlay, target box, predicted box)`` drawn (target green, predicted red; a None box is
    skipped), and ``caption`` lines printed on white under it. Returns HWC uint8 RGB."""
    height, width = image.shape[:2]
    scale = max(1, min(max_scale, math.ceil(min_width / max(width, 1))))
    picture = Image.fromarray(_rgb(image)).resize((width * scale, height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for overlay, target, predicted in boxes:
        for values, colour in ((target, TARGET_COLOUR), (predicted, PREDICTED_COLOUR)):
            if values is None:
                continue
            left, top, right, bottom = overlay.corners(values, width, height)
            draw.rectangle([left * scale, top * scale, max(left, right) * scale - 1, max(top, bottom) * scale - 1],
                           outline=colour, width=max(1, scale // 2))
    font = _font(font_size)
    char_width = max(1, int(font.getlength("0")))
    sheet_width = max(picture.width, min_width)  # a tiny input still gets a readable caption
    lines = [piece for line in caption for piece in (textwrap.wrap(line, max(10, sheet_width // char_width - 1))
                                                     or [""])]
    line_height = font_size + 4
    sheet = Image.new("RGB", (sheet_width, picture.height + line_height * len(lines) + 6), CAPTION_BACKGROUND)
    sheet.paste(picture, (0, 0))
    writer = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        writer.text((4, picture.height + 3 + i * line_height), line, fill=CAPTION_TEXT, font=font)
    return np.asarray(sheet)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]  # drop alpha: the caption sheet is opaque
