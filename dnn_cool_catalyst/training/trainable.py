"""Before any epoch: every task must have a labelled training row where its preconditions hold.

A task without one gets no gradient and, for a regression task, no fitted scaling (identity, silently): its
predictions would be meaningless while the run looks fine. ``runner.train()`` therefore refuses to start and
names each such task, its path and condition in the flow, and how many usable rows the other splits hold (so the
user can tell a bad split from a label column that is empty where its condition holds). This is an error rather
than a warning with the task left out of the loss: a task that only ever sees inference has nothing to learn
from, and a flow that needs it for gating (``out.task`` as a condition) would gate on an untrained head.
Remedies: resplit (``stratify=`` the task, other ``split_fractions``), label more rows, or drop the task from
the flow.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

from ..tasks.base import sample_mask
from ..errors import RunnerError
from ..run.fitted import train_split_labels


def usable_rows(flow, dataset, positions: Sequence[int]) -> Dict[str, int]:
    """Per task name, the rows among ``positions`` with a label where the task's condition holds on the labels
    (the rows its loss sees)."""
    if len(positions) == 0:
        return {name: 0 for name in flow.tasks}
    targets, available = train_split_labels(dataset, flow, positions)
    masks = flow.graph.masks(targets, available, len(positions))
    return {name: int(sample_mask(masks[name]).sum()) for name in flow.tasks}


def untrainable_messages(flow, dataset, splits: Mapping[str, Sequence[int]]) -> List[str]:
    """One line per task with no usable training row (empty when every task has one)."""
    counts = {split: usable_rows(flow, dataset, positions) for split, positions in splits.items()}
    conditions = {t["path"]: t.get("condition") for t in flow.describe()["tasks"]}
    lines = []
    for name in flow.tasks:
        if counts.get("train", {}).get(name, 0) > 0:
            continue
        path = flow.task_paths[name]
        condition = conditions.get(path)
        where = f" where its condition `{condition}` holds" if condition else ""
        others = ", ".join(f"{counts[split][name]} in '{split}'" for split in counts if split != "train")
        lines.append(f"task '{name}' (path '{path}') has no labelled row in the training split "
                     f"({len(splits.get('train', []))} rows){where}; other splits: {others or 'none'}")
    return lines


def check_trainable(flow, dataset, splits: Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`RunnerError` listing every task without a usable training row (see the module docstring).
    A dataset whose labels cannot be read as tensors (a user's own items) is not checked."""
    try:
        lines = untrainable_messages(flow, dataset, splits)
    except (TypeError, KeyError, IndexError, AttributeError):
        return  # fitted.fit_states already warned that this dataset's targets cannot be read
    if lines:
        raise RunnerError("cannot train: " + "; ".join(lines) + ". Its loss would be empty and a regression task "
                          "would keep identity scaling, so its predictions would mean nothing. Resplit (e.g. "
                          "stratify= that task, or other split_fractions), label more rows where the condition "
                          "holds, or remove the task from the flow.")
