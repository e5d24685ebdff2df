"""Issue 13, point 2: loss balancing: validated fixed weights, learned uncertainty weights (trained, checkpointed,
restored on resume) and the default."""
import math
import os

import pytest
import torch
from catalyst.core.callback import Callback, CallbackOrder

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.callbacks import FlowCriterionCallback
from dnn_cool_catalyst.run.checkpoints import read_checkpoint
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
from dnn_cool_catalyst.tasks.base import TaskError
from helpers import numbers_batch, numbers_flows


def make_runner(project_dir, name="run", **kwargs):
    torch.manual_seed(0)
    df = numbers_frame(200, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=8), name, batch_size=32, **kwargs)


def outputs_and_batch():
    flow = numbers_flows()[0]
    torch.manual_seed(0)
    module = flow.torch()
    batch = numbers_batch()
    return flow, module({"features": batch["inputs"]["features"]}), batch


@pytest.mark.parametrize("weights, pattern", [
    ({"is_odd": 2.0}, r"unknown tasks \['is_odd'\]; tasks are \['is_interesting', 'is_even'"),
    ({"is_even": -1.0}, r"loss weight of task 'is_even' must be a finite number >= 0, got -1.0"),
    ({"is_even": float("nan")}, r"task 'is_even' must be a finite number >= 0, got nan"),
    ({"is_even": float("inf")}, r"task 'is_even' must be a finite number >= 0, got inf"),
    ({"is_even": True}, r"task 'is_even' must be a finite number >= 0, got True"),
    ({"is_even": "2"}, r"task 'is_even' must be a finite number >= 0, got '2'"),
    ("uncertain", r"loss_weights must be a dict of task weights, None or 'uncertainty', got 'uncertain'"),
    ([1.0, 2.0], r"loss_weights must be a dict .* got a list"),
])
def test_bad_loss_weights_are_refused_when_the_runner_is_built(tmp_path, weights, pattern):
    with pytest.raises(RunnerError, match=pattern):
        make_runner(tmp_path, loss_weights=weights)
    flow = numbers_flows()[0]
    with pytest.raises(TaskError, match=pattern):
        flow.get_loss(weights)
    with pytest.raises(TaskError, match=pattern):
        FlowCriterionCallback(flow, weights=weights)


def test_fixed_weights_by_name_or_path_scale_each_task_loss():
    flow, outputs, batch = outputs_and_batch()
    per_task = flow.get_loss().compute(outputs, batch)[1]
    by_name = flow.get_loss({"is_even": 3.0, "is_interesting": 0.0})(outputs, batch)
    by_path = flow.get_loss({"numerical_flow.is_even": 3.0, "is_interesting": 0})(outputs, batch)
    expected = sum(loss * {"is_even": 3.0, "is_interesting": 0.0}.get(name, 1.0) for name, loss in per_task.items())
    assert float(by_name) == pytest.approx(float(expected))
    assert float(by_path) == pytest.approx(float(expected))
    # The default (nothing set): every task weighs 1.
    assert float(flow.get_loss()(outputs, batch)) == pytest.approx(float(sum(per_task.values())))


def test_uncertainty_total_is_kendall_formula_and_skips_absent_tasks():
    flow, outputs, batch = outputs_and_batch()
    loss_fn = flow.get_loss("uncertainty")
    names = list(flow.tasks)
    assert [n for n, _ in loss_fn.named_parameters()] == ["log_vars"]
    with torch.no_grad():
        loss_fn.log_vars.copy_(torch.linspace(-1.0, 1.0, len(names)))
    per_task, counts = loss_fn.terms(outputs, batch)
    total = loss_fn.combine(per_task, counts)
    expected = sum(math.exp(-float(s)) * float(per_task[n]) + float(s) * (int(counts[n]) > 0)
                   for n, s in zip(names, loss_fn.log_vars))
    assert float(total) == pytest.approx(expected, rel=1e-6)
    # A task with no valid label in the batch adds neither loss nor s_t, so s_t gets no gradient from it.
    batch["available"]["multiple_three"][:] = False
    total = loss_fn(outputs, batch)
    total.backward()
    grad = loss_fn.log_vars.grad
    assert float(grad[names.index("multiple_three")]) == 0.0
    assert all(float(g) != 0.0 for n, g in zip(names, grad) if n != "multiple_three")


