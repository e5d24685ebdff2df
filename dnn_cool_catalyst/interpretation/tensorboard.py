"""Writing interpretation summaries next to Catalyst's: ``<logdir>/<loader>/``, in an event file of our own.

tensorboardX names event files by the second and the host, so two writers opened in the same directory within
one second would write to the same file and clobber each other; every writer here gets a unique suffix.
"""
from __future__ import annotations

import os
import uuid
from typing import Dict, List, Mapping, Tuple

from tensorboardX import SummaryWriter

from .publishers import Publisher
from .samples import SampleSource
from .selection import OVERALL, Losses, rank


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


def publish_extremes(writer, selection, source: SampleSource, publishers: Mapping[str, Publisher],
                     paths: Mapping[str, str], step: int, prefix: str = "interpretation") -> List[str]:
    """For each key (task name or ``overall``) and kind (best/worst): one text summary holding a markdown table
    of the samples (rank, row id, loss, a cell per input column) at ``<prefix>/<task_path>/<kind>``, and the
    publishers' own summaries (images) at ``<prefix>/<task_path>/<kind>/<rank>/<column>``. Returns the tags."""
    tags = []
    for key, kinds in selection.items():
        path = paths.get(key, key) if key != OVERALL else OVERALL
        for kind, examples in kinds.items():
            tag = f"{prefix}/{path}/{kind}"
            columns, rows = None, []
            for position, (index, row_id, loss) in enumerate(examples, start=1):
                inputs = source.inputs(index)
                cells = {}
                for column, value in inputs.items():
                    publisher = publishers.get(column)
                    if publisher is None:
                        continue
                    if publisher.publish(writer, f"{tag}/{position}/{column}", value, step):
                        tags.append(f"{tag}/{position}/{column}")
                    cell = publisher.cell(value)
                    if cell is not None:
                        cells[column] = cell
                columns = columns or list(cells)
                rows.append([str(position), str(row_id), f"{loss:.4g}"] + [cells.get(c, "") for c in columns])
            header = ["rank", "row", "loss"] + list(columns or [])
            table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                              ["| " + " | ".join(r) + " |" for r in rows])
            writer.add_text(tag, table, global_step=step)
            tags.append(tag)
    return tags
