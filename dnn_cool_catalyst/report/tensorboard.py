"""Scalars of a run's TensorBoard event files, read without TensorBoard itself.

Event files are TFRecord streams (per record: 8-byte length, 4-byte length CRC, the serialized ``Event``, 4-byte
payload CRC); the ``Event`` protobuf class comes with tensorboardX, a dependency of ours. A record cut short (a run
still writing) ends the file quietly. Files of the interpretation callback (``*.interpretation.*``: images, texts,
PR curves, no scalars) are not read.

Example:
    >>> import tempfile
    >>> from tensorboardX import SummaryWriter
    >>> logdir = tempfile.mkdtemp()
    >>> with SummaryWriter(os.path.join(logdir, "valid")) as writer:
    ...     for step, value in ((1, 0.5), (2, 0.25)):
    ...         writer.add_scalar("loss/epoch", value, step)
    >>> read_scalars(logdir)["valid"]["loss/epoch"]
    [(1, 0.5), (2, 0.25)]
"""
from __future__ import annotations

import os
import struct
from typing import Dict, List, Tuple

Curves = Dict[str, Dict[str, List[Tuple[int, float]]]]


def read_scalars(logdir: str) -> Curves:
    """``{loader: {tag: [(step, value), ...]}}`` from ``<logdir>/<loader>/events.out.tfevents.*``, sorted by
    step; a step written twice (a resumed run) keeps its last value. Missing or unreadable files give nothing."""
    curves: Curves = {}
    if not os.path.isdir(logdir):
        return curves
    for loader in sorted(os.listdir(logdir)):
        folder = os.path.join(logdir, loader)
        if not os.path.isdir(folder):
            continue
        by_tag: Dict[str, Dict[int, float]] = {}
        for name in sorted(os.listdir(folder)):
            if not name.startswith("events.out.tfevents") or ".interpretation" in name:
                continue
            for tag, step, value in _file_scalars(os.path.join(folder, name)):
                by_tag.setdefault(tag, {})[step] = value
        if by_tag:
            curves[loader] = {tag: sorted(points.items()) for tag, points in by_tag.items()}
    return curves


def _file_scalars(path: str):
    from tensorboardX.proto import event_pb2

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        start, end = offset + 12, offset + 12 + length
        if end + 4 > len(data):
            return  # cut short: the writer is still at it
        try:
            event = event_pb2.Event.FromString(data[start:end])
        except Exception:  # a damaged record: protobuf raises its own DecodeError
            return
        offset = end + 4
        for value in event.summary.value:
            scalar = _scalar(value)
            if scalar is not None:
                yield value.tag, int(event.step), scalar


def _scalar(value):
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor") and len(value.tensor.float_val) == 1:  # TensorBoard's newer scalar format
        return float(value.tensor.float_val[0])
    return None
