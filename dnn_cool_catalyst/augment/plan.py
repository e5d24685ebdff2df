"""Which transforms run on which input columns, checked against the flow and its data before anything runs.

:class:`AugmentationPlan` is what ``train(augment=...)`` and ``infer(tta=...)`` build: the image input columns
(``types[column] == "img"``, or any float ``(n, C, H, W)`` batch for a user's own dataset), the transforms, the
declared boxes (:mod:`dnn_cool_catalyst.augment.boxes`).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch

from .boxes import Box, check_boxes, check_geometric, flip_targets
from .transforms import AugmentationError, BatchTransform, check_images, make_transform


def image_columns(dataset) -> Optional[List[str]]:
    """The input columns of ``dataset`` typed ``"img"`` (image files or in-memory image arrays); ``None`` for a
    user's own dataset without column types (its batches are then checked to be image batches as they come)."""
    inner = getattr(dataset, "dataset", dataset)
    data = getattr(inner, "data", None)
    types = getattr(data, "types", None)
    if not isinstance(types, dict):
        return None
    return [name for name in input_columns(dataset) if types.get(name) == "img"]


def input_columns(dataset) -> List[str]:
    inner = getattr(dataset, "dataset", dataset)
    names = getattr(inner, "input_names", None)
    if names is None:
        names = list(getattr(getattr(inner, "data", None), "inputs", {}) or {})
    return list(names)


def _transform_list(specs, where: str) -> List[BatchTransform]:
    if isinstance(specs, (str, Mapping)) or callable(specs):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise AugmentationError(f"{where}: expected a list of augmentations, got {type(specs).__name__}")
    return [make_transform(spec) for spec in specs]


class AugmentationPlan:
    """Per-column transforms for training batches (:meth:`apply`), each random per sample from one seeded
    generator per batch; box targets follow the flips.

    ``augment`` maps input columns to lists of transforms (names, ``{"name": ..., params}`` mappings, callables).
    """

    def __init__(self, augment: Mapping, flow, dataset, boxes: Optional[List[Box]]):
        where = "train(augment=...)"
        if not isinstance(augment, Mapping) or not augment:
            raise AugmentationError(f"{where}: expected a mapping of image input columns to lists of augmentations, "
                                    f"e.g. {{'img': ['hflip', 'brightness']}}, got {augment!r}")
        known, images = input_columns(dataset), image_columns(dataset)
        self.columns: Dict[str, List[BatchTransform]] = {}
        for column, specs in augment.items():
            if column not in known:
                raise AugmentationError(f"{where}: '{column}' is not an input column of the flow's data; input "
                                        f"columns are {known}")
            if images is not None and column not in images:
                raise AugmentationError(f"{where}: input column '{column}' is not an image column; image columns "
                                        f"are {images}")
            self.columns[column] = _transform_list(specs, f"{where} column '{column}'")
        check_boxes(boxes, flow)
        check_geometric(flow, boxes, [t for ts in self.columns.values() for t in ts], where)
        moving = [column for column, ts in self.columns.items() if any(t.geometric for t in ts)]
        if boxes and len(moving) > 1:  # each column flips at random on its own: the boxes cannot follow both
            raise AugmentationError(f"{where}: geometric augmentations on several image columns {moving} with "
                                    f"box_tasks: the boxes can follow one column's flips only")
        self.flow, self.boxes = flow, boxes

    def describe(self) -> Dict[str, List[str]]:
        return {column: [t.describe() for t in ts] for column, ts in self.columns.items()}

    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        """A new batch with the columns augmented and the box targets moved with them."""
        inputs = dict(batch["inputs"])
        flips: Dict[str, torch.Tensor] = {}
        for column, transforms in self.columns.items():
            images = check_images(column, inputs[column], "train(augment=...)")
            for transform in transforms:
                images, moved = transform(images, generator)
                for axis, flipped in moved.items():  # two flips of one axis cancel out
                    flips[axis] = flips[axis] ^ flipped if axis in flips else flipped
            inputs[column] = images
        batch = {**batch, "inputs": inputs}
        if flips and self.boxes:
            targets, available = flip_targets(self.boxes, dict(batch["targets"]), dict(batch["available"]), flips)
            batch["targets"], batch["available"] = targets, available
        return batch


class TTAPlan:
    """The views of test-time augmentation: the original batch, then each transform applied to every image input
    column (flips always flip, :meth:`BatchTransform.for_tta`)."""

    def __init__(self, tta, flow, dataset, boxes: Optional[List[Box]]):
        where = "infer(tta=...)"
        columns = image_columns(dataset)
        self.columns = input_columns(dataset) if columns is None else columns
        if not self.columns:
            raise AugmentationError(f"{where}: flow '{flow.name}' has no image input column (input columns: "
                                    f"{input_columns(dataset)}); test-time augmentation transforms images")
        self.transforms = [t.for_tta() for t in _transform_list(tta, where)]
        if not self.transforms:
            raise AugmentationError(f"{where}: give at least one augmentation, e.g. ['hflip']")
        check_boxes(boxes, flow)
        check_geometric(flow, boxes, self.transforms, where)
        self.flow, self.boxes = flow, boxes

    def describe(self) -> List[str]:
        return [t.describe() for t in self.transforms]

    def views(self, inputs: dict, generator: torch.Generator):
        """``(inputs, flips)`` of every view, the original first."""
        yield inputs, {}
        for transform in self.transforms:
            view, flips = dict(inputs), {}
            for column in self.columns:
                images = check_images(column, view[column], "infer(tta=...)")
                view[column], moved = transform(images, generator)
                flips.update(moved)
            yield view, flips

    def unflip(self, activations: Dict[str, torch.Tensor], flips: Dict[str, torch.Tensor]):
        """The boxes' activations of a flipped view, mirrored back into the original image's coordinates."""
        if not flips or not self.boxes:
            return activations
        available = {name: torch.ones(value.shape[0], dtype=torch.bool, device=value.device)
                     for name, value in activations.items()}
        moved, _ = flip_targets(self.boxes, dict(activations), available, flips)
        return moved
