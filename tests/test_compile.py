"""Issue 28, item 1: ``train(compile=...)`` compiles model, flow heads and masked loss as one step, and trains as
eager mode does (losses, metrics, tuned thresholds, predictions), with a bounded number of compilations and no
graph break in our code.

The fast tests compile with the ``aot_eager`` backend: the very graphs (dynamo's forward graph, AOTAutograd's
backward graph, the same guards and recompilations) run by eager kernels, in seconds. The ``slow`` test repeats the
comparison with the real ``inductor`` backend (generated C++ kernels; about a minute on a 2-core CPU).
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch._dynamo
from catalyst import dl
from torch._dynamo.utils import counters

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.callbacks.criterion import STEP_LOSS_ROW_KEY, STEP_TERMS_KEY, FlowCriterionCallback
from dnn_cool_catalyst.callbacks import nan_guard
from dnn_cool_catalyst.callbacks.nan_guard import STEP_LOGITS_SUM_KEY
from dnn_cool_catalyst.errors import NonFiniteError, RunnerError
from dnn_cool_catalyst.graph.batch import ELEMENT_LOSSES_KEY, GROUND_TRUTH_MASKS_KEY, output_logits
from dnn_cool_catalyst.training import compiled_step

TYPES = dict(flag="binary", kind="category", tags="multilabel", score="continuous", amount="regression",
             tokens="tokens")
EPOCHS = 3


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Every task type, under nested conditions: flag gates a sub-flow (kind, tags | kind == "cat", tokens) and
    score; amount is asked where flag is false."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    df = pd.DataFrame({f"f{i}": x[:, i] for i in range(4)})
    a = x[:, 0] > 0
    df["flag"] = a.astype(float)
    df["kind"] = np.where(a, np.array(["cat", "dog", "owl"])[np.digitize(x[:, 1], [-0.5, 0.5])], None)
    df["tags"] = [", ".join(t for t, on in zip("abc", row) if on) if ok else None
                  for row, ok in zip(x[:, 1:4] > 0, a)]
    df["score"] = np.where(a, 1 / (1 + np.exp(-x[:, 2])), np.nan)
    df["amount"] = np.where(~a, 3 * x[:, 3] + 1, np.nan)
    df["tokens"] = [list(np.abs(row * 2).astype(int) % 3) if ok else np.nan for row, ok in zip(x[:, :3], a)]
    return df


class SequenceModel(torch.nn.Module):
    """A trunk giving per-row features and, for the token task, per-position features (N, 3, width)."""

    def __init__(self, heads, length: int = 3, width: int = 16):
        super().__init__()
        self.trunk = torch.nn.Linear(4, width)
        self.pos = torch.nn.Parameter(torch.randn(length, width))
        self.flow = heads

    def forward(self, inputs):
        h = torch.relu(self.trunk(torch.stack([inputs[f"f{i}"] for i in range(4)], 1)))
        return self.flow({"features": h, "seq": h[:, None, :] + self.pos})


def all_types_runner(project_dir, loss_weights="uncertainty", name="exp"):
    converters = Converters()
    converters.type.type_mapping.update(TYPES)
    project = Project(frame(), [f"f{i}" for i in range(4)], list(TYPES), converters=converters,
                      project_dir=str(project_dir))

    @project.add_flow
    def animal(flow, x, out):
        out += flow.kind(x.features)
        out += flow.tags(x.features) | (out.kind == "cat")
        out += flow.tokens(x.seq)
        return out

    @project.add_flow
    def root(flow, x, out):
        out += flow.flag(x.features)
        out += flow.animal(x) | out.flag
        out += flow.score(x.features) | out.flag
        out += flow.amount(x.features) | ~out.flag
        return out

    torch.manual_seed(0)
    model = SequenceModel(project.get_full_flow().torch())
    # batch 64: 210 training rows end on a batch of 18, 45 validation rows are one batch of another size
    return project.runner(model, name, batch_size=64, seed=0, loss_weights=loss_weights)


class EpochRecord(dl.Callback):
    """Each epoch's loader metrics and the number of graphs compiled so far."""

    def __init__(self):
        super().__init__(order=dl.CallbackOrder.External)
        self.metrics, self.graphs = [], []

    def on_epoch_end(self, runner):
        self.metrics.append({loader: dict(values) for loader, values in runner.epoch_metrics.items()})
        self.graphs.append(counters["stats"]["unique_graphs"])