class RecordLogVars(Callback):
    """Records the criterion's log-variances at every epoch start (after a resume has restored them)."""

    def __init__(self):
        super().__init__(order=CallbackOrder.External)
        self.seen = []

    def on_epoch_start(self, runner):
        self.seen.append(runner.criterion.log_vars.detach().cpu().clone())


def test_uncertainty_weights_train_are_checkpointed_and_restored_on_resume(tmp_path):
    runner = make_runner(tmp_path, loss_weights="uncertainty")
    runner.train(num_epochs=2, lr=3e-2)
    learned = runner.flow_loss.log_vars.detach().clone()
    assert learned.abs().min() > 1e-4  # in the optimizer: they moved from 0
    last = read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.last.pth"))
    assert torch.equal(last["criterion_state_dict"]["log_vars"], learned)
    best = read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.best.pth"))
    assert "log_vars" in best["criterion_state_dict"]
    # The learned weights are logged per task for TensorBoard / the console.
    logged = runner.epoch_metrics["valid"]
    assert logged["loss_weight/numerical_flow.is_even"] == pytest.approx(
        math.exp(-float(learned[list(runner.flow.tasks).index("is_even")])))

    resumed = make_runner(tmp_path, loss_weights="uncertainty")  # a fresh process: log_vars start at 0
    assert float(resumed.flow_loss.log_vars.abs().sum()) == 0.0
    recorder = RecordLogVars()
    resumed.train(num_epochs=3, lr=3e-2, resume=True, callbacks={"record": recorder})
    assert len(recorder.seen) == 1  # only epoch 3 ran
    assert torch.equal(recorder.seen[0], learned)
    assert not torch.equal(resumed.flow_loss.log_vars.detach(), learned)  # and kept training


def test_an_optimizer_without_the_log_variances_is_warned_about(tmp_path):
    runner = make_runner(tmp_path, loss_weights="uncertainty")
    runner._materialize()
    optimizer = torch.optim.SGD(runner.model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="does not hold the learned log-variances"):
        runner.train(num_epochs=1, optimizer=optimizer)


def test_ddp_learns_the_same_uncertainty_weights_as_one_process(tmp_path):
    from catalyst import dl
    from dnn_cool_catalyst.training.engine import default_engine
    from test_ddp import free_port

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    runs = {}
    # Both on the CPU on any machine (gloo; cpu=True so that a one-GPU machine is not asked for cuda:1).
    for name, engine in (("single", default_engine("cpu")),
                         ("ddp", dl.DistributedDataParallelEngine(port=free_port(), world_size=2, num_node_workers=2,
                                                                  process_group_kwargs={"backend": "gloo"},
                                                                  cpu=True))):
        torch.manual_seed(0)
        df = numbers_frame(120, seed=0)
        project = Project(df, "number", list(df.columns[1:]), project_dir=tmp_path / name)
        flow = define_flows(project)
        # batch 25 is odd: every global batch is split 13 + 12 and the second process pads one sample
        runner = project.runner(numbers_model(flow, hidden=8), "exp", batch_size=25, engine=engine,
                                loss_weights="uncertainty")
        runner.train(num_epochs=1, lr=3e-2)
        runs[name] = read_checkpoint(os.path.join(runner.checkpoint_dir, "runner.last.pth"))
    single, ddp = (runs[k]["criterion_state_dict"]["log_vars"] for k in ("single", "ddp"))
    assert single.abs().min() > 1e-4
    torch.testing.assert_close(ddp, single, atol=1e-5, rtol=0)
