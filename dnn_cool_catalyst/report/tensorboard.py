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

from ..run.layout import RUN_PREFIX

Curves = Dict[str, Dict[str, List[Tuple[int, float]]]]


def read_scalars(logdir: str) -> Curves:
    """``{loader: {tag: [(step, value), ...]}}`` from the event files under ``logdir``, sorted by step.

    A runner writes ``<logdir>/run-<N>/<loader>/`` (one TensorBoard run per runner object: a resumed training is
    the next run), a staged training ``run-<N>/<stage>/<loader>/``, older runs ``<logdir>/<loader>/``. Runs are
    read in order and merged per loader (``<stage>/<loader>`` for stages), so a step written twice (a resumed run)
    keeps its last value. Missing or unreadable files give nothing."""
    merged: Dict[str, Dict[str, Dict[int, float]]] = {}
    for run in _runs(logdir):
        for folder, _, files in sorted(os.walk(run)):
            events = sorted(n for n in files if n.startswith("events.out.tfevents") and ".interpretation" not in n)
            if not events or folder == run:
                continue
            loader = os.path.relpath(folder, run).replace(os.sep, "/")
            if loader.startswith(RUN_PREFIX):  # a run folder met from the legacy root: read as its own run
                continue
            by_tag = merged.setdefault(loader, {})
            for name in events:
                for tag, step, value in _file_scalars(os.path.join(folder, name)):
                    by_tag.setdefault(tag, {})[step] = value
    return {loader: {tag: sorted(points.items()) for tag, points in by_tag.items()}
            for loader, by_tag in merged.items() if by_tag}


def _runs(logdir: str) -> List[str]:
    """``logdir`` itself (runs written before TensorBoard runs were numbered), then ``run-<N>`` by number."""
    if not os.path.isdir(logdir):
        return []
    numbered = [(int(name[len(RUN_PREFIX):]), os.path.join(logdir, name)) for name in os.listdir(logdir)
                if name.startswith(RUN_PREFIX) and name[len(RUN_PREFIX):].isdigit()]
    return [logdir] + [path for _, path in sorted(numbered)]


def read_events(path: str):
    """Every complete ``Event`` of one event file, in order (a record cut short or damaged ends the file)."""
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
        yield event


def _file_scalars(path: str):
    for event in read_events(path):
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
