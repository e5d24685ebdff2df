"""Box-like regression targets, declared by the user, and how image flips move them.

A flipped image changes where things are: a box's ``x1`` becomes ``1 - x1 - w``. Whether a regression task is a
coordinate cannot be told from its labels, so the rule is explicit (:func:`check_geometric`):

- ``box_tasks=None`` (the default): a geometric augmentation (``hflip``, ``vflip``, ``shift``) on a flow with any
  regression task is refused, naming those tasks;
- ``box_tasks`` given: each box is a mapping of roles to tasks, ``{"x1": "face_x1", "y1": "face_y1", "w": "face_w",
  "h": "face_h"}``. Per axis a box has ``x`` alone (a point), ``x1`` and ``x2`` (corners) or ``x1`` and ``w``
  (corner and size); likewise ``y``/``y1``/``y2``/``h``. Coordinates must be bounded regression tasks whose
  ``[lo, hi]`` is the image's extent along that axis (their targets and activations are then in the unit space
  of the image: mirrored, ``u`` becomes ``1 - u``). Regression tasks in no box are declared unmoved by flips, so
  ``box_tasks=[]`` says "none of my regressions are positions".

``box_tasks`` may be a list of boxes or a mapping of box names to boxes.

Example:
    >>> import torch
    >>> box = Box({"x1": "a_x1", "w": "a_w"}, "box 0")
    >>> values = {"a_x1": torch.tensor([0.1, 0.1]), "a_w": torch.tensor([0.3, 0.3])}
    >>> moved, _ = box.flip(values, {"a_x1": torch.ones(2, dtype=torch.bool), "a_w": torch.ones(2, dtype=torch.bool)},
    ...                     "x", torch.tensor([True, False]))
    >>> [round(v, 4) for v in moved["a_x1"].tolist()], moved["a_w"].tolist() == values["a_w"].tolist()
    ([0.6, 0.1], True)
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import torch

from .transforms import AugmentationError

ROLES = {"x": ("x", "x1", "x2", "w"), "y": ("y", "y1", "y2", "h")}
_AXIS_FORMS = ({"x"}, {"x1", "x2"}, {"x1", "w"})


class Box:
    """One declared box (or point): ``roles`` maps ``x``/``x1``/``x2``/``w`` and ``y``/``y1``/``y2``/``h`` to task
    names."""

    def __init__(self, roles: Mapping[str, str], label: str):
        if not isinstance(roles, Mapping) or not roles:
            raise AugmentationError(f"box_tasks {label}: expected a mapping of roles "
                                    f"{[*ROLES['x'], *ROLES['y']]} to task names, got {roles!r}")
        unknown = [r for r in roles if r not in ROLES["x"] + ROLES["y"]]
        if unknown:
            raise AugmentationError(f"box_tasks {label}: unknown role(s) {unknown}; roles are "
                                    f"{[*ROLES['x'], *ROLES['y']]}")
        self.roles, self.label = dict(roles), label
        for axis, names in ROLES.items():
            present = {n.replace("y", "x").replace("h", "w") for n in names if n in roles}
            if present and present not in _AXIS_FORMS:
                forms = [sorted(f) for f in _AXIS_FORMS]
                if axis == "y":
                    forms = [[r.replace("x", "y").replace("w", "h") for r in f] for f in forms]
                raise AugmentationError(f"box_tasks {label}: roles {sorted(r for r in roles if r in names)} on the "
                                        f"{axis} axis; expected one of {forms}")

    def tasks(self) -> List[str]:
        return list(self.roles.values())

    def flip(self, values: Dict[str, torch.Tensor], available: Dict[str, torch.Tensor], axis: str,
             flipped: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Values (unit space) of this box's tasks after mirroring the samples where ``flipped`` holds along
        ``axis``; a flipped coordinate that needs a missing partner (``x1`` without ``w``) becomes unavailable."""
        x, x1, x2, w = (self.roles.get(r) for r in ROLES[axis])
        values, available = dict(values), dict(available)

        def where(name, new):
            old = values[name]
            values[name] = torch.where(flipped.view(-1, *([1] * (old.dim() - 1))), new.to(old.dtype), old)

        if x is not None:
            where(x, 1 - values[x])
        elif x2 is not None:
            a, b = values[x1], values[x2]
            where(x1, 1 - b)
            where(x2, 1 - a)
            both = available[x1] & available[x2]
            available[x1] = available[x1] & (both | ~flipped)
            available[x2] = available[x2] & (both | ~flipped)
        elif x1 is not None:
            where(x1, 1 - values[x1] - values[w])
            available[x1] = available[x1] & (available[w] | ~flipped)
        return values, available


