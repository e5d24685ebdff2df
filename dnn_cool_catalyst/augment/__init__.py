"""Image augmentation of training batches, test-time augmentation, and the box targets that follow flips."""
from .boxes import Box, parse_box_tasks
from .plan import AugmentationPlan, TTAPlan, image_columns
from .transforms import TRANSFORMS, AugmentationError, BatchTransform, batch_generator, make_transform

__all__ = ["AugmentationError", "AugmentationPlan", "BatchTransform", "Box", "TRANSFORMS", "TTAPlan",
           "batch_generator", "image_columns", "make_transform", "parse_box_tasks"]
