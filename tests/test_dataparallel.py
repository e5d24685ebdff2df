"""DataParallel memory balancing, checked on CPU by simulating replicas on uneven chunks."""
import os

import pytest
import torch
from torch import nn

from dnn_cool_catalyst import BinaryTask, ClassificationTask, MultilabelTask, RegressionTask, TaskFlow
from dnn_cool_catalyst.parallel import REDUCTION_KEY, balanced_forward
from dnn_cool_catalyst.parallel.replicas import combine_replicas, replica_reduction


def flow_and_batch(n=8, seed=0):
    """Binary gate → classification and regression below it, plus a multilabel task; some labels missing."""
    tasks = [BinaryTask("gate", 4), ClassificationTask("kind", 3, in_features=4), RegressionTask("size", 4),
             MultilabelTask("tags", 3, in_features=4)]

    def flow_fn(flow, x, out):
        out += flow.gate(x.features)
        out += flow.kind(x.features) | out.gate
        out += flow.size(x.features) | (out.kind == 2)
        out += flow.tags(x.features)
        return out

    flow = TaskFlow.from_function(flow_fn, tasks)
    g = torch.Generator().manual_seed(seed)
    gate = torch.tensor([1, 0, 0, 0, 0, 1, 1, 0], dtype=torch.float32)[:n]
    kind = torch.tensor([2, 0, 1, 2, 0, 2, 1, 2])[:n]
    batch = {
        "inputs": {"features": torch.randn(n, 4, generator=g)},
        "targets": {"gate": gate, "kind": kind, "size": torch.randn(n, generator=g),
                    "tags": (torch.rand(n, 3, generator=g) > 0.5).float()},
        "available": {"gate": torch.ones(n, dtype=torch.bool), "kind": torch.ones(n, dtype=torch.bool),
                      "size": torch.ones(n, dtype=torch.bool), "tags": torch.rand(n, 3, generator=g) > 0.3},
        "index": torch.arange(100, 100 + n),
    }
    batch["available"]["gate"][1] = False
    return flow, batch


class Model(nn.Module):
    def __init__(self, flow):
        super().__init__()
        self.trunk = nn.Linear(4, 4)
        self.flow = flow.torch()

    def forward(self, inputs):
        return self.flow({"features": torch.tanh(self.trunk(inputs["features"]))})


def split_rows(value, sizes):
    if isinstance(value, torch.Tensor):
        return list(torch.split(value, sizes))
    if isinstance(value, dict):
        parts = {k: split_rows(v, sizes) for k, v in value.items()}
        return [{k: parts[k][i] for k in value} for i in range(len(sizes))]
    return [value] * len(sizes)


def cat_rows(outputs):
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs)
    return {k: cat_rows([o[k] for o in outputs]) for k in first}


class SimulatedDataParallel(nn.DataParallel):
    """``nn.DataParallel`` with its four hooks done on the CPU: uneven chunks of ``sizes`` rows, every replica
    the module itself, replicas run one after the other, gather = concatenation along dim 0 (what
    ``torch.nn.parallel.gather`` does on GPUs)."""

    def __init__(self, module, sizes):
        super().__init__(module)  # without GPUs DataParallel keeps the module and no device ids
        # With a GPU, DataParallel has just moved the module there: the simulation runs on the CPU on any machine
        # (replicas, chunks and the reference computed without DataParallel all on one device).
        module.to("cpu")
        self.src_device_obj = torch.device("cpu")
        self.sizes, self.device_ids, self.output_device = list(sizes), list(range(len(sizes))), "cpu"
        self.calls = []

    def scatter(self, inputs, kwargs, device_ids):
        (batch,) = inputs
        return [(chunk,) for chunk in split_rows(batch, self.sizes)], [{} for _ in self.sizes]

    def replicate(self, module, device_ids):
        return [module] * len(device_ids)

    def parallel_apply(self, replicas, inputs, kwargs):
        self.calls.append([int(i[0]["index"].shape[0]) for i in inputs])
        return [replica(*i, **k) for replica, i, k in zip(replicas, inputs, kwargs)]

    def gather(self, outputs, output_device):
        return cat_rows(outputs)


