"""Best/worst frames as TensorBoard shows them: boxes drawn on the image, tables with target, prediction and box
values, gated-off predictions left undrawn, noisy frames stored as JPEG."""
import numpy as np
import pytest
import torch
from helpers import read_summaries
from tensorboardX import SummaryWriter

from dnn_cool_catalyst.interpretation import BoxOverlay, Publishers, draw_boxes, encode_frame, publish_extremes
from dnn_cool_catalyst.interpretation.sample_views import SampleView, TaskView

BOX = ("x", "y", "w", "h")


class FrameSource:
    """Dark 16x16 frames, one image column ``img``."""

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


def test_boxes_are_drawn_target_green_predicted_red_and_listed_in_the_table(tmp_path):
    selection = {"x": {"worst": [(3, "row-a", 0.5), (8, "row-b", 0.1)]}}
    views = {3: view((2, 2, 4, 4), (8, 8, 4, 4)), 8: view(None, (1, 1, 2, 2), reached=False)}
    writer = SummaryWriter(str(tmp_path))
    tags = publish_extremes(writer, selection, FrameSource(), Publishers().for_columns(FrameSource.types),
                            {"x": "flow.x"}, step=4, views=views, boxes=[BoxOverlay("face", BOX)])
    writer.close()
    assert tags == ["flow.x/worst/1/img", "flow.x/worst/2/img", "flow.x/worst"]
    found = read_summaries(str(tmp_path))
    step, first = found["images"]["flow.x/worst/1/img"][0]
    assert step == 4 and first.shape == (16, 16, 3)
    assert tuple(first[2, 2]) == (0, 200, 0) and tuple(first[2, 5]) == (0, 200, 0)  # target outline x 2..5
    assert tuple(first[8, 8]) == (230, 30, 30) and tuple(first[11, 11]) == (230, 30, 30)  # prediction 8..11
    assert tuple(first[3, 3]) == (0, 0, 0) and tuple(first[12, 12]) == (0, 0, 0)
    # No label and a prediction gated off by the model's own decisions: nothing drawn, nothing listed.
    assert not found["images"]["flow.x/worst/2/img"][0][1].any()
    text = found["texts"]["flow.x/worst"][0][1]
    assert text == ("**rank 1** · row row-a · loss 0.5 · target 2 · prediction 8  \n"
                    "boxes, target (green) → predicted (red): face (2, 2, 4, 4) → (8, 8, 4, 4)\n\n"
                    "**rank 2** · row row-b · loss 0.1 · target not labelled · prediction 1")


def test_overall_table_names_the_largest_task_losses_and_has_no_boxes_column_without_boxes(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    publish_extremes(writer, {"overall": {"best": [(3, 7, 0.75)]}}, FrameSource(), {}, {"x": "flow.x", "w": "flow.w"},
                     step=0, views={3: view((1, 1, 1, 1), (1, 1, 1, 1))})
    writer.close()
    text = read_summaries(str(tmp_path))["texts"]["overall/best"][0][1]
    assert text == "**rank 1** · row 7 · loss 0.75 · largest task losses: flow.x 0.5, flow.w 0.25"


def test_noisy_frames_are_jpeg_flat_ones_png_and_bad_overlays_are_named():
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data, kind = encode_frame(noisy)
    assert kind == "jpeg" and data[:2] == b"\xff\xd8" and len(data) < 64 * 64 * 3 / 2
    assert encode_frame(np.full((64, 64, 3), 7, dtype=np.uint8))[1] == "png"
    assert draw_boxes(np.zeros((5, 6), dtype=np.uint8), []).shape == (5, 6, 3)  # grey to RGB
    fraction = BoxOverlay("b", BOX, layout="xyxy", units="fraction")
    assert fraction.corners((0.1, 0.2, 0.5, 1.0), 100, 50) == (10.0, 10.0, 50.0, 50.0)
    with pytest.raises(ValueError, match="BoxOverlay 'b': layout must be 'xywh' or 'xyxy', got 'cxcy'"):
        BoxOverlay("b", BOX, layout="cxcy")
    with pytest.raises(ValueError, match="BoxOverlay 'b': tasks must name 4 tasks"):
        BoxOverlay("b", ("x", "y"))


def test_image_cards_are_titled_with_rank_row_and_loss_for_a_single_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    selection = {"x": {"worst": [(3, "row-a", 0.5)]}}
    for single_step in (True, False):
        writer = SummaryWriter(str(tmp_path / str(single_step)))
        publish_extremes(writer, selection, FrameSource(), Publishers().for_columns(FrameSource.types),
                         {"x": "flow.x"}, step=0, views={3: view((2, 2, 4, 4), (8, 8, 4, 4))}, single_step=single_step)
        writer.close()
        events = EventAccumulator(str(tmp_path / str(single_step))).Reload()
        title = events.SummaryMetadata("flow.x/worst/1/img").display_name
        assert title == ("flow.x worst 1 · row row-a · loss 0.5 · img" if single_step else
                         "flow.x worst 1 · img (row, loss: Text tab flow.x/worst)")
