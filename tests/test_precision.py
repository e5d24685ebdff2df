"""Mixed precision on the CPU, float32 losses and float64 metric states, and no host-device sync in the step."""
import contextlib
import math

import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.training.engine import default_engine
from dnn_cool_catalyst.callbacks.criterion import FlowCriterionCallback
from dnn_cool_catalyst.callbacks.nan_guard import NanGuardCallback
from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

from helpers import numbers_batch, numbers_flows


def build_runner(project_dir, **kwargs):
    torch.manual_seed(0)
    df = numbers_frame(160, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    return project.runner(numbers_model(define_flows(project), hidden=16), "exp", batch_size=32, **kwargs)


@pytest.fixture
def restore_fp32_engine():
    yield
    default_engine("cpu")  # accelerate's process-wide state back to fp32 for the other tests


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_cpu_run_trains_without_nan(tmp_path, restore_fp32_engine, precision, dtype):
    runner = build_runner(tmp_path, engine=default_engine("cpu", mixed_precision=precision))
    runner._materialize()  # lazy heads get their shapes in a plain fp32 pass, before training
    seen = set()
    runner.model.trunk[0].register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    runner.train(num_epochs=2, lr=3e-3)
    assert seen == {dtype}  # the model really ran in reduced precision (fp16 too, which accelerate skips on CPU)
    for epoch in runner.experiment_metrics.values():
        for loader in ("train", "valid"):
            # precision/recall/F1 are NaN where undefined (nothing predicted or labelled positive): not a NaN loss
            defined = {k: v for k, v in epoch[loader].items() if not k.endswith(("/precision", "/recall", "/f1"))}
            assert all(math.isfinite(v) for v in defined.values()), epoch[loader]
    assert runner.experiment_metrics[2]["train"]["loss"] < runner.experiment_metrics[1]["train"]["loss"]
    assert runner.batch_metrics["loss"].dtype == torch.float32
    for metric in runner.callbacks["_metrics"].metrics.metrics.values():
        assert metric.state.dtype == torch.float64
    assert all(bool(torch.isfinite(p).all()) and p.dtype == torch.float32 for p in runner.model.parameters())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_and_metric_states_are_float32_or_wider_for_half_logits(dtype):
    flow, _ = numbers_flows()
    batch = numbers_batch(missing=[("is_even", 3)])
    logits = {name: torch.linspace(-3, 3, 8) * (i + 1) for i, name in enumerate(flow.tasks)}
    half = {name: value.to(dtype) for name, value in logits.items()}
    total, per_task = flow.get_loss().compute({"logits": half}, batch)
    expected_total, expected = flow.get_loss().compute({"logits": {k: v.float() for k, v in half.items()}}, batch)
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in per_task.values())
    assert float(total) == float(expected_total)  # computed on the upcast logits, not in half precision
    metrics = flow.get_metrics()
    metrics.update({"logits": half}, batch)
    metrics.flush()
    assert all(m.state.dtype == torch.float64 for m in metrics.metrics.values())
    per_sample = flow.get_per_sample_loss()({"logits": half}, batch)
    assert per_sample["overall"]["loss"].dtype == torch.float32


# ------------------------------------------------------------------------------------------------ host syncs
class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def forbid_host_syncs():
    """Fail on every way Python code makes the host wait for a device tensor: reading a value (item, float, int,
    bool, tolist, numpy), moving to the CPU, and boolean-mask indexing (its output size needs the mask's count)."""
    originals = {}

    def refuse(name):
        def method(self, *args, **kwargs):
            raise HostSync(f"Tensor.{name} in the training step")
        return method

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise HostSync("boolean-mask indexing in the training step")
        return originals["__getitem__"](self, index)

    names = ["item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "nonzero", "masked_select"]
    for name in names + ["__getitem__"]:
        originals[name] = getattr(torch.Tensor, name)
    try:
        for name in names:
            setattr(torch.Tensor, name, refuse(name))
        torch.Tensor.__getitem__ = getitem
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def test_the_guard_catches_syncs():
    x = torch.arange(4.0)
    for action in (lambda: x.sum().item(), lambda: float(x[0]), lambda: bool(x.any()), lambda: x[x > 1],
                   lambda: x.tolist(), lambda: x.nonzero()):
        with forbid_host_syncs(), pytest.raises(HostSync):
            action()
    with forbid_host_syncs():
        assert x[1:3].shape == (2,) and torch.where(x > 1, x, 0.0).shape == (4,)
    assert x[x > 1].tolist() == [2.0, 3.0]  # restored


def test_training_step_issues_no_host_sync(tmp_path, monkeypatch):
    """handle_batch and every dnn_cool_catalyst callback's batch events run under the guard on the train loader
    (Catalyst's backward and optimizer callbacks are not ours: they are left out)."""
    original_run_event = DnnCoolSupervisedRunner._run_event
    original_handle_batch = DnnCoolSupervisedRunner.handle_batch
    guarded = []

    def ours(callback):
        return type(callback).__module__.startswith("dnn_cool_catalyst")

    def run_event(self, event):
        if event not in ("on_batch_start", "on_batch_end") or not self.is_train_loader:
            return original_run_event(self, event)
        with forbid_host_syncs():
            if event == "on_batch_start":
                self.on_batch_start(self)
        for callback in self.callbacks.values():
            with forbid_host_syncs() if ours(callback) else contextlib.nullcontext():
                getattr(callback, event)(self)
            guarded.append(type(callback).__name__) if ours(callback) else None
        if event == "on_batch_end":
            self.on_batch_end(self)

    def handle_batch(self, batch):
        if not self.is_train_loader:
            return original_handle_batch(self, batch)
        with forbid_host_syncs():
            original_handle_batch(self, batch)
        guarded.append("handle_batch")

    monkeypatch.setattr(DnnCoolSupervisedRunner, "_run_event", run_event)
    monkeypatch.setattr(DnnCoolSupervisedRunner, "handle_batch", handle_batch)
    # The NaN guard reads one value per batch on the CPU only, where that waits for nothing: the CPU stands in for
    # a device here, so take the device path.
    monkeypatch.setattr(NanGuardCallback, "read_on_cpu", False)
    monkeypatch.setattr(FlowCriterionCallback, "read_on_cpu", False)
    runner = build_runner(tmp_path)
    runner.train(num_epochs=1)
    batches = len(runner.split_loader("train"))
    assert guarded.count("handle_batch") == batches
    assert guarded.count("FlowCriterionCallback") == guarded.count("FlowMetricsCallback") == 2 * batches
