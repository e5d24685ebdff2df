"""Training augmentations: the named per-batch transforms, box targets that follow flips, seeding, and errors."""
import os

import pytest
import torch

from dnn_cool_catalyst.augment import AugmentationError, AugmentationPlan, batch_generator, make_transform
from dnn_cool_catalyst.augment.boxes import parse_box_tasks
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.security import BODY_BOX, FACE_BOX, security_project
from dnn_cool_catalyst.synthetic.security_model import security_model

ROLES = ("x1", "y1", "w", "h")
BOXES = [dict(zip(ROLES, FACE_BOX)), dict(zip(ROLES, BODY_BOX))]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return security_project(str(tmp_path_factory.mktemp("aug")), n_samples=80, seed=0)


def small_runner(project, name, seed=0, **kwargs):
    torch.manual_seed(seed)
    flow = project.get_full_flow()
    return project.runner(security_model(flow, width=4, features=8), name, batch_size=16, seed=seed, **kwargs)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- the transforms ------------------------------------------------------------------------------------------

def test_flips_of_a_known_tensor():
    images = torch.arange(12.0).reshape(1, 1, 3, 4)
    out, flips = make_transform("hflip", p=1.0)(images, gen())
    assert out[0, 0].tolist() == [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]] and flips["x"].tolist() == [True]
    out, flips = make_transform("vflip", p=1.0)(images, gen())
    assert out[0, 0].tolist() == [[8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]] and flips["y"].tolist() == [True]
    out, flips = make_transform("hflip", p=0.0)(images, gen())
    assert torch.equal(out, images) and flips["x"].tolist() == [False]


def test_random_flip_is_per_sample_and_reports_which_samples_moved():
    images = torch.rand(64, 3, 5, 5)
    out, flips = make_transform("hflip")(images, gen(1))
    moved = flips["x"]
    assert 10 < int(moved.sum()) < 54  # p = 0.5 per sample
    assert torch.equal(out[moved], images[moved].flip(-1))
    assert torch.equal(out[~moved], images[~moved])


