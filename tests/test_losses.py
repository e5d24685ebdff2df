import math

import pytest
import torch
import torch.nn.functional as F

from dnn_cool_catalyst import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask,
                               RegressionTask, TaskError, TaskFlow, TokenClassificationTask)
from helpers import numbers_batch, numbers_flows


def test_loss_is_sum_of_masked_means_and_ignores_masked_rows():
    flow, _ = numbers_flows()
    batch = numbers_batch()
    logits = {k: torch.linspace(-2, 2, 8) + i for i, k in enumerate(batch["targets"])}
    masks = flow.get_masks(batch=batch)
    expected = sum(F.binary_cross_entropy_with_logits(logits[k][masks[k]], batch["targets"][k][masks[k]])
                   for k in logits)
    total, per_task = flow.get_loss().compute({"logits": logits}, batch)
    assert torch.allclose(total, expected)
    # Garbage in masked-out targets (even NaN) changes nothing.
    batch["targets"]["multiple_three"][:6] = float("nan")
    assert torch.allclose(flow.get_loss()({"logits": logits}, batch), expected)
    assert set(per_task) == set(logits)


def test_empty_task_contributes_exact_zero_and_no_gradient():
    flow, _ = numbers_flows()
    batch = numbers_batch(missing=[("multiple_three", 6)])
    logits = {k: torch.randn(8, requires_grad=True) for k in batch["targets"]}
    total, per_task = flow.get_loss().compute({"logits": logits}, batch)
    assert per_task["multiple_three"].item() == 0.0
    total.backward()
    assert torch.equal(logits["multiple_three"].grad, torch.zeros(8))
    assert logits["is_interesting"].grad.abs().sum() > 0


def test_all_empty_batch_gives_zero_loss_that_backpropagates():
    flow, _ = numbers_flows()
    module = flow.torch()
    batch = numbers_batch()
    for k in batch["available"]:
        batch["available"][k][:] = False
    loss = flow.get_loss()(module(batch["inputs"]), batch)
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    loss.backward()
    assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)) for p in module.parameters())


def test_weights_scale_each_task():
    flow, _ = numbers_flows()
    batch = numbers_batch()
    logits = {"logits": {k: torch.randn(8) for k in batch["targets"]}}
    _, per_task = flow.get_loss().compute(logits, batch)
    weighted = flow.get_loss(weights={"is_even": 3.0, "is_interesting": 0.0})(logits, batch)
    expected = 3 * per_task["is_even"] + per_task["predict_positive"] + per_task["multiple_three"]
    assert torch.allclose(weighted, expected)
    with pytest.raises(TaskError, match="unknown tasks \\['typo'\\]"):
        flow.get_loss(weights={"typo": 1.0})


def test_per_sample_loss_reports_valid_samples_with_dataset_indices():
    flow, _ = numbers_flows()
    batch = numbers_batch()
    batch["index"] = torch.arange(100, 108)
    logits = {k: torch.linspace(-1, 1, 8) for k in batch["targets"]}
    result = flow.get_per_sample_loss()({"logits": logits}, batch)
    assert result["multiple_three"]["index"].tolist() == [106]
    assert result["predict_positive"]["index"].tolist() == [100, 106]
    expected = F.binary_cross_entropy_with_logits(logits["is_even"], batch["targets"]["is_even"], reduction="none")
    assert torch.allclose(result["is_even"]["loss"], expected[[0, 1, 5, 6, 7]])
    overall = sum(F.binary_cross_entropy_with_logits(logits[k], batch["targets"][k], reduction="none")
                  * flow.get_masks(batch=batch)[k] for k in logits)
    assert torch.allclose(result["overall"]["loss"], overall)
    assert result["overall"]["index"].tolist() == list(range(100, 108))


def test_regression_negative_targets_are_labels_and_bounded_uses_activation():
    def f(flow, x, out):
        out += flow.temp(x.f)
        out += flow.box(x.f)

    flow = TaskFlow.from_function(f, [RegressionTask("temp", 1), BoundedRegressionTask("box", 0, 64, 1)])
    batch = {"targets": {"temp": torch.tensor([-3.2, 1.0]), "box": torch.tensor([0.25, 0.0])},
             "available": {"temp": torch.tensor([True, True]), "box": torch.tensor([True, False])}}
    logits = {"temp": torch.tensor([0.0, 1.0]), "box": torch.tensor([0.0, 3.0])}
    _, per_task = flow.get_loss().compute(logits, batch)
    assert per_task["temp"].item() == pytest.approx(3.2 ** 2 / 2)
    assert per_task["box"].item() == pytest.approx((0.5 - 0.25) ** 2)
    assert flow.get_decoder()(logits)["box"][0].item() == pytest.approx(32.0)


def test_token_classification_ignores_padding():
    task = TokenClassificationTask("tags", 3, in_features=4)

    def f(flow, x, out):
        out += flow.tags(x.tokens)

    flow = TaskFlow.from_function(f, [task])
    feats = torch.randn(2, 5, 4)
    out = flow.torch()({"tokens": feats})
    assert out["logits"]["tags"].shape == (2, 5, 3)
    target = torch.tensor([[0, 1, 2, 0, 0], [2, 2, 0, 0, 0]])
    avail = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    batch = {"targets": {"tags": target}, "available": {"tags": avail}}
    loss = flow.get_loss()(out, batch)
    expected = F.cross_entropy(out["logits"]["tags"][avail], target[avail])
    assert torch.allclose(loss, expected)
    per_sample = flow.get_per_sample_loss()(out, batch)["tags"]["loss"]
    lt = F.cross_entropy(out["logits"]["tags"].transpose(1, 2), target, reduction="none")
    assert torch.allclose(per_sample, torch.stack([lt[0, :3].mean(), lt[1, :2].mean()]))


def test_missing_output_key_and_wrong_logits_shape_name_the_task():
    flow, _ = numbers_flows()
    batch = numbers_batch()
    logits = {k: torch.zeros(8) for k in batch["targets"] if k != "predict_positive"}
    with pytest.raises(TaskError, match="no logits for task 'numerical_flow.predict_positive'"):
        flow.get_loss()({"logits": logits}, batch)
    logits["predict_positive"] = torch.zeros(8, 3)
    with pytest.raises(TaskError, match="binary task 'predict_positive': expected logits of shape \\(8,\\)"):
        flow.get_loss()({"logits": logits}, batch)

    shirt = ClassificationTask("shirt", 4, in_features=2)
    cflow = TaskFlow.from_function(lambda flow, x, out: out.__iadd__(flow.shirt(x.f)), [shirt], name="c")
    with pytest.raises(TaskError, match="expected logits of shape \\(2, 4\\), got \\(2, 3\\)"):
        cflow.get_loss()({"shirt": torch.zeros(2, 3)},
                         {"targets": {"shirt": torch.zeros(2)}, "available": {"shirt": torch.ones(2, dtype=bool)}})


def test_module_reports_missing_feature_key():
    flow, _ = numbers_flows()
    with pytest.raises(TaskError, match="reads x.features.*no 'features' \\(got \\['other'\\]\\)"):
        flow.torch()({"other": torch.zeros(2, 1)})


def test_multilabel_loss_uses_per_class_availability():
    task = MultilabelTask("traits", 2, in_features=1)
    flow = TaskFlow.from_function(lambda flow, x, out: out.__iadd__(flow.traits(x.f)), [task], name="m")
    logits = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    avail = torch.tensor([[True, False], [True, True]])
    loss = flow.get_loss()({"traits": logits}, {"targets": {"traits": target}, "available": {"traits": avail}})
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits[avail], target[avail]))
