"""The synthetic security story: generator, converters, flow masks, reference model and a tiny demo run."""
import os

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import read_summaries

from dnn_cool_catalyst.data import ConverterError
from dnn_cool_catalyst.synthetic import security
from dnn_cool_catalyst.synthetic.security import (BODY_BOX, FACE_BOX, FACIAL_CHARACTERISTICS, IMAGE_SIZE, LABEL_COLUMNS,
                                                  LOCK_COLOUR, SHIRT_COLOURS, SHIRT_TYPES, ImageArrayInput,
                                                  security_converters, security_frame, security_project)
from dnn_cool_catalyst.synthetic.security_model import SecurityNet, security_model


@pytest.fixture(scope="module")
def frame():
    return security_frame(600, seed=3, unannotated=0.0)


def _box(df, i, names):
    x1, y1, w, h = (int(df.at[i, n]) for n in names)
    return x1, y1, w, h


def _crop(image, box, inset=0):
    x1, y1, w, h = box
    return image[y1 + inset:y1 + h - inset, x1 + inset:x1 + w - inset].reshape(-1, 3).astype(float)


# -- generator ---------------------------------------------------------------------------------------------

def test_frame_has_the_story_columns_and_every_scene_kind(frame):
    assert list(frame.columns) == ["img", *LABEL_COLUMNS]
    assert frame.img.map(lambda a: a.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8).all()
    assert (frame.camera_blocked == 1).sum() > 20
    assert ((frame.door_open == 0) & (frame.door_locked == 1)).sum() > 50
    assert ((frame.door_open == 0) & (frame.door_locked == 0)).sum() > 50
    assert ((frame.door_open == 1) & (frame.person_present == 0)).sum() > 30
    assert (frame.person_present == 1).sum() > 100
    assert set(frame.shirt_type.dropna()) == set(SHIRT_TYPES)


def test_labels_are_nan_exactly_where_the_story_says(frame):
    others = [c for c in LABEL_COLUMNS if c != "camera_blocked"]
    blocked = frame.camera_blocked == 1
    assert frame.loc[blocked, others].isna().all().all()
    seen = frame[frame.camera_blocked == 0]
    assert seen.door_open.notna().all()
    closed, opened = seen[seen.door_open == 0], seen[seen.door_open == 1]
    person_cols = ["person_present", *FACE_BOX, *BODY_BOX, "facial_characteristics", "shirt_type"]
    assert closed.door_locked.isin([0, 1]).all() and closed[person_cols].isna().all().all()
    assert opened.door_locked.isna().all() and opened.person_present.isin([0, 1]).all()
    box_cols = [*FACE_BOX, *BODY_BOX, "facial_characteristics", "shirt_type"]
    assert opened.loc[opened.person_present == 0, box_cols].isna().all().all()
    assert opened.loc[opened.person_present == 1, box_cols].notna().all().all()


def test_boxes_lie_inside_the_image_and_the_face_is_above_the_body(frame):
    people = frame[frame.person_present == 1]
    for x1, y1, w, h in (FACE_BOX, BODY_BOX):
        assert (people[x1] >= 0).all() and (people[y1] >= 0).all()
        assert (people[x1] + people[w] <= IMAGE_SIZE).all() and (people[y1] + people[h] <= IMAGE_SIZE).all()
        assert (people[w] > 0).all() and (people[h] > 0).all()
    assert (people.face_y1 + people.face_h <= people.body_y1).all()


def test_scene_brightness_tells_blocked_closed_and_open_apart(frame):
    brightness = frame.img.map(lambda a: float(a.mean()))
    assert brightness[frame.camera_blocked == 1].max() < 60
    assert brightness[frame.door_open == 1].min() > 120
    assert brightness[frame.camera_blocked == 1].max() < brightness[frame.door_open == 0].min()


