"""tabular_model(kind="tabm"): the member axis through every task type and a conditional flow, the member-averaged
loss, training-split statistics, and a trained run whose infer / evaluate / predict / export look exactly like the
MLP's. Skipped without the ``tabm`` extra."""
import json
import warnings

import pytest
import torch

pytest.importorskip("tabm", reason="the tabm extra is not installed: pip install 'dnn_cool_catalyst[tabm]'")
pytest.importorskip("rtdl_num_embeddings", reason="the tabm extra is not installed")

from dnn_cool_catalyst import Project  # noqa: E402
from dnn_cool_catalyst.data import Converters  # noqa: E402
from dnn_cool_catalyst.flow import TaskFlow  # noqa: E402
from dnn_cool_catalyst.graph.members import average_members  # noqa: E402
from dnn_cool_catalyst.tabular import tabular_model  # noqa: E402
from dnn_cool_catalyst.tabular.tabm import TabularTabM  # noqa: E402
from dnn_cool_catalyst.tasks import BinaryTask, Task, TaskError  # noqa: E402

from export_kit import INPUTS, OUTPUTS, flows, frame, raw_rows, reference, run_deployed, trained_run  # noqa: E402

K = 4


def project_of(tmp_path, df=None):
    converters = Converters(missing_inputs="indicator")
    converters.type.type_mapping.update({"a": "numeric", "b": "numeric", "city": "categorical",
                                         "camera_blocked": "binary", "door_open": "binary", "level": "category",
                                         "door_locked": "binary", "temperature": "regression",
                                         "face": "multilabel"})
    project = Project(frame() if df is None else df, input_col=INPUTS, output_col=OUTPUTS, converters=converters,
                      project_dir=str(tmp_path))
    flows(project)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return project_of(tmp_path_factory.mktemp("tabm_project"))


@pytest.fixture(scope="module")
def batch(project):
    return project.get_dataset().batch(list(range(40)))


@pytest.mark.parametrize("num_embeddings", [None, "piecewise_linear", "periodic"])
def test_member_axis_through_every_task_type_and_single_model_output_in_eval(project, batch, num_embeddings):
    torch.manual_seed(0)
    mlp = tabular_model(project, hidden=16).eval()
    model = tabular_model(project, hidden=16, kind="tabm", k=K, num_embeddings=num_embeddings)
    single = mlp(batch["inputs"])
    out = model.train()(batch["inputs"])
    assert set(out["member_logits"]) == set(single["logits"]) == set(project.get_full_flow().tasks)
    for name, logits in single["logits"].items():
        members = out["member_logits"][name]
        assert members.shape == (40, K, *logits.shape[1:]), name
        assert out["logits"][name].shape == logits.shape, name
        task = project.get_full_flow().tasks[name]
        # the averaged prediction's activation is the mean of the members' activations
        mean = torch.stack([task.activation(members[:, j]) for j in range(K)]).mean(0)
        assert torch.allclose(task.activation(out["logits"][name]), mean, atol=1e-5), name
        # members differ (their own adapters and heads)
        assert not torch.allclose(members[:, 0], members[:, 1]), name
    evaluated = model.eval()(batch["inputs"])
    assert sorted(evaluated) == sorted(single) == ["logits", "masks"]
    for name in single["masks"]:
        assert evaluated["masks"][name].shape == single["masks"][name].shape
        assert evaluated["logits"][name].dtype == single["logits"][name].dtype


def test_loss_is_the_mean_of_the_members_masked_losses(project, batch):
    torch.manual_seed(1)
    model = tabular_model(project, hidden=16, kind="tabm", k=K).train()
    out = model(batch["inputs"])
    loss = project.get_full_flow().get_loss()
    total, per_task = loss.compute(out, batch)
    # by hand: each member alone is a single model; its masked losses, averaged over the members
    member_terms = [loss.compute({"logits": {n: v[:, j] for n, v in out["member_logits"].items()}}, batch)
                    for j in range(K)]
    for name in per_task:
        expected = torch.stack([terms[1][name] for terms in member_terms]).mean()
        assert torch.allclose(per_task[name], expected, atol=1e-6), name
    assert torch.allclose(total, torch.stack([terms[0] for terms in member_terms]).mean(), atol=1e-6)
    # and not the loss of the averaged prediction (what eval mode gives)
    assert not torch.allclose(total, loss.compute({"logits": out["logits"]}, batch)[0])
    total.backward()
    assert all(p.grad is not None for p in model.tabm.parameters() if p.requires_grad)


