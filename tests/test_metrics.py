import math
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, precision_score, recall_score

from dnn_cool_catalyst import (BinaryTask, ClassificationTask, MultilabelTask, RegressionTask, TaskFlow,
                               TokenClassificationTask)
from dnn_cool_catalyst.measures.metrics import TaskMetric


def batches(n_batches=5, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    for b in range(n_batches):
        size = 0 if b == 2 else n  # an empty batch in the middle
        yield (torch.randn(size, generator=g) * 2, (torch.rand(size, generator=g) > 0.5).float(),
               torch.rand(size, generator=g) > (1.0 if b == 3 else 0.3))  # batch 3: task empty


def test_binary_metrics_are_dataset_level_and_equal_sklearn():
    metric = TaskMetric(BinaryTask("a"))
    preds, targets = [], []
    for logits, target, mask in batches():
        metric.update(logits, target, mask)
        preds.append((torch.sigmoid(logits) >= 0.5)[mask].numpy())
        targets.append(target[mask].numpy())
    p, t = np.concatenate(preds), np.concatenate(targets)
    values = metric.compute()
    assert values["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert values["f1"] == pytest.approx(f1_score(t, p))
    assert values["precision"] == pytest.approx(precision_score(t, p))
    assert values["recall"] == pytest.approx(recall_score(t, p))
    assert metric.num_samples == len(t)


def test_classification_macro_metrics_and_top_k_equal_sklearn():
    task = ClassificationTask("c", 5, top_k=2)
    metric = TaskMetric(task)
    g = torch.Generator().manual_seed(1)
    all_logits, all_t = [], []
    for _ in range(4):
        logits = torch.randn(20, 5, generator=g)
        target = torch.randint(0, 4, (20,), generator=g)  # class 4 never a target
        mask = torch.rand(20, generator=g) > 0.2
        metric.update(logits, target, mask)
        all_logits.append(logits[mask])
        all_t.append(target[mask])
    logits, t = torch.cat(all_logits), torch.cat(all_t).numpy()
    p = logits.argmax(1).numpy()
    values = metric.compute()
    assert values["accuracy"] == pytest.approx(accuracy_score(t, p))
    for name, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert values[name] == pytest.approx(fn(t, p, average="macro", zero_division=0)), name
    top2 = (logits.topk(2, 1).indices == torch.as_tensor(t)[:, None]).any(1).float().mean().item()
    assert values["accuracy@2"] == pytest.approx(top2)


def test_multilabel_micro_metrics_over_available_labels():
    metric = TaskMetric(MultilabelTask("m", 3, thresholds=[0.5, 0.3, 0.7]))
    logits = torch.tensor([[1.0, -0.5, 0.5], [-1.0, -1.0, 1.0], [0.2, 0.0, -3.0]])
    target = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    avail = torch.tensor([[True, True, False], [True, True, True], [True, False, True]])
    metric.update(logits, target, avail)
    pred = (torch.sigmoid(logits) >= torch.tensor([0.5, 0.3, 0.7])).float()
    values = metric.compute()
    assert values["f1"] == pytest.approx(f1_score(target[avail].numpy(), pred[avail].numpy()))
    assert values["accuracy"] == pytest.approx(accuracy_score(target[avail].numpy(), pred[avail].numpy()))


def test_regression_metrics_and_states_merge_like_one_pass():
    a, b = TaskMetric(RegressionTask("r")), TaskMetric(RegressionTask("r"))
    whole = TaskMetric(RegressionTask("r"))
    pred = torch.tensor([1.0, -2.0, 3.0, 0.5, 9.0])
    target = torch.tensor([0.0, -2.5, 1.0, 0.5, 0.0])
    mask = torch.tensor([True, True, True, True, False])
    a.update(pred[:2], target[:2], mask[:2])
    b.update(pred[2:], target[2:], mask[2:])
    whole.update(pred, target, mask)
    a.merge(b.state, b.num_samples)  # what a cross-device reduction does
    assert a.compute() == pytest.approx(whole.compute())
    assert whole.compute()["mae"] == pytest.approx(mean_absolute_error(target[mask], pred[mask]))


def test_empty_metric_is_nan_not_zero():
    # Changed on purpose (issue 13, point 7): a metric over zero samples is NaN, not a fake 0.0.
    metric = TaskMetric(BinaryTask("a"))
    metric.update(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.bool))
    values = metric.compute()
    assert set(values) == {"accuracy", "f1", "precision", "recall"}
    assert all(math.isnan(v) for v in values.values())
    assert metric.num_samples == 0


def test_flow_metrics_use_ground_truth_gating_and_paths():
    from helpers import numbers_batch, numbers_flows

    flow, _ = numbers_flows()
    batch = numbers_batch()
    metrics = flow.get_metrics()
    logits = {k: (batch["targets"][k] * 2 - 1) * 5 for k in batch["targets"]}  # perfect predictions
    logits["multiple_three"] = -logits["multiple_three"]  # always wrong
    metrics.update({"logits": logits}, batch)
    values = metrics.compute()
    assert values["numerical_flow.is_even"]["accuracy"] == 1.0
    assert values["numerical_flow.multiple_three"]["accuracy"] == 0.0
    assert metrics.metrics["predict_positive"].num_samples == 2


def test_pending_batches_give_the_statistics_of_batch_by_batch_updates():
    """Flow metrics wait for several batches before computing statistics; the result must not depend on when
    they are computed (binary counts fused, classification, regression sums, an empty batch)."""
    from helpers import numbers_batch, numbers_flows

    flow, _ = numbers_flows()
    g = torch.Generator().manual_seed(3)
    batches = []
    for size in (8, 0, 8, 5):
        batch = numbers_batch(values=range(size), interesting=[int(v) for v in torch.rand(size, generator=g) > 0.5])
        logits = {k: torch.randn(size, generator=g) for k in batch["targets"]}
        batches.append(({"logits": logits}, batch))
    pending, eager = flow.get_metrics(), flow.get_metrics()
    eager.pending_bytes_limit = 0  # every update computes its statistics at once
    for outputs, batch in batches:
        pending.update(outputs, batch)
        eager.update(outputs, batch)
        assert not eager._pending
    assert len(pending._pending) == len(batches)
    for name in flow.tasks:
        assert pending.metrics[name].state is None  # nothing computed yet
    values = pending.compute()
    assert not pending._pending
    assert values == eager.compute()
    for name, metric in pending.metrics.items():
        assert torch.equal(metric.state, eager.metrics[name].state), name
        assert metric.num_samples == eager.metrics[name].num_samples


def test_pending_batches_that_do_not_stack_are_computed_one_at_a_time():
    # token tasks are padded per batch, so pending batches of different lengths cannot be concatenated
    def flow_fn(flow, x, out):
        out += flow.pos(x.features)
        return out

    flow = TaskFlow.from_function(flow_fn, [TokenClassificationTask("pos", 3)])
    gen = torch.Generator().manual_seed(0)

    def batch(length, n=4):
        logits = torch.randn(n, length, 3, generator=gen)
        target = torch.randint(0, 3, (n, length), generator=gen)
        available = torch.rand(n, length, generator=gen) > 0.3
        return {"logits": {"pos": logits}}, {"targets": {"pos": target}, "available": {"pos": available}}

    batches = [batch(5), batch(5), batch(7), batch(2)]
    pending, eager = flow.get_metrics(), flow.get_metrics()
    eager.pending_batches_limit = 1
    for outputs, labels in batches:
        pending.update(outputs, labels)
        eager.update(outputs, labels)
    assert len(pending._pending) == 4 and not eager._pending
    # Every JOIN_EVERY (8) batches the pending ones are joined; these do not join, so they are computed then.
    batches += [batch(length) for length in (3, 3, 3, 3, 4, 3)]
    for outputs, labels in batches[4:]:
        pending.update(outputs, labels)
        eager.update(outputs, labels)
    assert len(pending._pending) == 2 and pending.metrics["pos"].state is not None
    same_length = flow.get_metrics()
    for _ in range(9):
        same_length.update(*batch(4))
    assert len(same_length._pending) == 2 and same_length._pending[0]["pos"][0].shape == (32, 4, 3)
    values = pending.compute()
    assert not pending._pending and values == eager.compute()
    assert torch.equal(pending.metrics["pos"].state, eager.metrics["pos"].state)
    correct = sum(int(((o["logits"]["pos"].argmax(-1) == l["targets"]["pos"]) & l["available"]["pos"]).sum())
                  for o, l in batches)
    assert pending.metrics["pos"].state.tolist() == [correct, sum(int(l["available"]["pos"].sum()) for _, l in batches)]
    pending.reset()
    assert not pending._pending and pending.metrics["pos"].state is None
