"""Writing interpretation summaries next to Catalyst's: ``<logdir>/<loader>/``, in an event file of our own.

Tags put the task first, so TensorBoard makes one group per task (next to that task's metric scalars):
``<task_path>/worst`` and ``<task_path>/best`` describe the samples, one paragraph each (Text tab: rank, row
id, loss, target, prediction, box values, the non-image inputs), ``<task_path>/worst/<rank>/<column>`` the image inputs of the same
ranks with the boxes drawn on them (Images tab; see :mod:`.frames` for why the facts are not drawn into the
picture). The sum over tasks is the group ``overall``.

tensorboardX names event files by the second and the host, so two writers opened in the same directory within
one second would write to the same file and clobber each other; every writer here gets a unique suffix.
"""
from __future__ import annotations

import os
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

from .frames import BoxOverlay, draw_boxes, encode_frame
from .publishers import Publisher, TabularPublisher, _escape, format_number
from .samples import SampleSource
from .selection import OVERALL, Losses, rank

#: How many of a sample's highest task losses the ``overall`` captions and tables name.
OVERALL_TASKS_SHOWN = 3


def open_writer(logdir: str, loader: str) -> SummaryWriter:
    return SummaryWriter(os.path.join(logdir, loader), filename_suffix=f".interpretation.{uuid.uuid4().hex[:8]}")


def select_extremes(losses: Losses, k: int, source: SampleSource) -> Dict[str, Dict[str, List[Tuple]]]:
    """``{key: {"best": [(index, row_id, loss)], "worst": [...]}}``; keys with no valid sample are skipped."""
    selection = {}
    for key, (values, index) in losses.items():
        if len(values) == 0:
            continue
        selection[key] = {kind: [(i, source.row_id(i), loss) for i, loss in rank(values, index, k, kind == "worst")]
                          for kind in ("best", "worst")}
    return selection


def picked_positions(selection) -> List[int]:
    """Every dataset position in a selection, once, in a stable order."""
    return sorted({index for kinds in selection.values() for examples in kinds.values() for index, _, _ in examples})


def losses_by_position(losses: Losses, positions) -> Dict[int, Dict[str, float]]:
    """``{position: {task: loss}}`` for ``positions``, tasks only where valid (``overall`` left out)."""
    wanted = set(int(p) for p in positions)
    found: Dict[int, Dict[str, float]] = {p: {} for p in wanted}
    for key, (values, index) in losses.items():
        if key == OVERALL:
            continue
        for value, position in zip(values.tolist(), index.tolist()):
            if position in wanted:
                found[position][key] = float(value)
    return found


def _fmt(values, units: str) -> str:
    if values is None:
        return "none"
    # Whole pixels are what one can see on the frame; fractions of the image need decimals.
    return "(" + ", ".join(f"{v:.0f}" if units == "pixels" else f"{v:.3f}" for v in values) + ")"


def add_frame(writer, tag: str, image, step: int, caption: Optional[str] = None) -> None:
    """An image summary of ``image`` (HWC uint8) encoded by :func:`~.frames.encode_frame` (tensorboardX's
    ``add_image`` always writes PNG, about five times a JPEG for noisy camera frames). ``caption`` becomes the
    card's title in the Images tab (the summary's display name; TensorBoard keeps a tag's first one)."""
    data, _ = encode_frame(image)
    height, width = image.shape[:2]
    metadata = SummaryMetadata(display_name=caption) if caption else None
    summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata, image=Summary.Image(
        height=int(height), width=int(width), colorspace=3, encoded_image_string=data))])
    writer._get_file_writer().add_summary(summary, step)


def _boxes(view, boxes: Sequence[BoxOverlay], column: str):
    """The boxes to draw on ``column`` for one sample, and their values as text."""
    drawn, lines = [], []
    for overlay in boxes:
        if overlay.column is not None and overlay.column != column:
            continue
        target, predicted = view.values(overlay.tasks, "target"), view.values(overlay.tasks, "predicted")
        if target is None and predicted is None:
            continue
        drawn.append((overlay, target, predicted))
        lines.append(f"{overlay.name} {_fmt(target, overlay.units)} → {_fmt(predicted, overlay.units)}")
    return drawn, lines


def _described(key: str, rows: List[List[str]], columns: List[str], with_boxes: bool) -> str:
    """One paragraph per sample (markdown hard breaks between its lines), not a table: TensorBoard's Text tab
    squeezes a wide table's short columns and breaks their numbers and headers mid-word ("ran / k", "719 / 7"),
    while a paragraph wraps between words at any width.

    >>> print(_described("door", [["1", "7197", "0.000984", "0", "1 (activation 0.9)", "", "3"]], ["x"], False))
    **rank 1** · row 7197 · loss 0.000984 · target 0 · prediction 1 (activation 0.9)  
    inputs: x = 3
    """
    described = []
    for row in rows:
        rank, row_id, loss, *middle = row[:5 if key != OVERALL else 4]
        rest = row[len(row) - len(columns):] if columns else []
        facts = [f"**rank {rank}**", f"row {row_id}", f"loss {loss}"]
        named = ("largest task losses:",) if key == OVERALL else ("target", "prediction")
        facts += [f"{name} {value}" for name, value in zip(named, middle) if value]  # none without a view
        lines = [" · ".join(facts)]
        box = row[5 if key != OVERALL else 4] if with_boxes else ""
        if box:
            lines.append(f"boxes, target (green) → predicted (red): {box}")
        inputs = ", ".join(f"{column} = {cell}" for column, cell in zip(columns, rest) if cell != "")
        if inputs:
            lines.append(f"inputs: {inputs}")
        described.append("  \n".join(lines))
    return "\n\n".join(described)