def test_shift_moves_whole_pixels_and_fills_with_zeros():
    images = torch.rand(32, 1, 6, 6) + 1.0  # no zero in the content
    out, _ = make_transform("shift", max_pixels=1)(images, gen(2))
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for sample, shifted in zip(padded, out):
        candidates = [sample[:, 1 - dy:7 - dy, 1 - dx:7 - dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.equal(shifted, c) for c in candidates)
    assert (out == 0).any()  # some sample moved
    assert torch.equal(make_transform("shift", max_pixels=0)(images, gen())[0], images)


@pytest.mark.parametrize("name", ["brightness", "contrast", "noise", "hflip", "shift"])
def test_transforms_are_seeded_and_stay_in_range(name):
    images = torch.rand(16, 3, 8, 8)
    transform = make_transform(name)
    a, _ = transform(images, batch_generator("cpu", 42, 1, 3))
    b, _ = transform(images, batch_generator("cpu", 42, 1, 3))
    c, _ = transform(images, batch_generator("cpu", 43, 1, 3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, images)


def test_brightness_adds_one_offset_per_sample_within_delta():
    images = torch.full((20, 3, 4, 4), 0.5)
    out, _ = make_transform({"name": "brightness", "delta": 0.1})(images, gen(3))
    offsets = out - images
    per_sample = offsets.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample.abs().max() <= 0.1 + 1e-6 and per_sample[:, 0].std() > 0.01


def test_unknown_or_malformed_augmentations_are_named():
    with pytest.raises(AugmentationError, match=r"unknown augmentation 'rotate'.*brightness.*hflip"):
        make_transform("rotate")
    with pytest.raises(AugmentationError, match=r"'hflip': p must be a probability"):
        make_transform("hflip", p=2)
    with pytest.raises(AugmentationError, match=r"'brightness'.*unexpected keyword.*strength"):
        make_transform({"name": "brightness", "strength": 1})
    with pytest.raises(AugmentationError, match="needs 'name'"):
        make_transform({"delta": 1})


# -- boxes ---------------------------------------------------------------------------------------------------

def test_box_roles_move_with_flips_in_unit_space():
    (box,) = parse_box_tasks([{"x1": "a", "x2": "b", "y": "c"}])
    values = {"a": torch.tensor([0.1, 0.1]), "b": torch.tensor([0.4, 0.4]), "c": torch.tensor([0.25, 0.25])}
    available = {k: torch.tensor([True, True]) for k in values}
    flipped = torch.tensor([True, False])
    moved, still = box.flip(values, available, "x", flipped)
    assert [round(v, 5) for v in moved["a"].tolist()] == [0.6, 0.1]  # x1' = 1 - x2
    assert [round(v, 5) for v in moved["b"].tolist()] == [0.9, 0.4]  # x2' = 1 - x1
    assert torch.equal(moved["c"], values["c"])
    moved, _ = box.flip(values, available, "y", flipped)
    assert moved["c"].tolist() == [0.75, 0.25]
    available["b"] = torch.tensor([False, False])  # a flipped x1 needs its partner: unavailable when flipped
    _, still = box.flip(values, available, "x", flipped)
    assert still["a"].tolist() == [False, True]


def test_plan_flips_images_and_security_boxes_consistently(project):
    runner = small_runner(project, "plan", box_tasks=BOXES)
    batch = next(iter(runner.split_loader("train", batch_size=16)))
    plan = AugmentationPlan({"img": [{"name": "hflip", "p": 1.0}]}, runner.flow, runner.dataset, runner.box_tasks)
    out = plan.apply(batch, gen())
    assert torch.equal(out["inputs"]["img"], batch["inputs"]["img"].flip(-1))
    t, o = batch["targets"], out["targets"]
    for x1, y1, w, h in (FACE_BOX, BODY_BOX):
        assert torch.allclose(o[x1], 1 - t[x1] - t[w])
        assert torch.equal(o[w], t[w]) and torch.equal(o[y1], t[y1]) and torch.equal(o[h], t[h])
    # The box really is where the flipped image has it: the face's pixels move to the mirrored columns.
    row = int(batch["available"][FACE_BOX[0]].nonzero()[0])
    size = 64
    x1, y1, w, h = (int(round(float(t[n][row]) * size)) for n in FACE_BOX)
    nx1 = int(round(float(o[FACE_BOX[0]][row]) * size))
    original = batch["inputs"]["img"][row, :, y1:y1 + h, x1:x1 + w]
    mirrored = out["inputs"]["img"][row, :, y1:y1 + h, nx1:nx1 + w]
    assert torch.equal(mirrored, original.flip(-1))
    # Twice flipped is the original batch.
    twice = plan.apply(out, gen())
    assert torch.equal(twice["inputs"]["img"], batch["inputs"]["img"])
    assert torch.allclose(twice["targets"][FACE_BOX[0]], t[FACE_BOX[0]], atol=1e-6)


# -- from train() --------------------------------------------------------------------------------------------

def test_geometric_augmentation_refused_with_regression_tasks_naming_them(project):
    runner = small_runner(project, "refused")
    with pytest.raises(RunnerError, match=r"geometric augmentation \['hflip'\].*'face_x1'.*'body_h'.*box_tasks"):
        runner.train(num_epochs=1, augment={"img": ["hflip", "brightness"]})
    assert not os.path.exists(runner.checkpoint_dir)  # refused before training
    runner = small_runner(project, "shift", box_tasks=BOXES)
    with pytest.raises(RunnerError, match=r"\['shift'\] cannot move box targets"):
        runner.train(num_epochs=1, augment={"img": ["shift"]})


def test_bad_augment_and_box_tasks_arguments(project):
    runner = small_runner(project, "bad")
    with pytest.raises(RunnerError, match=r"unknown augmentation 'rotate'"):
        runner.train(num_epochs=1, augment={"img": ["rotate"]})
    with pytest.raises(RunnerError, match=r"'image' is not an input column.*\['img'\]"):
        runner.train(num_epochs=1, augment={"image": ["brightness"]})
    with pytest.raises(RunnerError, match="expected a mapping of image input columns"):
        runner.train(num_epochs=1, augment=["brightness"])
    with pytest.raises(RunnerError, match=r"'face_x9' \(role 'x1'\) is not a task"):
        small_runner(project, "bad2", box_tasks=[{"x1": "face_x9", "w": "face_w"}])
    with pytest.raises(RunnerError, match=r"task 'door_open' \(role 'x'\) is a binary task"):
        small_runner(project, "bad3", box_tasks=[{"x": "door_open"}])
    with pytest.raises(RunnerError, match=r"roles \['w'\] on the x axis"):
        small_runner(project, "bad4", box_tasks=[{"w": "face_w"}])
    assert not os.path.exists(runner.checkpoint_dir)


class Recorder:
    """A callable augmentation that records what it is given (train batches only) and changes nothing."""

    def __init__(self):
        self.shapes = []

    def __call__(self, images):
        self.shapes.append((tuple(images.shape), images.dtype))
        return images


def test_callable_runs_on_train_batches_only_after_float_conversion(project):
    recorder = Recorder()
    runner = small_runner(project, "callable")
    runner.train(num_epochs=1, augment={"img": [recorder, "brightness"]}, early_stopping_patience=1)
    train_batches = len(runner.split_loader("train"))
    assert len(recorder.shapes) == train_batches  # not the validation batches
    assert all(dtype == torch.float32 and len(shape) == 4 and shape[1:] == (3, 64, 64)
               for shape, dtype in recorder.shapes)
    assert runner._augment_plan is None  # train(augment=) holds only for that train()


def test_augmented_training_is_reproducible_and_differs_from_plain(project):
    def weights(name, augment):
        runner = small_runner(project, name, box_tasks=BOXES)
        runner.train(num_epochs=1, augment=augment)
        return {k: v.clone() for k, v in runner.model.state_dict().items()}

    augment = {"img": ["hflip", "vflip", "brightness", "noise"]}
    a, b = weights("rep_a", augment), weights("rep_b", augment)
    plain = weights("rep_plain", None)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], plain[k]) for k in a if a[k].is_floating_point())