def test_lock_square_is_drawn_iff_the_door_is_locked(frame):
    closed = frame[frame.door_open == 0]
    lock = np.asarray(LOCK_COLOUR, dtype=float)
    counts = closed.img.map(lambda a: int((np.abs(a.astype(float) - lock).max(-1) < 45).sum()))
    assert counts[closed.door_locked == 1].min() >= 12      # a 4x4 or 5x5 square, minus a noisy pixel or two
    assert counts[closed.door_locked == 0].max() <= 2


def test_shirt_and_face_colours_encode_shirt_type_and_facial_characteristics(frame):
    palette = np.asarray(list(SHIRT_COLOURS.values()), dtype=float)
    people = frame[frame.person_present == 1]
    for i in people.index:
        image = frame.at[i, "img"]
        body = np.median(_crop(image, _box(frame, i, BODY_BOX), inset=1), axis=0)
        assert SHIRT_TYPES[int(np.abs(palette - body).sum(1).argmin())] == frame.at[i, "shirt_type"], i
        x1, y1, w, h = _box(frame, i, FACE_BOX)
        centre = np.median(_crop(image, (x1 + w // 2 - 1, y1 + h // 2 - 1, 3, 3)), axis=0)
        traits = set(filter(None, frame.at[i, "facial_characteristics"].split(",")))
        assert {c for c, level in zip(FACIAL_CHARACTERISTICS, centre) if level > 160} == traits, i


@pytest.fixture(scope="module")
def noiseless():
    """The same kind of scenes drawn without noise, so boxes can be checked pixel by pixel."""
    sample = security._sample_scenes

    def quiet(rng, n):
        scenes = sample(rng, n)
        scenes["noise"] = np.zeros_like(scenes["noise"])
        return scenes

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_sample_scenes", quiet)
        return security_frame(200, seed=11, unannotated=0.0)


def _bounds(mask):
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_box_labels_are_the_exact_bounds_of_the_drawn_head_and_body(noiseless):
    people = noiseless.index[noiseless.person_present == 1]
    assert len(people) > 30
    for i in people:
        image = noiseless.at[i, "img"].astype(int)
        traits = noiseless.at[i, "facial_characteristics"].split(",")
        face = [security.FACE_LEVELS[c in traits] for c in FACIAL_CHARACTERISTICS]
        shirt = SHIRT_COLOURS[noiseless.at[i, "shirt_type"]]
        assert _bounds((image == face).all(-1)) == _box(noiseless, i, FACE_BOX), i
        assert _bounds((image == shirt).all(-1)) == _box(noiseless, i, BODY_BOX), i
    others = noiseless.index[noiseless.person_present != 1]
    palette = list(SHIRT_COLOURS.values())
    assert not any((noiseless.at[i, "img"] == c).all(-1).any() for i in others for c in palette[:6])


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = security_frame(40, seed=7), security_frame(40, seed=7), security_frame(40, seed=8)
    assert np.array_equal(np.stack(a.img), np.stack(b.img))
    pd.testing.assert_frame_equal(a.drop(columns="img"), b.drop(columns="img"))
    assert not np.array_equal(np.stack(a.img), np.stack(c.img))
    assert not a.drop(columns="img").equals(c.drop(columns="img"))


def test_chunked_drawing_does_not_change_the_result(monkeypatch):
    whole = security_frame(50, seed=2)
    monkeypatch.setattr(security, "_CHUNK", 16)
    chunked = security_frame(50, seed=2)
    assert np.array_equal(np.stack(whole.img), np.stack(chunked.img))


def test_unannotated_leaves_some_camera_blocked_labels_missing_and_nothing_else():
    df = security_frame(500, seed=0, unannotated=0.1)
    missing = df.camera_blocked.isna()
    assert 20 < missing.sum() < 90
    assert df.loc[missing, "door_open"].notna().any()  # the children stay; the flow switches them off
    assert security_frame(200, seed=0, unannotated=0.0).camera_blocked.notna().all()


def test_generator_writes_nothing_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    security_frame(30, seed=1)
    security_converters().build(security_frame(30, seed=1), input_cols="img", output_cols=list(LABEL_COLUMNS))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [({"n_samples": 0}, "n_samples"), ({"n_samples": 2.5}, "n_samples"),
                                           ({"n_samples": 5, "unannotated": 1.0}, "unannotated")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        security_frame(**kwargs)


def test_saved_frame_loads_through_the_default_image_converter(tmp_path):
    df = security_frame(6, seed=4)
    saved = security.save_security_frame(df, str(tmp_path / "scenes"))
    assert sorted(os.listdir(tmp_path / "scenes")) == [f"{i:06d}.png" for i in range(6)] + ["labels.csv"]
    converters = security_converters()
    del converters.values.col_mapping["img"]  # back to the default "img" converter: file paths
    data = converters.build(pd.read_csv(tmp_path / "scenes" / "labels.csv"), input_cols="img",
                            output_cols=list(LABEL_COLUMNS))
    assert torch.allclose(data.inputs["img"][3] * 255, torch.from_numpy(df.img[3]).permute(2, 0, 1).float())
    assert saved.img[0].endswith("000000.png")


# -- converters --------------------------------------------------------------------------------------------

def test_converters_map_images_to_float_chw_and_boxes_to_image_fractions(frame):
    from dnn_cool_catalyst.interpretation.publishers import ImagePublisher, Publishers

    data = security_converters().build(frame, input_cols="img", output_cols=list(LABEL_COLUMNS))
    assert isinstance(Publishers().get("img", data.types["img"]), ImagePublisher)  # best/worst shown as images
    image = data.inputs["img"][0]
    assert image.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(frame.img[0]).permute(2, 0, 1).float() / 255)
    i = int(np.flatnonzero(frame.person_present == 1)[0])
    assert data.targets["face_x1"][i].item() == pytest.approx(frame.face_x1[i] / IMAGE_SIZE)
    assert (data.tasks["body_w"].lo, data.tasks["body_w"].hi) == (0.0, IMAGE_SIZE)
    assert data.tasks["shirt_type"].class_names == list(SHIRT_TYPES)
    assert data.tasks["facial_characteristics"].class_names == list(FACIAL_CHARACTERISTICS)
    assert not data.available["face_x1"][frame.person_present.fillna(0).to_numpy() == 0].any()


@pytest.mark.parametrize("cell, match", [
    (np.zeros((8, 8, 3), dtype=np.float32), "dtype float32"),
    (np.zeros((8, 8), dtype=np.uint8), r"shape \(8, 8\)"),
    ("a.png", "'a.png'"),
    (np.zeros((4, 4, 3), dtype=np.uint8), r"different shapes: \(8, 8, 3\) at row 0 and \(4, 4, 3\) at row 1"),
])
def test_image_array_input_names_the_column_and_the_problem(cell, match):
    series = pd.Series([np.zeros((8, 8, 3), dtype=np.uint8), cell])
    with pytest.raises(ConverterError, match=f"column 'camera'.*{match}"):
        ImageArrayInput().build_column(series, "camera")


# -- flow masks --------------------------------------------------------------------------------------------

def _all_masks(df, tmp_path):
    project = security_project(str(tmp_path), df=df)
    flow = project.get_full_flow()
    dataset = project.get_dataset()
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))
    masks = flow.get_masks(batch=batch)
    return flow, {flow.task_paths[k]: (v if v.dim() == 1 else v.any(1)).numpy() for k, v in masks.items()}


def test_flow_masks_follow_the_story(tmp_path):
    df = security_frame(300, seed=5, unannotated=0.05)
    flow, masks = _all_masks(df, tmp_path)
    seen = (df.camera_blocked == 0).to_numpy()
    closed = seen & (df.door_open == 0).to_numpy()
    opened = seen & (df.door_open == 1).to_numpy()
    person = opened & (df.person_present == 1).to_numpy()
    expected = {"camera_blocked": df.camera_blocked.notna().to_numpy(), "door_open": seen, "door_locked": closed,
                "person_present": opened}
    for prefix, names in (("person_regression.face_regression.", FACE_BOX + ("facial_characteristics",)),
                          ("person_regression.body_regression.", BODY_BOX + ("shirt_type",))):
        expected.update({prefix + n: person for n in names})
    assert set(masks) == set(expected)
    for path, mask in expected.items():
        assert np.array_equal(masks[path], mask), path
    # Rows without a camera_blocked label keep their other labels but train nothing.
    unlabelled = df.camera_blocked.isna().to_numpy()
    assert unlabelled.any() and df.loc[unlabelled, "door_open"].notna().any()
    assert not any(m[unlabelled].any() for m in masks.values())


def test_flow_structure_and_feature_keys(tmp_path):
    flow = security_project(str(tmp_path), n_samples=40).get_full_flow()
    described = {t["path"]: t for t in flow.describe()["tasks"]}
    assert described["person_regression.face_regression.face_x1"]["input"] == "face_localization"
    assert described["person_regression.body_regression.body_h"]["input"] == "body_localization"
    assert described["person_regression.body_regression.shirt_type"]["input"] == "features"
    assert flow.name == "security_flow" and len(flow.tasks) == len(LABEL_COLUMNS)


# -- model ---------------------------------------------------------------------------------------------------

def test_model_outputs_every_task_and_box_gradients_reach_the_localisation_maps(tmp_path):
    torch.manual_seed(0)
    flow = security_project(str(tmp_path), n_samples=40).get_full_flow()
    model = security_model(flow)
    assert isinstance(model, SecurityNet)
    out = model({"img": torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE)})
    assert set(out["logits"]) == set(flow.tasks)
    assert out["logits"]["facial_characteristics"].shape == (4, len(FACIAL_CHARACTERISTICS))
    # A box branch whose read-out saturates at initialisation would never learn: check it gets gradients.
    sum(out["logits"][n].sum() for n in FACE_BOX + BODY_BOX).backward()
    for branch in (model.face, model.body):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_box_heads_start_by_returning_their_own_coordinate(tmp_path):
    """Random box heads mix the four coordinates and take many epochs to untangle them (see the model)."""
    torch.manual_seed(0)
    model = security_model(security_project(str(tmp_path), n_samples=40).get_full_flow()).eval()
    images = torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        loc = model.localization(model.trunk(images))
        out = model({"img": images})
        for branch, names in ((model.face, FACE_BOX), (model.body, BODY_BOX)):
            box = torch.sigmoid(branch(loc))
            for i, name in enumerate(names):
                assert torch.allclose(torch.sigmoid(out["logits"][name]), box[:, i], atol=1e-6), name