def train_and_tune(runner, compile):
    record = EpochRecord()
    runner.train(num_epochs=EPOCHS, early_stopping_patience=EPOCHS + 1, compile=compile, verbose=False,
                 callbacks={"record": record})
    graphs_after_train = counters["stats"]["unique_graphs"]
    runner.infer()
    with warnings.catch_warnings():  # kept thresholds of the small tags classes are said, not an issue here
        warnings.simplefilter("ignore")
        # thresholds moved wherever the data allow (no noise guard), so that their equality means something
        tuned = runner.tune(min_samples=5, min_per_class=1, alpha=None)
    return {"record": record, "tuned": tuned, "evaluation": runner.evaluate(loader="test"),
            "graphs_after_train": graphs_after_train, "graphs_after_infer": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values())}


def compare_runs(eager, compiled, rel=1e-4, abs_=1e-5):
    for before, after in zip(eager["record"].metrics, compiled["record"].metrics):
        for loader in ("train", "valid"):
            keys = [k for k in before[loader] if k not in ("lr", "momentum") and not k.startswith("_")]
            assert set(keys) <= set(after[loader])
            for key in keys:
                assert after[loader][key] == pytest.approx(before[loader][key], rel=rel, abs=abs_, nan_ok=True), \
                    (loader, key)
    assert _close_nested(compiled["tuned"], eager["tuned"], rel), (compiled["tuned"], eager["tuned"])
    moved = [v for params in eager["tuned"].values() for v in [params.get("threshold")]
             + list(params.get("thresholds", [])) if v is not None and v != 0.5]
    assert len(moved) >= 2, eager["tuned"]
    pd.testing.assert_frame_equal(compiled["evaluation"], eager["evaluation"], rtol=rel, atol=abs_)