def test_boxes_cannot_follow_independent_flips_of_two_image_columns(project):
    import types

    runner = small_runner(project, "two_columns", box_tasks=BOXES)
    data = runner.dataset.data
    two = types.SimpleNamespace(data=types.SimpleNamespace(types={**data.types, "img2": "img"},
                                                           inputs={**data.inputs, "img2": data.inputs["img"]}),
                                input_names=["img", "img2"])
    with pytest.raises(AugmentationError, match=r"several image columns \['img', 'img2'\]"):
        AugmentationPlan({"img": ["hflip"], "img2": ["vflip"]}, runner.flow, two, runner.box_tasks)
    plan = AugmentationPlan({"img": ["hflip"], "img2": ["brightness"]}, runner.flow, two, runner.box_tasks)
    assert plan.describe() == {"img": ["hflip(p=0.5)"], "img2": ["brightness(delta=0.2)"]}


def test_device_gathered_batches_augment_and_balance_alike(project):
    # "resident" gathers every batch from the split's tensors held on the device (the CPU stands in for it here):
    # same balanced batches, same augmentation draws, same weights as the DataLoader path.
    def weights(name, device_data):
        runner = small_runner(project, name, box_tasks=BOXES, device_data=device_data)
        runner.train(num_epochs=1, augment={"img": ["hflip", "noise"]}, balance={"door_open": "inverse_frequency"})
        return runner.model.state_dict()

    off, resident = weights("path_off", "off"), weights("path_resident", "resident")
    assert all(torch.equal(off[k], resident[k]) for k in off)