def parse_box_tasks(box_tasks) -> Optional[List[Box]]:
    """``None`` stays ``None`` (nothing declared); a list of boxes or a mapping ``name -> box`` -> ``[Box]``."""
    if box_tasks is None:
        return None
    if isinstance(box_tasks, Mapping):
        if box_tasks and all(isinstance(v, str) for v in box_tasks.values()):
            return [Box(box_tasks, "box 0")]  # a single box given without a list
        return [Box(roles, f"box {name!r}") for name, roles in box_tasks.items()]
    if isinstance(box_tasks, (list, tuple)):
        return [Box(roles, f"box {i}") for i, roles in enumerate(box_tasks)]
    raise AugmentationError(f"box_tasks must be a list of boxes (mappings of roles to tasks) or a mapping of box "
                            f"names to boxes, got {type(box_tasks).__name__}")


def check_boxes(boxes: Optional[List[Box]], flow) -> None:
    """Every box task exists in ``flow``, is a bounded regression (its coordinates need the image's unit space)
    and is in one box only."""
    if boxes is None:
        return
    seen: Dict[str, str] = {}
    for box in boxes:
        for role, task in box.roles.items():
            if task not in flow.tasks:
                raise AugmentationError(f"box_tasks {box.label}: '{task}' (role '{role}') is not a task of flow "
                                        f"'{flow.name}'; tasks are {list(flow.tasks)}")
            kind = getattr(flow.tasks[task], "type_name", "?")
            if kind != "bounded_regression":
                raise AugmentationError(f"box_tasks {box.label}: task '{task}' (role '{role}') is a {kind} task; box "
                                        f"coordinates must be bounded regressions whose [lo, hi] is the image extent")
            if task in seen:
                raise AugmentationError(f"box_tasks: task '{task}' is in {seen[task]} and {box.label}")
            seen[task] = box.label


def regression_tasks(flow) -> List[str]:
    return [name for name, task in flow.tasks.items() if "regression" in getattr(task, "type_name", "")]


def check_geometric(flow, boxes: Optional[List[Box]], transforms, where: str) -> None:
    """Refuse geometric transforms the box targets cannot follow (see the module docstring)."""
    geometric = [t for t in transforms if t.geometric]
    if not geometric:
        return
    names = [t.name for t in geometric]
    if boxes is None:
        moved = regression_tasks(flow)
        if moved:
            raise AugmentationError(
                f"{where}: geometric augmentation {names} on flow '{flow.name}', which has regression task(s) "
                f"{moved}: if they are positions in the image they would no longer match it. Declare them with "
                f"box_tasks=[{{'x1': ..., 'y1': ..., 'w': ..., 'h': ...}}, ...] (box_tasks=[] if none is a position) "
                f"or use photometric augmentations only")
        return
    unsafe = [t.name for t in geometric if not t.box_safe]
    if unsafe and any(box.roles for box in boxes):
        raise AugmentationError(f"{where}: augmentation {unsafe} cannot move box targets consistently (a shifted box "
                                f"can leave the image); with box_tasks use hflip / vflip only")


def flip_targets(boxes: Optional[List[Box]], values: Dict[str, torch.Tensor], available: Dict[str, torch.Tensor],
                 flips: Dict[str, torch.Tensor]):
    """Apply every flip mask (``{"x": (n,) bool, "y": ...}``) to the boxes' entries of ``values``/``available``."""
    if not boxes or not flips:
        return values, available
    for axis, flipped in flips.items():
        for box in boxes:
            if any(box.roles.get(r) is not None for r in ROLES[axis]):
                values, available = box.flip(values, available, axis, flipped)
    return values, available