def _close_nested(a, b, rel) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(_close_nested(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close_nested(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=rel, abs=1e-6)
    return a == b


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same flow trained eagerly and compiled (aot_eager), 3 epochs each, tuned and evaluated."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_step, "BACKEND", "aot_eager")
        torch._dynamo.reset()
        counters.clear()
        eager = train_and_tune(all_types_runner(tmp_path_factory.mktemp("eager")), compile=False)
        assert eager["graphs_after_infer"] == 0  # eager mode compiles nothing
        compiled_runner = all_types_runner(tmp_path_factory.mktemp("compiled"))
        compiled = train_and_tune(compiled_runner, compile=True)
        yield eager, compiled, compiled_runner


def test_compiled_training_equals_eager_on_every_task_type(runs):
    eager, compiled, runner = runs
    # every task type of the flow is in the comparison, and the losses are not trivially equal (they moved)
    assert {t.type_name for t in runner.flow.tasks.values()} == {
        "binary", "classification", "multilabel", "bounded_regression", "regression", "token_classification"}
    losses = [m["train"]["loss"] for m in compiled["record"].metrics]
    assert losses[-1] < losses[0]
    assert {"loss/animal.tokens", "loss/animal.tags", "loss/score", "loss/amount"} <= set(
        compiled["record"].metrics[-1]["valid"])
    compare_runs(eager, compiled)
    # the learned uncertainty weights trained through the compiled backward too
    assert compiled["record"].metrics[-1]["train"]["loss_weight/flag"] != 1.0
    with open(os.path.join(runner.run_dir, "run_config.json")) as f:
        assert json.load(f)["train"]["compile"] is True


def test_compilations_are_bounded(runs):
    _, compiled, _ = runs
    graphs = compiled["record"].graphs
    # one training graph and one validation graph, both dynamic in the batch size (the last training batch of 18
    # and the validation batch of 45 reuse them); nothing more in later epochs, nothing for infer (eager)
    assert graphs[0] == 2, graphs
    assert graphs == [graphs[0]] * EPOCHS, graphs
    assert compiled["graphs_after_infer"] == compiled["graphs_after_train"] == graphs[0]
    assert compiled["graph_breaks"] == 0


def test_no_graph_break_in_the_step(runs):
    _, _, runner = runs
    step = compiled_step.CompiledStep(runner.model, runner.flow_loss, "default")
    batch = next(iter(runner.split_loader("train")))
    runner.model.train()
    explained = torch._dynamo.explain(step._step)(batch["inputs"], batch["targets"], batch["available"])
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_step_leaves_what_the_eager_callbacks_compute(runs):
    """The compiled step's batch entries equal the eager criterion's: per-task losses, counts, total, masks, and on
    validation passes the element losses the best/worst samples read."""
    _, _, runner = runs
    batch = next(iter(runner.split_loader("valid")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_step, "BACKEND", "aot_eager")
        step = compiled_step.CompiledStep(runner.model, runner.flow_loss, "default")
        for training in (True, False):
            runner.model.train(training)
            with torch.set_grad_enabled(training):
                compiled = step(dict(batch))
                eager_batch = {**batch, "outputs": runner.model(batch["inputs"])}
                criterion = FlowCriterionCallback(runner.flow, loss_fn=runner.flow_loss)

                class Fake:
                    pass
                fake = Fake()
                fake.batch = eager_batch
                per_task, counts = criterion._terms(fake)
            loss_fn, step_per_task, step_counts, total = compiled[STEP_TERMS_KEY]
            assert loss_fn is runner.flow_loss
            assert total.requires_grad is training
            assert float(total.detach()) == pytest.approx(float(runner.flow_loss.combine(per_task, counts)), rel=1e-5)
            for name in per_task:
                assert float(step_per_task[name]) == pytest.approx(float(per_task[name]), rel=1e-5, abs=1e-7)
                assert int(step_counts[name]) == int(counts[name])
                assert torch.equal(compiled[GROUND_TRUTH_MASKS_KEY][1][name],
                                   eager_batch[GROUND_TRUTH_MASKS_KEY][1][name])
            # the criterion's row and the NaN guard's sum, built in the graph, detached
            names = list(per_task)
            n = len(batch["index"])
            eager_row = criterion._row([per_task[k] for k in names] + [counts[k] for k in names]
                                       + [runner.flow_loss.combine(per_task, counts).detach() * n])
            row = compiled[STEP_LOSS_ROW_KEY]
            assert row.dtype == torch.float64 and not row.requires_grad and row.shape == (2 * len(names) + 1,)
            torch.testing.assert_close(row, eager_row, rtol=1e-5, atol=1e-6)
            logits = output_logits(runner.flow.graph, eager_batch["outputs"], n)
            expected = float(torch.cat([v.reshape(n, -1) for v in logits.values()], 1).sum()) + float(total)
            assert not compiled[STEP_LOGITS_SUM_KEY].requires_grad
            assert float(compiled[STEP_LOGITS_SUM_KEY]) == pytest.approx(expected, rel=1e-4, abs=1e-3)
            if training:
                assert ELEMENT_LOSSES_KEY not in compiled
            else:
                elements = compiled[ELEMENT_LOSSES_KEY][1]
                assert set(elements) == set(eager_batch[ELEMENT_LOSSES_KEY][1]) and elements
                for name, value in eager_batch[ELEMENT_LOSSES_KEY][1].items():
                    torch.testing.assert_close(elements[name], value, rtol=1e-5, atol=1e-6)


def test_nan_guard_stops_a_compiled_run_at_the_bad_row(tmp_path, monkeypatch):
    """Under compile the guard reads the step's sum of logits instead of summing them itself; a NaN input row still
    stops training with the task and the dataset position named, as in eager mode."""
    monkeypatch.setattr(compiled_step, "BACKEND", "aot_eager")
    own_sums = []
    monkeypatch.setattr(nan_guard, "output_logits", lambda *a: own_sums.append(1) or output_logits(*a))
    runner = all_types_runner(tmp_path)
    runner.train(num_epochs=1, compile=True, verbose=False)
    assert own_sums == []  # every batch was known finite from the step's sum
    bad = int(runner.splits["train"][5])
    runner.dataset.data.inputs["f0"][bad] = float("nan")  # every logit of that row becomes NaN
    with pytest.raises(NonFiniteError, match=f"task 'flag' produced NaN or inf logits in loader 'train', "
                                             f"epoch 1, .*samples at dataset positions \\[{bad}\\]"):
        runner.train(num_epochs=1, compile=True, verbose=False)
    assert own_sums  # the bad batch was looked at task by task


@pytest.mark.parametrize("value", ["fast", 1, "yes", ["default"]])
def test_compile_value_is_checked_before_training(tmp_path, value):
    runner = all_types_runner(tmp_path)
    with pytest.raises(RunnerError, match=r"compile must be True, False or one of torch.compile's modes .*"
                                          r"'max-autotune'.*got " + repr(value).replace("[", r"\[")):
        runner.train(num_epochs=1, compile=value)
    assert not os.path.exists(os.path.join(runner.run_dir, "checkpoints"))
    assert compiled_step.check_compile(True) == "default" and compiled_step.check_compile(False) is None
    assert compiled_step.check_compile("reduce-overhead") == "reduce-overhead"


def test_step_that_cannot_compile_trains_eagerly_with_one_warning(tmp_path):
    """A backend that fails stands for any compiler failure: one warning naming the reason, and the run is the
    eager run."""
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler on this machine")

    results = {}
    for compile in (False, True):
        runner = all_types_runner(tmp_path / str(compile), loss_weights=None)
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            patch.setattr(compiled_step, "BACKEND", broken_backend)
            runner.train(num_epochs=1, compile=compile, verbose=False)
        ours = [str(w.message) for w in caught if "compile" in str(w.message)]
        results[compile] = (runner.epoch_metrics["valid"]["loss"], ours)
    assert results[False][1] == []
    (message,) = results[True][1]
    assert "could not be compiled" in message and "no C++ compiler on this machine" in message
    assert "eager mode" in message
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-6)


def test_model_error_under_compile_is_the_eager_error(tmp_path):
    """A model whose output does not fit the flow raises the flow's own error, not a compiler trace."""
    from dnn_cool_catalyst.tasks.base import TaskError

    runner = all_types_runner(tmp_path, loss_weights=None)
    runner._materialize()
    forward = runner.model.forward
    runner.model.forward = lambda inputs: {"logits": {k: v[:, :1] if v.dim() == 2 else v
                                                      for k, v in forward(inputs)["logits"].items()}}
    with pytest.MonkeyPatch.context() as patch, pytest.raises(TaskError, match="kind"):
        patch.setattr(compiled_step, "BACKEND", "aot_eager")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runner.train(num_epochs=1, compile=True, verbose=False)


def test_dataparallel_and_ddp_train_eagerly():
    from dnn_cool_catalyst.measures.losses import FlowLoss

    model = torch.nn.Linear(2, 2)
    flow_loss = FlowLoss.__new__(FlowLoss)  # only its type matters here
    assert "DataParallel" in compiled_step.eager_reason(torch.nn.DataParallel(model), flow_loss, False, 1)
    assert "DataParallel" in compiled_step.eager_reason(model, flow_loss, True, 1)
    assert "DDP" in compiled_step.eager_reason(model, flow_loss, False, 2)
    assert "not the flow's FlowLoss" in compiled_step.eager_reason(model, torch.nn.MSELoss(), False, 1)
    assert compiled_step.eager_reason(model, flow_loss, False, 1) is None


@pytest.mark.slow
def test_inductor_training_equals_eager(tmp_path):
    """The real backend (generated kernels): same losses, metrics, thresholds within float tolerance; two graphs."""
    torch._dynamo.reset()
    counters.clear()
    eager = train_and_tune(all_types_runner(tmp_path / "eager"), compile=False)
    compiled = train_and_tune(all_types_runner(tmp_path / "compiled"), compile=True)
    compare_runs(eager, compiled, rel=1e-3, abs_=1e-4)
    assert compiled["record"].graphs == [2] * EPOCHS
    assert compiled["graph_breaks"] == 0


def test_compile_is_a_config_key(tmp_path, monkeypatch):
    """``compile`` reaches train() from a config stage (checked against train's signature) and is recorded."""
    from dnn_cool_catalyst.config import ConfigError, run_config

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tabular = os.path.join(repo, "configs", "tabular.yml")
    monkeypatch.chdir(repo)  # the config's CSV and flow paths are relative to the repository
    monkeypatch.setattr(compiled_step, "BACKEND", "aot_eager")
    import yaml

    def config(stage):
        path = tmp_path / f"overlay{len(stage)}.yml"
        path.write_text(yaml.safe_dump({"project": {"project_dir": str(tmp_path / "proj")}, "run": [stage]}))
        return str(path)

    with pytest.raises(ConfigError, match="compiled"):  # a misspelt key is refused before anything is built
        run_config([tabular, config({"_call_": "train", "num_epochs": 1, "compiled": True})], echo=None)
    with pytest.raises(RunnerError, match="compile must be True, False"):
        run_config([tabular, config({"_call_": "train", "num_epochs": 1, "compile": "fastest"})], echo=None)
    counters.clear()
    run_config([tabular, config({"_call_": "train", "num_epochs": 1, "compile": True, "verbose": False})],
               echo=None)
    with open(tmp_path / "proj" / "numbers_mlp" / "run_config.json") as f:
        assert json.load(f)["train"]["compile"] is True
    assert counters["stats"]["unique_graphs"] >= 1


def test_a_new_model_of_the_same_flow_reuses_the_graphs(runs):
    """cross_validate's folds (a new model of the same architecture and flow each) compile nothing more: the model
    is an argument of the compiled function, guarded by structure, not identity."""
    _, _, runner = runs
    batch = next(iter(runner.split_loader("train")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_step, "BACKEND", "aot_eager")
        before = None
        for k in range(3):
            torch.manual_seed(k)
            model = SequenceModel(runner.flow.torch()) if k else runner.model
            with torch.no_grad():  # lazy heads get their shapes
                model.eval()
                model(batch["inputs"])
            model.train()
            step = compiled_step.CompiledStep(model, runner.flow_loss, "default")
            total = step(dict(batch))[STEP_TERMS_KEY][3]
            total.backward()
            assert model.trunk.weight.grad is not None
            if k == 0:  # the graph for this backend and mode exists now (earlier tests may have used others)
                before = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == before
