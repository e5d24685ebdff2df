"""Best/worst frames as TensorBoard shows them: boxes drawn on the image, a caption sheet under it, tables with
target and prediction, gated-off predictions left undrawn."""
import os

import numpy as np
import pytest
import torch
from helpers import read_summaries
from tensorboardX import SummaryWriter

from dnn_cool_catalyst.interpretation import BoxOverlay, Publishers, compose_frame, publish_extremes
from dnn_cool_catalyst.sample_views import SampleView, TaskView

BOX = ("x", "y", "w", "h")


class FrameSource:
    """Two dark 16x16 frames at dataset positions 3 and 8, one image column ``img``."""

    types = {"img": "img"}

    def inputs(self, position):
        return {"img": torch.zeros(3, 16, 16)}


def view(target, predicted, reached=True):
    tasks = {name: TaskView(target="not labelled" if target is None else f"{target[i]:g}",
                            prediction=f"{predicted[i]:g}",
                            target_value=None if target is None else float(target[i]),
                            predicted_value=float(predicted[i]), reached=reached)
             for i, name in enumerate(BOX)}
    return SampleView(tasks, losses={"x": 0.5, "w": 0.25})


def test_boxes_are_drawn_target_green_predicted_red_and_captioned(tmp_path):
    selection = {"x": {"worst": [(3, "row-a", 0.5), (8, "row-b", 0.1)]}}
    views = {3: view((2, 2, 4, 4), (8, 8, 4, 4)), 8: view(None, (1, 1, 2, 2), reached=False)}
    writer = SummaryWriter(str(tmp_path))
    tags = publish_extremes(writer, selection, FrameSource(), Publishers().for_columns(FrameSource.types),
                            {"x": "flow.x"}, step=4, views=views, boxes=[BoxOverlay("face", BOX)])
    writer.close()
    assert tags == ["flow.x/worst/1/img", "flow.x/worst/2/img", "flow.x/worst"]
    found = read_summaries(str(tmp_path))
    step, first = found["images"]["flow.x/worst/1/img"][0]
    assert step == 4 and first.shape[1] == 320  # 16 px enlarged 20 times would be too much: at most 8 times
    scale = 8
    assert tuple(first[2 * scale, 2 * scale]) == (0, 200, 0)   # target box corner (x=2, y=2)
    assert tuple(first[8 * scale, 8 * scale]) == (230, 30, 30)  # predicted box corner (x=8, y=8)
    assert (first[16 * scale + 2:, :] == 255).mean() > 0.8       # the caption sheet under the frame
    second = found["images"]["flow.x/worst/2/img"][0][1]
    # No label and a prediction gated off by the model's own decisions: nothing drawn on the frame.
    assert not (second[:16 * scale, :16 * scale] > 0).any()
    table = found["texts"]["flow.x/worst"][0][1].split("\n")
    assert table[0] == "| rank | row | loss | target | prediction |"
    assert table[2:] == ["| 1 | row-a | 0.5 | 2 | 8 |", "| 2 | row-b | 0.1 | not labelled | 1 |"]


def test_overall_table_names_the_largest_task_losses(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    publish_extremes(writer, {"overall": {"best": [(3, 7, 0.75)]}}, FrameSource(), {}, {"x": "flow.x", "w": "flow.w"},
                     step=0, views={3: view((1, 1, 1, 1), (1, 1, 1, 1))})
    writer.close()
    table = read_summaries(str(tmp_path))["texts"]["overall/best"][0][1].split("\n")
    assert table[0] == "| rank | row | loss | largest task losses |"
    assert table[2] == "| 1 | 7 | 0.75 | flow.x 0.5, flow.w 0.25 |"


def test_frames_of_tiny_and_large_inputs_and_bad_overlays():
    small = compose_frame(np.full((4, 5, 3), 9, dtype=np.uint8), ["a caption long enough to wrap " * 4])
    assert small.shape[1] == 320 and (small[:32, :40] == 9).all()  # 8 times, the sheet as wide as a caption
    large = compose_frame(np.zeros((10, 400), dtype=np.uint8), ["x"])
    assert large.shape[1] == 400 and large.shape[2] == 3  # already wide: not enlarged; grey to RGB
    fraction = BoxOverlay("b", BOX, layout="xyxy", units="fraction")
    assert fraction.corners((0.1, 0.2, 0.5, 1.0), 100, 50) == (10.0, 10.0, 50.0, 50.0)
    with pytest.raises(ValueError, match="BoxOverlay 'b': layout must be 'xywh' or 'xyxy', got 'cxcy'"):
        BoxOverlay("b", BOX, layout="cxcy")
    with pytest.raises(ValueError, match="BoxOverlay 'b': tasks must name 4 tasks"):
        BoxOverlay("b", ("x", "y"))