def test_dataparallel_replica_reduction_uses_the_members_losses_too(project, batch):
    from dnn_cool_catalyst.parallel.replicas import replica_reduction

    torch.manual_seed(2)
    model = tabular_model(project, hidden=16, kind="tabm", k=K).train()
    out = model(batch["inputs"])
    graph = project.get_full_flow().graph
    per_task, _ = project.get_full_flow().get_loss().terms(out, batch)
    reduced = replica_reduction(graph, out, batch)["loss"]
    for name, loss in per_task.items():
        assert torch.allclose(reduced[name], loss.reshape(1), atol=1e-6), name


def test_a_task_without_inverse_activation_cannot_have_members():
    class Plain(BinaryTask):
        inverse_activation = Task.inverse_activation

    def gate(flow, x, out):
        out += flow.plain(x.features)
        return out

    flow = TaskFlow.from_function(gate, [Plain("plain", 8)])
    with pytest.raises(TaskError, match=r"\['plain'\].*inverse_activation"):
        flow.torch(members=True)
    assert average_members(BinaryTask("b", 8), torch.zeros(3, 2)).tolist() == [0.0, 0.0, 0.0]


def test_bad_options_are_named(project):
    with pytest.raises(ValueError, match="kind must be 'mlp' or 'tabm', got 'tabnet'"):
        tabular_model(project, kind="tabnet")
    with pytest.raises(ValueError, match="num_embeddings must be one of"):
        tabular_model(project, kind="tabm", num_embeddings="linear")
    with pytest.raises(ValueError, match="needs kind='tabm'"):
        tabular_model(project, num_embeddings="periodic")
    with pytest.raises(ValueError, match="k .* must be a positive int"):
        tabular_model(project, kind="tabm", k=0)