def single_device(flow, model, batch):
    outputs = model(batch["inputs"])
    total, per_task, counts = flow.get_loss().compute(outputs, batch, with_counts=True)
    metrics = flow.get_metrics()
    metrics.update(outputs, batch)
    metrics.flush()  # the per-task states are read directly below
    return total, per_task, counts, metrics, flow.get_per_sample_loss()(outputs, batch)


@pytest.mark.parametrize("sizes", [[3, 3, 2], [5, 2, 1], [1, 7], [1, 1, 1, 1, 1, 1, 1, 1]])
def test_reduction_on_uneven_chunks_equals_one_device(sizes):
    flow, batch = flow_and_batch()
    torch.manual_seed(0)
    model = Model(flow)
    total, per_task, counts, metrics, per_sample = single_device(flow, model, batch)
    expected_grads = torch.autograd.grad(total, list(model.parameters()))

    dp = SimulatedDataParallel(model, sizes)
    reduction = balanced_forward(dp, batch, flow.graph)
    assert dp.calls == [sizes]
    loss_fn = flow.get_loss()
    balanced_total = loss_fn.combine(reduction.losses)
    torch.testing.assert_close(balanced_total, total, atol=1e-6, rtol=1e-6)
    for name in flow.tasks:
        torch.testing.assert_close(reduction.losses[name].detach(), per_task[name], atol=1e-6, rtol=1e-6)
        assert float(reduction.counts[name]) == float(counts[name])
        m = metrics.metrics[name]
        torch.testing.assert_close(reduction.stats[name], m.state)
        assert int(reduction.samples[name]) == m.num_samples
        # per-sample losses: same rows, same global dataset indices
        valid = reduction.per_sample_valid[name]
        torch.testing.assert_close(reduction.per_sample[name][valid], per_sample[name]["loss"])
        assert reduction.index[valid].tolist() == per_sample[name]["index"].tolist()
        assert not bool(reduction.nonfinite[name])
    grads = torch.autograd.grad(balanced_total, list(model.parameters()))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_a_chunk_without_any_valid_sample_for_a_task_adds_nothing():
    flow, batch = flow_and_batch()
    # gate holds only on rows 0, 5, 6: a [5, 3] split leaves "kind" one valid row in chunk 0 and two in chunk 1,
    # and "size" (kind == 2 under gate) only row 0 and 5; rows 1..4 alone would have none of either.
    model = Model(flow)
    chunks = split_rows(batch, [1, 4, 3])
    per_chunk = [replica_reduction(flow.graph, model(c["inputs"]), c) for c in chunks]
    assert [float(r["count"]["kind"]) for r in per_chunk] == [1.0, 0.0, 2.0]
    assert float(per_chunk[1]["loss"]["kind"].detach()) == 0.0  # the empty chunk's mean is 0, not NaN
    combined = combine_replicas(cat_rows(per_chunk))
    total, per_task, _, _, _ = single_device(flow, model, batch)
    torch.testing.assert_close(combined.losses["kind"].detach(), per_task["kind"])

    # a task with no valid sample anywhere: loss 0, no NaN, no gradient
    for key in ("gate", "kind", "size"):
        batch["available"][key][:] = False
    per_chunk = [replica_reduction(flow.graph, model(c["inputs"]), c) for c in split_rows(batch, [5, 3])]
    combined = combine_replicas(cat_rows(per_chunk))
    assert float(combined.losses["size"]) == 0.0 and float(combined.counts["size"]) == 0.0
    grads = torch.autograd.grad(combined.losses["size"], list(model.flow.heads["size"].parameters()),
                                allow_unused=True)
    assert all(g is None or not bool(g.any()) for g in grads)


