"""How one input value of a selected sample is shown in TensorBoard.

A publisher turns a value into a cell of the sample table (text, tabular features) and may also write its own
summaries (images). They are chosen like converters: ``Publishers().type_mapping`` maps an input *type name*
(``img``, ``array``, ``numeric``, ``text``, ``tokens``) to a zero-arg factory, ``col_mapping`` maps a column to
one and wins. A column of an unknown type is shown as a feature value.

Example:
    >>> import torch
    >>> publishers = Publishers()
    >>> publishers.get("age", "numeric").cell(torch.tensor(41.5))
    '41.500'
    >>> publishers.col_mapping["title"] = lambda: TextPublisher(vocab=["<pad>", "hello", "world"])
    >>> publishers.get("title", "tokens").cell(torch.tensor([1, 2, 0]))
    'hello world'
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .images import as_hwc_uint8, looks_like_image, to_numpy


def _escape(text: str) -> str:
    # A "|" or a newline would break the markdown table the cell sits in.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_number(x: float) -> str:
    """Integers without decimals, anything else to three decimals."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.3f}"


class Publisher:
    """``cell(value)``: text for the sample table, or None for no column; ``image(value)``: the value as an HWC
    uint8 picture, or None (pictures get the sample's caption and boxes drawn under/on them);
    ``publish(writer, tag, value, step)``: any other summaries of the value (returns whether it wrote any)."""

    def cell(self, value) -> Optional[str]:
        return None

    def image(self, value) -> Optional[np.ndarray]:
        return None

    def publish(self, writer, tag: str, value, step: int) -> bool:
        return False


class TabularPublisher(Publisher):
    """Feature values: a scalar as a number, a vector as ``v0=..., v1=...`` (at most ``max_values``)."""

    def __init__(self, max_values: int = 8):
        self.max_values = max_values

    def cell(self, value):
        if hasattr(value, "detach") and value.ndim == 0:
            return format_number(value.item())  # a tensor's single number: no trip through numpy
        arr = to_numpy(value)
        if arr.dtype.kind in "OUS":
            return _escape(str(value))
        if arr.ndim == 0:
            return format_number(arr)
        flat = arr.reshape(-1)
        shown = ", ".join(f"v{i}={format_number(v)}" for i, v in enumerate(flat[:self.max_values]))
        more = f", ... ({flat.size} values, shape {tuple(arr.shape)})" if flat.size > self.max_values else ""
        return shown + more


class TextPublisher(Publisher):
    """Strings as they are; token ids through ``vocab`` (ids without a word are shown as ``#id``), padding
    ``pad_id`` dropped. Long texts are cut at ``max_chars``."""

    def __init__(self, vocab: Optional[Sequence[str]] = None, pad_id: Optional[int] = 0, max_chars: int = 300):
        self.vocab, self.pad_id, self.max_chars = vocab, pad_id, max_chars

    def text(self, value) -> str:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return " ".join(value)
        ids = [int(v) for v in to_numpy(value).reshape(-1)]
        ids = [i for i in ids if self.pad_id is None or i != self.pad_id]
        if self.vocab is None:
            return " ".join(str(i) for i in ids)
        return " ".join(self.vocab[i] if 0 <= i < len(self.vocab) else f"#{i}" for i in ids)

    def cell(self, value):
        text = self.text(value)
        if len(text) > self.max_chars:
            text = text[:self.max_chars] + "…"
        return _escape(text)


class ImagePublisher(Publisher):
    """``add_image`` of the value as HWC uint8 (see :func:`~.images.as_hwc_uint8`); ``layout`` settles shapes
    that fit both CHW and HWC."""

    def __init__(self, layout: Optional[str] = None):
        self.layout = layout

    def image(self, value):
        return as_hwc_uint8(value, self.layout)


class ArrayPublisher(Publisher):
    """In-memory arrays: an image when the value looks like one (3-D, 1/3/4 channels first or last, pixels in
    [0, 1] or [0, 255]), else feature values."""

    def __init__(self, max_values: int = 8):
        self.as_image, self.tabular = ImagePublisher(), TabularPublisher(max_values)

    def _pick(self, value) -> Publisher:
        return self.as_image if looks_like_image(value) else self.tabular

    def cell(self, value):
        return self._pick(value).cell(value)

    def image(self, value):
        return self._pick(value).image(value)


def image_chw() -> ImagePublisher:
    """The ``img`` converter yields CHW floats in [0, 1]."""
    return ImagePublisher(layout="CHW")


DEFAULT_PUBLISHERS: Dict[str, Callable[[], Publisher]] = {
    "img": image_chw,
    "array": ArrayPublisher,
    "numeric": TabularPublisher,
    "text": TextPublisher,
    "tokens": TextPublisher,
}


class Publishers:
    """Input type name / column → publisher factory (column wins); unknown types get ``fallback``; ``boxes``:
    :class:`~dnn_cool_catalyst.interpretation.frames.BoxOverlay` s drawn on image inputs."""

    def __init__(self):
        self.type_mapping: Dict[str, Callable[[], Publisher]] = dict(DEFAULT_PUBLISHERS)
        self.col_mapping: Dict[str, Callable[[], Publisher]] = {}
        self.fallback: Callable[[], Publisher] = TabularPublisher
        #: Groups of four scalar tasks drawn as boxes on image inputs (target and prediction), e.g.
        #: ``publishers.boxes.append(BoxOverlay("face", ("face_x1", "face_y1", "face_w", "face_h")))``.
        self.boxes: list = []

    def get(self, column: str, type_name: Optional[str]) -> Publisher:
        factory = self.col_mapping.get(column) or self.type_mapping.get(type_name) or self.fallback
        publisher = factory if isinstance(factory, Publisher) else factory()
        if not isinstance(publisher, Publisher):
            raise TypeError(f"publisher for input column '{column}' (type {type_name!r}) must be a Publisher or a "
                            f"zero-arg factory of one, got {type(publisher).__name__}")
        return publisher

    def for_columns(self, types: Dict[str, Optional[str]]) -> Dict[str, Publisher]:
        return {column: self.get(column, type_name) for column, type_name in types.items()}

