"""Interpretation: the best and worst samples per task, how inputs are shown, explanation trees and PR curves in
TensorBoard. Not imported here: :mod:`.examples` (a run's stored outputs, functions over the runner) and
:mod:`.callback` (the validation callback), which load the runner and Catalyst."""
from .frames import BoxOverlay, draw_boxes, encode_frame
from .images import as_hwc_uint8, looks_like_image
from .pr_curves import curve_data, log_pr_curves, mark_tuned_points, precision_recall_at
from .publishers import (ArrayPublisher, ImagePublisher, Publisher, Publishers, TabularPublisher,
                         TextPublisher)
from .samples import SampleSource
from .selection import OVERALL, LossCollector, losses_from_stored, rank
from .tensorboard import open_writer, publish_extremes, select_extremes

__all__ = ["BoxOverlay", "draw_boxes", "encode_frame", "as_hwc_uint8", "looks_like_image", "curve_data",
           "log_pr_curves", "mark_tuned_points", "precision_recall_at", "ArrayPublisher", "ImagePublisher",
           "Publisher", "Publishers", "TabularPublisher", "TextPublisher", "SampleSource", "OVERALL", "LossCollector",
           "losses_from_stored", "rank", "open_writer", "publish_extremes", "select_extremes"]