# -- the demo -----------------------------------------------------------------------------------------------

def test_tiny_demo_run_trains_tunes_evaluates_and_writes_the_csv(tmp_path, capsys):
    from dnn_cool_catalyst import demo

    demo.main(["--samples", "300", "--epochs", "1", "--project-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert "Test split, decoded gating" in out and "tensorboard --logdir" in out
    run_dir = tmp_path / "security_300_seed0"
    for gating in ("gt", "decoded"):
        table = pd.read_csv(run_dir / f"evaluation_test_{gating}.csv")
        assert list(table.columns) == ["task_path", "metric_name", "metric_res", "num_samples"]
        assert len(set(table.task_path)) == len(LABEL_COLUMNS)
    # The interpretation callback shows the best/worst samples per task as the 64x64 frames themselves, in the
    # task's own group; one TensorBoard run (run-1) for this demo run. Face and body boxes are in the tables.
    assert os.listdir(run_dir / "tensorboard") == ["run-1"]
    found = read_summaries(str(run_dir / "tensorboard" / "run-1" / "valid"))
    shown = [tag for tag in found["images"] if tag.startswith("door_locked/worst/")]
    assert shown and all(pixels.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) for tag in shown
                         for _, pixels in found["images"][tag])
    table = found["texts"]["person_regression.face_regression.face_x1/worst"][-1][1]
    assert table.startswith("**rank 1** · row ")
    assert "boxes, target (green) → predicted (red): face (" in table and "; body (" in table
