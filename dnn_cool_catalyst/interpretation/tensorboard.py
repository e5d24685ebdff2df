"""Writing interpretation summaries next to Catalyst's: ``<logdir>/<loader>/``, in an event file of our own.

Tags put the task first, so TensorBoard makes one group per task (next to that task's metric scalars):
``<task_path>/worst`` and ``<task_path>/best`` are markdown tables (rank, row id, loss, target, prediction, the
non-image inputs), ``<task_path>/worst/<rank>/<column>`` the image inputs with the caption and boxes drawn on
them (see :mod:`.frames`). The sum over tasks is the group ``overall``.

tensorboardX names event files by the second and the host, so two writers opened in the same directory within
one second would write to the same file and clobber each other; every writer here gets a unique suffix.
"""
from __future__ import annotations

import os
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tensorboardX import SummaryWriter

from .frames import BoxOverlay, compose_frame
from .publishers import Publisher, _escape
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


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")" if values is not None else "none"


def _sample_lines(key: str, path: str, kind: str, position: int, row_id, loss: float, view, paths) -> List[str]:
    title = "overall (sum over tasks)" if key == OVERALL else path
    lines = [f"{kind} #{position} of {title} · loss {loss:.4g} · row {row_id}"]
    if view is None:
        return lines
    if key != OVERALL:
        task = view.tasks[key]
        lines += [f"target: {task.target}",
                  f"predicted: {task.prediction}" + ("" if task.reached else " (not reached: gated off)")]
        return lines
    largest = sorted(view.losses.items(), key=lambda item: -item[1])[:OVERALL_TASKS_SHOWN]
    for name, task_loss in largest:
        task = view.tasks[name]
        lines.append(f"{paths.get(name, name)}: loss {task_loss:.3g}, target {task.target}, predicted "
                     f"{task.prediction}")
    return lines


def _boxes(view, boxes: Sequence[BoxOverlay], column: str):
    drawn, lines = [], []
    for overlay in boxes:
        if overlay.column is not None and overlay.column != column:
            continue
        target, predicted = view.values(overlay.tasks, "target"), view.values(overlay.tasks, "predicted")
        if target is None and predicted is None:
            continue
        drawn.append((overlay, target, predicted))
        lines.append(f"{overlay.name} {overlay.layout}: green target {_fmt(target)}, red predicted {_fmt(predicted)}")
    return drawn, lines


def _table(key: str, rows: List[List[str]], columns: List[str]) -> str:
    middle = ["largest task losses"] if key == OVERALL else ["target", "prediction"]
    header = ["rank", "row", "loss"] + middle + columns
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                     ["| " + " | ".join(r) + " |" for r in rows])


def publish_extremes(writer, selection, source: SampleSource, publishers: Mapping[str, Publisher],
                     paths: Mapping[str, str], step: int, views: Optional[Mapping[int, object]] = None,
                     boxes: Sequence[BoxOverlay] = ()) -> List[str]:
    """For each key (task name or ``overall``) and kind (best/worst): a markdown table of the samples at
    ``<task_path>/<kind>`` and each image input, captioned (and with ``boxes`` drawn), at
    ``<task_path>/<kind>/<rank>/<column>``; publishers' other summaries under the same tags. ``views`` (see
    :func:`dnn_cool_catalyst.sample_views.sample_views`) give targets and predictions by dataset position.
    Returns the tags written."""
    views = views or {}
    tags = []
    for key, kinds in selection.items():
        path = paths.get(key, key) if key != OVERALL else OVERALL
        for kind, examples in kinds.items():
            tag = f"{path}/{kind}"
            columns: Optional[List[str]] = None
            rows = []
            for position, (index, row_id, loss) in enumerate(examples, start=1):
                view = views.get(index)
                caption = _sample_lines(key, path, kind, position, row_id, loss, view, paths)
                cells = {}
                for column, value in source.inputs(index).items():
                    publisher = publishers.get(column)
                    if publisher is None:
                        continue
                    image_tag = f"{tag}/{position}/{column}"
                    picture = publisher.image(value)
                    if picture is not None:
                        drawn, box_lines = _boxes(view, boxes, column) if view is not None else ([], [])
                        writer.add_image(image_tag, compose_frame(picture, caption + box_lines, drawn),
                                         global_step=step, dataformats="HWC")
                        tags.append(image_tag)
                    elif publisher.publish(writer, image_tag, value, step):
                        tags.append(image_tag)
                    cell = publisher.cell(value)
                    if cell is not None:
                        cells[column] = cell
                columns = columns if columns is not None else list(cells)
                rows.append([str(position), _escape(str(row_id)), f"{loss:.4g}"] + _middle(key, view, paths) +
                            [cells.get(c, "") for c in columns])
            writer.add_text(tag, _table(key, rows, columns or []), global_step=step)
            tags.append(tag)
    return tags


def _middle(key: str, view, paths) -> List[str]:
    if view is None:
        return [""] if key == OVERALL else ["", ""]
    if key == OVERALL:
        largest = sorted(view.losses.items(), key=lambda item: -item[1])[:OVERALL_TASKS_SHOWN]
        return [_escape(", ".join(f"{paths.get(name, name)} {loss:.3g}" for name, loss in largest))]
    task = view.tasks[key]
    return [_escape(task.target), _escape(task.prediction)]