def publish_extremes(writer, selection, source: SampleSource, publishers: Mapping[str, Publisher],
                     paths: Mapping[str, str], step: int, views: Optional[Mapping[int, object]] = None,
                     boxes: Sequence[BoxOverlay] = (),
                     frame_kinds: Sequence[str] = ("worst", "best"), single_step: bool = False) -> List[str]:
    """For each key (task name or ``overall``) and kind (best/worst): a markdown table of the samples at
    ``<task_path>/<kind>`` (rank, row, loss, target and prediction, or for ``overall`` the tasks with the largest
    losses, the ``boxes``' values, the non-image inputs) and each image input, with ``boxes`` drawn, at
    ``<task_path>/<kind>/<rank>/<column>``; publishers' other summaries under the same tags. ``views`` (see
    :func:`.sample_views.sample_views`) give targets and predictions by dataset position. Images
    are written for the kinds in ``frame_kinds`` only (the tables for both). Each image card is titled with its
    rank and, where the run has one step only (``single_step``: an ``infer_<split>`` run), the row id and loss:
    TensorBoard keeps a tag's first title, which would be stale at a later epoch. Returns the tags written."""
    views = views or {}
    tags = []
    # Plain numeric columns (a table cell, nothing else) are read for every picked sample at once; the other
    # columns per sample, as the publishers want them.
    columns_in_order = list(source.types)
    picked = sorted({index for kinds in selection.values() for examples in kinds.values() for index, _, _ in examples})
    read_numbers = getattr(source, "numbers", None)  # a source of your own may read samples one by one only
    numbers = read_numbers(picked, [c for c in columns_in_order if _numbers_only(publishers.get(c))]) \
        if read_numbers is not None else {}
    others = [c for c in columns_in_order if c not in numbers] if numbers else None
    cells_of = {}  # a sample picked for several tasks: its input cells are made once

    def input_cells(index, inputs) -> Dict[str, str]:
        if index not in cells_of:
            cells = {column: publishers[column].cell(value) for column, value in inputs.items()
                     if publishers.get(column) is not None}
            if numbers:
                cells.update((column, format_number(values[index])) for column, values in numbers.items())
                cells = {column: cells[column] for column in columns_in_order if column in cells}
            cells_of[index] = cells
        return cells_of[index]

    for key, kinds in selection.items():
        path = paths.get(key, key) if key != OVERALL else OVERALL
        for kind, examples in kinds.items():
            tag = f"{path}/{kind}"
            columns: Optional[List[str]] = None
            rows = []
            for position, (index, row_id, loss) in enumerate(examples, start=1):
                view = views.get(index)
                box_text = []
                inputs = source.inputs(index) if others is None else source.inputs(index, others)
                for column, value in inputs.items():
                    publisher = publishers.get(column)
                    if publisher is None or kind not in frame_kinds:
                        continue
                    image_tag = f"{tag}/{position}/{column}"
                    picture = publisher.image(value)
                    if picture is not None:
                        drawn, box_lines = _boxes(view, boxes, column) if view is not None else ([], [])
                        caption = f"{path} {kind} {position} · row {row_id} · loss {loss:.4g} · {column}" \
                            if single_step else f"{path} {kind} {position} · {column} (row, loss: Text tab {tag})"
                        add_frame(writer, image_tag, draw_boxes(picture, drawn), step, caption)
                        box_text += box_lines
                        tags.append(image_tag)
                    elif publisher.publish(writer, image_tag, value, step):
                        tags.append(image_tag)
                cells = {column: cell for column, cell in input_cells(index, inputs).items() if cell is not None}
                columns = columns if columns is not None else list(cells)
                rows.append(([str(position), _escape(str(row_id)), f"{loss:.4g}"] + _middle(key, view, paths),
                             _escape("; ".join(box_text)), [cells.get(c, "") for c in columns]))
            with_boxes = any(box for _, box, _ in rows)  # a boxes column only where some frame has boxes
            lines = [first + ([box] if with_boxes else []) + rest for first, box, rest in rows]
            writer.add_text(tag, _described(key, lines, columns or [], with_boxes), global_step=step)
            tags.append(tag)
    return tags


def _numbers_only(publisher) -> bool:
    """Whether ``publisher`` shows a number as :func:`format_number` does and publishes nothing else."""
    return type(publisher) is TabularPublisher


def _middle(key: str, view, paths) -> List[str]:
    if view is None:
        return [""] if key == OVERALL else ["", ""]
    if key == OVERALL:
        largest = sorted(view.losses.items(), key=lambda item: -item[1])[:OVERALL_TASKS_SHOWN]
        return [_escape(", ".join(f"{paths.get(name, name)} {loss:.3g}" for name, loss in largest))]
    task = view.tasks[key]
    return [_escape(task.target), _escape(task.prediction)]