def test_runner_with_balancing_feeds_the_callbacks_the_same_values(tmp_path):
    """The runner's handle_batch + the criterion and metric callbacks, balanced on 3 simulated replicas vs. plain."""
    from types import SimpleNamespace

    from dnn_cool_catalyst.callbacks import FlowCriterionCallback, FlowMetricsCallback
    from dnn_cool_catalyst.interpretation.callback import InterpretationCallback
    from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner

    flow, batch = flow_and_batch()
    torch.manual_seed(0)
    model = Model(flow)
    results = []
    for balance in (False, True):
        runner = DnnCoolSupervisedRunner(model, flow, run_dir=tmp_path / f"run{balance}", dataset=list(range(8)),
                                         balance_dataparallel_memory=balance)
        runner.engine = SimpleNamespace(device=torch.device("cpu"), mixed_precision="no")
        runner.model = SimulatedDataParallel(model, [4, 3, 1]) if balance else model
        runner.batch_metrics, runner.loader_metrics, runner.batch_size = {}, {}, 8
        runner.handle_batch(batch)
        assert (REDUCTION_KEY in runner.batch) == balance and ("outputs" in runner.batch) != balance
        criterion, metrics = FlowCriterionCallback(flow), FlowMetricsCallback(flow)
        for callback in (criterion, metrics):
            callback.on_loader_start(runner)
            callback.on_batch_end(runner)
            callback.on_loader_end(runner)
        interpretation = InterpretationCallback(flow, loaders=("valid",))
        runner.loader_key = "valid"
        interpretation.on_loader_start(runner)
        interpretation.on_batch_end(runner)
        per_sample = interpretation.collector.finish()
        loss = runner.batch_metrics["loss"]
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((float(loss), dict(runner.loader_metrics), grads, per_sample))
    (loss_a, logged_a, grads_a, samples_a), (loss_b, logged_b, grads_b, samples_b) = results
    assert samples_a.keys() == samples_b.keys() == {"gate", "kind", "size", "tags", "overall"}
    for key, (losses, index) in samples_a.items():
        assert samples_b[key][1].tolist() == index.tolist(), key
        assert samples_b[key][0] == pytest.approx(losses, abs=1e-6), key
    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    assert logged_b.keys() == logged_a.keys() and len(logged_a) > 10
    for key, value in logged_a.items():
        assert logged_b[key] == pytest.approx(value, abs=1e-6), key
    for got, want in zip(grads_b, grads_a):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_nan_guard_names_the_task_under_balancing(tmp_path):
    from types import SimpleNamespace

    from dnn_cool_catalyst.callbacks.nan_guard import NanGuardCallback, NonFiniteError
    from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner

    flow, batch = flow_and_batch()
    model = Model(flow)
    with torch.no_grad():
        model.flow.heads["kind"].weight.fill_(float("nan"))
    runner = DnnCoolSupervisedRunner(model, flow, run_dir=tmp_path / "run", dataset=list(range(8)),
                                     balance_dataparallel_memory=True)
    runner.engine = SimpleNamespace(device=torch.device("cpu"), mixed_precision="no")
    runner.model = SimulatedDataParallel(model, [4, 3, 1])
    runner.batch_metrics, runner.loader_metrics, runner.batch_size = {}, {}, 8
    runner.handle_batch(batch)
    runner.batch_metrics["loss"] = runner.batch[REDUCTION_KEY].losses["gate"]  # finite: only the task flag tells
    runner.loader_key, runner.epoch_step, runner.loader_batch_step, runner.loader_batch_len = "train", 1, 1, 1
    runner.loader_batch_size = 8
    guard = NanGuardCallback(flow)
    guard.on_loader_start(runner)
    guard.on_batch_end(runner)
    with pytest.raises(NonFiniteError, match="task 'kind' produced NaN or inf logits .* batch 1 of 1"):
        guard.on_loader_end(runner)


def test_flag_is_a_no_op_on_one_device(tmp_path):
    from dnn_cool_catalyst import Project
    from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

    weights = []
    for balance in (False, True):
        torch.manual_seed(0)
        df = numbers_frame(120, seed=0)
        project = Project(df, "number", list(df.columns[1:]), project_dir=tmp_path / str(balance))
        runner = project.runner(numbers_model(define_flows(project), hidden=8), "exp", batch_size=32,
                                balance_dataparallel_memory=balance)
        runner.train(num_epochs=1)
        state = torch.load(os.path.join(runner.checkpoint_dir, "runner.last.pth"), weights_only=True)
        weights.append(state["model_state_dict"])
    for key, value in weights[0].items():
        assert torch.equal(weights[1][key], value), key