def test_input_statistics_and_bins_come_from_the_training_split(tmp_path):
    import rtdl_num_embeddings

    from dnn_cool_catalyst.tabular import input_table, standardisation
    from dnn_cool_catalyst.tabular.tabm import piecewise_linear_bins

    df = frame()
    project = project_of(tmp_path, df)
    model = tabular_model(project, hidden=16, kind="tabm", k=K, num_embeddings="piecewise_linear")
    whole_bias = model.tabm.num_module.impl.bias.clone()
    runner = project.runner(model, runner_name="fit", batch_size=32)
    train = runner.splits["train"]
    a = torch.tensor(df["a"].to_numpy(), dtype=torch.float32)
    assert model.mean[0].item() == pytest.approx(a[train].mean().item(), abs=1e-5)
    assert model.std[0].item() == pytest.approx(a[train].std(unbiased=False).item(), abs=1e-5)
    assert abs(model.mean[0].item() - a.mean().item()) > 1e-4  # the other splits left no trace
    numeric = input_table(project.data, project.input_cols, train)[2]
    mean, std = standardisation(numeric)
    expected = rtdl_num_embeddings.PiecewiseLinearEncoding(piecewise_linear_bins((numeric - mean) / std)).impl
    assert torch.equal(model.tabm.num_module.impl.bias, expected.bias)
    assert torch.equal(model.tabm.num_module.impl.weight, expected.weight)
    assert not torch.equal(whole_bias, expected.bias)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same flow trained with the MLP and with TabM (k=4, piecewise-linear embeddings), inferred and tuned."""
    return (trained_run(tmp_path_factory.mktemp("mlp"), epochs=4),
            trained_run(tmp_path_factory.mktemp("tabm"), epochs=4, kind="tabm", k=K,
                        num_embeddings="piecewise_linear"))


def test_a_trained_tabm_run_learns_and_gives_outputs_shaped_like_the_mlps(runs):
    (_, mlp), (project, tabm) = runs
    metrics = tabm.evaluate()
    reference_metrics = mlp.evaluate()
    assert list(metrics.columns) == list(reference_metrics.columns)
    assert metrics[["task_path", "metric_name"]].equals(reference_metrics[["task_path", "metric_name"]])
    accuracy = metrics.set_index(["task_path", "metric_name"])["metric_res"]
    assert accuracy[("door_open", "accuracy")] > 0.8  # a > -0.2 is learned in 4 epochs
    for split in ("train", "valid", "test"):
        ours, theirs = tabm._stored(split), mlp._stored(split)
        for name in project.get_full_flow().tasks:
            assert ours[0][name].shape == theirs[0][name].shape, (split, name)
    rows = project.df.iloc[:10]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted, reference_predicted = tabm.predict(rows, proba=True), mlp.predict(rows, proba=True)
    assert list(predicted.columns) == list(reference_predicted.columns)
    assert predicted.shape == reference_predicted.shape and predicted.index.equals(reference_predicted.index)


def test_tabm_export_keeps_the_interface_and_matches_the_library(runs, tmp_path):
    (_, mlp), (project, tabm) = runs
    path = tabm.export()
    meta = json.loads(open(path + ".json").read())
    reference_meta = json.loads(open(mlp.export() + ".json").read())
    assert meta["inputs"] == reference_meta["inputs"]
    assert list(meta["outputs"]) == list(reference_meta["outputs"])
    values, applies, positions = reference(tabm, "test")
    got = run_deployed(path, raw_rows(project.df, positions), tmp_path)
    for name in tabm.flow.tasks:
        assert torch.equal(got["applies"][name], applies[name]), name
        if name == "temperature":
            assert torch.allclose(got["values"][name], values[name], atol=1e-4)
        else:
            assert torch.equal(got["values"][name], values[name]), name


@pytest.mark.slow  # the ONNX exporter takes over a minute on this model
def test_tabm_onnx_export_matches_the_torch_export(runs, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    _, (project, tabm) = runs
    onnx_path = tabm.export(format="onnx", overwrite=True)
    torch_path = tabm.export(format="torch", overwrite=True)
    _, _, positions = reference(tabm, "test")
    rows = raw_rows(project.df, positions)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "torch").mkdir()
    from_onnx = run_deployed(onnx_path, rows, tmp_path / "onnx", fmt="onnx")
    from_torch = run_deployed(torch_path, rows, tmp_path / "torch", fmt="torch")
    for name in tabm.flow.tasks:
        assert torch.equal(from_onnx["applies"][name], from_torch["applies"][name]), name
        assert torch.allclose(from_onnx["values"][name], from_torch["values"][name], atol=1e-4, rtol=0), name


def test_tabm_needs_its_package(monkeypatch, project):
    import builtins

    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "tabm":
            raise ImportError("No module named 'tabm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(ImportError, match=r"pip install 'dnn_cool_catalyst\[tabm\]'"):
        TabularTabM(project)


def test_every_cross_validation_fold_fits_inputs_on_its_own_training_rows(tmp_path):
    from dnn_cool_catalyst.run.layout import fold_name

    project = project_of(tmp_path, frame(n=120))
    model = tabular_model(project, hidden=8, kind="tabm", k=2)
    seen = []  # (mean of column a, number of rows) of every fit; folds work on deep copies of the model
    fit_inputs = TabularTabM.fit_inputs

    def recording(self, dataset, positions):
        fit_inputs(self, dataset, positions)
        seen.append((self.mean[0].item(), len(positions)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TabularTabM, "fit_inputs", recording)
        runner = project.runner(model, runner_name="cv", batch_size=32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runner.cross_validate(folds=2, num_epochs=1)
    a = torch.tensor(project.df["a"].to_numpy(), dtype=torch.float32)
    assert seen[0] == (pytest.approx(a[runner.splits["train"]].mean().item(), abs=1e-5), len(runner.splits["train"]))
    assert len(seen) == 3
    for k, (mean, rows) in enumerate(seen[1:]):
        splits = json.loads((tmp_path / "cv" / fold_name(k) / "splits.json").read_text())["splits"]
        assert rows == len(splits["train"]) < len(runner.splits["train"]) + len(runner.splits["valid"])
        assert mean == pytest.approx(a[project.df.index.get_indexer(splits["train"])].mean().item(), abs=1e-5)
