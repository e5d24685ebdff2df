"""Cross-validation (issue 16, item 1): seeded folds by row identity, one run directory per fold, the fold summary,
the fold ensemble evaluated on the test split, resuming, and the errors raised before anything trains."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.measures.evaluation import tune_flow
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.experiments.folds import fold_labels
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
from dnn_cool_catalyst.tasks.base import Task
from dnn_cool_catalyst.tasks.binary import BinaryTask
from dnn_cool_catalyst.tasks.classification import ClassificationTask
from dnn_cool_catalyst.tasks.multilabel import MultilabelTask
from dnn_cool_catalyst.tasks.regression import BoundedRegressionTask, RegressionTask
from dnn_cool_catalyst.tasks.tokens import TokenClassificationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = 160


def runner_for(df, project_dir, name="cv", **kwargs):
    torch.manual_seed(0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=str(project_dir))
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=8), name, batch_size=32, **kwargs)


def read_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """One 2-fold, 1-epoch cross-validation of the numbers flow, shared by the read-only tests."""
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path_factory.mktemp("cv"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = runner.cross_validate(folds=2, num_epochs=1, lr=0.01)
    return runner, summary


# -- folds -----------------------------------------------------------------------------------------------------

def test_folds_partition_the_rows_outside_the_test_split(tmp_path):
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path)
    labels = list(runner.dataset.data.row_ids)
    test = {labels[p] for p in runner.splits["test"]}
    rest = {labels[p] for name in ("train", "valid") for p in runner.splits[name]}
    plan = runner.fold_splits(folds=4)
    valid = [set(fold["valid"]) for fold in plan]
    assert all(len(a & b) == 0 for i, a in enumerate(valid) for b in valid[i + 1:])  # disjoint
    assert set().union(*valid) == rest  # cover the non-test rows
    assert sorted(len(v) for v in valid) in ([34, 34, 34, 34], [33, 34, 34, 35])
    for fold, held_out in zip(plan, valid):
        assert set(fold["test"]) == test and not held_out & test  # test rows in no fold
        assert set(fold["train"]) == rest - held_out
    assert not os.path.exists(os.path.join(runner.run_dir, "cv.json"))  # fold_splits writes nothing


def test_the_same_seed_gives_the_same_folds_in_another_experiment_and_a_reordered_frame(tmp_path):
    df = numbers_frame(SAMPLES, seed=0)
    first = runner_for(df, tmp_path / "a", seed=3).fold_splits(folds=3)
    shuffled = df.sample(frac=1.0, random_state=1)
    again = runner_for(shuffled, tmp_path / "b", name="other", seed=3).fold_splits(folds=3)
    assert [{k: set(v) for k, v in f.items()} for f in first] == [{k: set(v) for k, v in f.items()} for f in again]
    other_seed = runner_for(df, tmp_path / "c", seed=4).fold_splits(folds=3)
    assert set(other_seed[0]["valid"]) != set(first[0]["valid"])


def test_stratified_folds_deal_each_class_evenly(tmp_path):
    df = numbers_frame(SAMPLES, seed=0)
    runner = runner_for(df, tmp_path)
    plan = runner.fold_splits(folds=3, stratify="is_even")
    per_fold = [df.loc[fold["valid"], "is_even"].value_counts(dropna=False) for fold in plan]
    for value in (0.0, 1.0):
        counts = [int(c.get(value, 0)) for c in per_fold]
        assert max(counts) - min(counts) <= 1, counts
    sizes = [len(fold["valid"]) for fold in plan]
    assert max(sizes) - min(sizes) <= 1


def test_fold_labels_depend_on_the_set_of_labels_only():
    labels = [f"row{i}" for i in range(20)]
    folds = fold_labels(labels, 4, seed=7)
    reversed_folds = fold_labels(labels[::-1], 4, seed=7)
    assert [set(f) for f in folds] == [set(f) for f in reversed_folds]
    assert sorted(sum(folds, [])) == sorted(labels)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"folds": 1}, r"folds=1: cross-validation needs at least 2 folds"),
    ({"folds": 2.0}, r"folds must be an int >= 2, got 2.0"),
    ({"folds": True}, r"folds must be an int >= 2, got True"),
    ({"folds": 137}, r"folds=137 is more than the 136 rows outside the test split \(the data has 160 rows, 24 held "
                     r"out for testing\)"),
    ({"folds": 5, "stratify": "is_even"}, r"stratify='is_even': class 1 has only 3 row\(s\) outside the test split, "
                                          r"fewer than folds=5"),
    ({"folds": 2, "stratify": "nope"}, r"stratify='nope' is not a task"),
    ({"folds": 2, "num_epochs": 0}, r"num_epochs must be a positive int"),
    ({"folds": 2, "resume": True}, r"cross_validate\(\) sets \['resume'\] itself"),
    ({"folds": 2, "tune_kwargs": {"loader": "train"}}, r"tune_kwargs must not set 'loader'"),
    ({"folds": 2, "tune_kwargs": {"min_samples": -1}}, r"min_samples must be an int >= 0"),
    ({"folds": 2, "tune_kwargs": {"thresholds": 1}}, r"tune_kwargs \['thresholds'\] do not fit runner.tune\(\)"),
])
def test_bad_settings_are_refused_before_any_fold_exists(tmp_path, kwargs, pattern):
    df = numbers_frame(SAMPLES, seed=0)
    df["is_even"] = 0.0
    df.loc[[3, 10, 40], "is_even"] = 1.0  # a rare class: 3 rows, all outside the test split (seed 42)
    runner = runner_for(df, tmp_path)
    with pytest.raises(RunnerError, match=pattern):
        runner.cross_validate(**kwargs)
    assert sorted(os.listdir(runner.run_dir)) == ["fitted_targets.json", "flow.json", "splits.json"]


def test_a_task_without_inverse_activation_is_refused_before_training(tmp_path, monkeypatch):
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path)
    monkeypatch.setattr(BinaryTask, "inverse_activation", Task.inverse_activation)
    with pytest.raises(RunnerError, match=r"task\(s\) 'is_interesting' \(BinaryTask\), .* define no "
                                          r"inverse_activation\(\)"):
        runner.cross_validate(folds=2, num_epochs=1)
    assert not os.path.exists(os.path.join(runner.run_dir, "fold_0"))


def test_a_run_directory_with_a_single_runs_checkpoints_is_refused(tmp_path):
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path)
    os.makedirs(runner.checkpoint_dir)
    open(os.path.join(runner.checkpoint_dir, "runner.best.pth"), "wb").close()
    with pytest.raises(RunnerError, match=r"holds a single run's checkpoints .* use another runner_name"):
        runner.cross_validate(folds=2, num_epochs=1)


@pytest.mark.parametrize("content, pattern", [
    ("{not json", r"cannot read .*cv.json .*: the fold group .* is damaged"),
    (json.dumps({"kind": "single"}), r"cv.json: field 'kind' must be 'cross_validation'"),
    (json.dumps({"kind": "cross_validation", "folds": 2, "seed": 42, "stratify": None, "test_fraction": 0.15,
                 "status": {"fold_0": "finished"}}), r"cv.json: field 'status' must map fold names to one of"),
])
def test_a_damaged_cv_json_is_refused_before_training(tmp_path, content, pattern):
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path)
    with open(os.path.join(runner.run_dir, "cv.json"), "w") as f:
        f.write(content)
    with pytest.raises(RunnerError, match=pattern):
        runner.cross_validate(folds=2, num_epochs=1)
    assert not os.path.exists(os.path.join(runner.run_dir, "fold_0"))


# -- the fold group --------------------------------------------------------------------------------------------

def test_layout_and_cv_json(group):
    runner, _ = group
    with open(os.path.join(runner.run_dir, "cv.json")) as f:
        cv = json.load(f)
    assert {k: cv[k] for k in ("kind", "folds", "seed", "stratify", "test_fraction", "fold_dirs", "status")} == {
        "kind": "cross_validation", "folds": 2, "seed": 42, "stratify": None, "test_fraction": 0.15,
        "fold_dirs": ["fold_0", "fold_1"], "status": {"fold_0": "done", "fold_1": "done"}}
    labels = list(runner.dataset.data.row_ids)
    for k, fold in enumerate(runner.fold_splits(folds=2)):
        with open(os.path.join(runner.run_dir, f"fold_{k}", "splits.json")) as f:
            saved = json.load(f)
        assert saved["splits"] == fold and saved["fold"] == {"index": k, "folds": 2}
        assert saved["splits"]["test"] == [labels[p] for p in runner.splits["test"]]
        for name in ("checkpoints/runner.best.pth", "tuned.json", "evaluation_test_gt.csv",
                     "evaluation_test_decoded.csv", "infer/valid/manifest.json", "infer/test/manifest.json"):
            assert os.path.exists(os.path.join(runner.run_dir, f"fold_{k}", name)), name
    for name in ("cv_summary.csv", "evaluation_test_gt.csv", "evaluation_test_decoded.csv", "tuned.json"):
        assert os.path.exists(os.path.join(runner.run_dir, name)), name
    assert not runner.experiment_metrics  # the folds trained on copies: the group runner's state is its own
    assert not os.path.exists(os.path.join(runner.run_dir, "checkpoints"))


def test_summary_values_equal_the_fold_evaluations_read_back(group):
    runner, summary = group
    assert list(summary.columns) == ["task_path", "metric_name", "mean", "std", "fold_0", "fold_1", "num_samples"]
    saved = pd.read_csv(os.path.join(runner.run_dir, "cv_summary.csv"))
    pd.testing.assert_frame_equal(saved, summary, check_dtype=False)
    folds = [pd.read_csv(os.path.join(runner.run_dir, f"fold_{k}", "evaluation_test_gt.csv")) for k in range(2)]
    for k, table in enumerate(folds):
        assert list(summary.task_path) == list(table.task_path)
        assert list(summary.metric_name) == list(table.metric_name)
        np.testing.assert_allclose(summary[f"fold_{k}"], table.metric_res)
        assert list(summary.num_samples) == list(table.num_samples)
    values = np.stack([t.metric_res.to_numpy() for t in folds])
    np.testing.assert_allclose(summary["mean"], values.mean(0))
    np.testing.assert_allclose(summary["std"], values.std(0, ddof=1))


def test_ensemble_activations_are_the_mean_of_the_folds_stored_test_activations(group):
    runner, _ = group
    for name in runner.flow.tasks:
        folds = [read_npz(os.path.join(runner.run_dir, f"fold_{k}", "infer", "test", f"{name}.npz")) for k in range(2)]
        ensemble = read_npz(os.path.join(runner.run_dir, "ensemble", "test", f"{name}.npz"))
        np.testing.assert_array_equal(ensemble["index"], folds[0]["index"])
        np.testing.assert_array_equal(folds[1]["index"], folds[0]["index"])
        np.testing.assert_allclose(ensemble["activations"], (folds[0]["activations"] + folds[1]["activations"]) / 2,
                                   rtol=1e-6)
        # the stored logits are the averaged activations' logits
        np.testing.assert_allclose(torch.sigmoid(torch.as_tensor(ensemble["logits"])).numpy(),
                                   ensemble["activations"], rtol=1e-5, atol=1e-7)
        assert sorted(ensemble["index"].tolist()) == sorted(runner.splits["test"])


def test_ensemble_thresholds_are_tuned_on_the_out_of_fold_predictions_and_evaluated_on_test(group):
    runner, _ = group
    flow = runner.flow
    parts = [{name: read_npz(os.path.join(runner.run_dir, f"fold_{k}", "infer", "valid", f"{name}.npz"))
              for name in flow.tasks} for k in range(2)]
    cat = {field: {name: torch.as_tensor(np.concatenate([p[name][field] for p in parts])) for name in flow.tasks}
           for field in ("activations", "targets", "available")}
    assert sorted(cat["targets"]["is_even"].shape) == [len(runner.splits["train"]) + len(runner.splits["valid"])]
    logits = {name: torch.logit(cat["activations"][name].double(), eps=1e-12) for name in flow.tasks}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, _ = tune_flow(flow, logits, cat["targets"], cat["available"], min_samples=30, min_per_class=5)
    with open(os.path.join(runner.run_dir, "tuned.json")) as f:
        tuned = json.load(f)
    assert tuned["loader"] == "oof" and tuned["params"] == expected
    # the ensemble's evaluation: the flow's evaluator on the averaged activations, with those thresholds
    runner._apply_params(expected)
    ensemble = {name: read_npz(os.path.join(runner.run_dir, "ensemble", "test", f"{name}.npz")) for name in flow.tasks}
    for gating in ("gt", "decoded"):
        table = flow.get_evaluator()({n: torch.as_tensor(v["logits"]) for n, v in ensemble.items()},
                                     {n: torch.as_tensor(v["targets"]) for n, v in ensemble.items()},
                                     {n: torch.as_tensor(v["available"]) for n, v in ensemble.items()}, gating=gating)
        saved = pd.read_csv(os.path.join(runner.run_dir, f"evaluation_test_{gating}.csv"))
        assert list(saved.columns) == ["task_path", "metric_name", "metric_res", "num_samples"]
        np.testing.assert_allclose(saved.metric_res, table.metric_res)
        assert list(saved.num_samples) == list(table.num_samples)


def test_resume_skips_done_folds_and_resumes_an_interrupted_one(tmp_path):
    runner = runner_for(numbers_frame(100, seed=1), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = runner.cross_validate(folds=2, num_epochs=1)
    group = runner.run_dir
    done_checkpoint = os.path.join(group, "fold_0", "checkpoints", "runner.last.pth")
    stamp = os.stat(done_checkpoint).st_mtime_ns
    # fold_1 as a run killed after its first epoch: status "running", training not finished
    with open(os.path.join(group, "cv.json")) as f:
        cv = json.load(f)
    cv["status"]["fold_1"] = "running"
    cv["trained"] = ["fold_0"]
    with open(os.path.join(group, "cv.json"), "w") as f:
        json.dump(cv, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = runner.cross_validate(folds=2, num_epochs=2)
    assert os.stat(done_checkpoint).st_mtime_ns == stamp  # fold 0 untouched
    # fold 1 resumed from its epoch-1 checkpoint and trained epoch 2 only
    assert os.path.exists(os.path.join(group, "fold_1", "checkpoints", "runner.0002.pth"))
    pd.testing.assert_series_equal(first["fold_0"], again["fold_0"])
    with open(os.path.join(group, "cv.json")) as f:
        assert json.load(f)["status"] == {"fold_0": "done", "fold_1": "done"}
    with pytest.raises(RunnerError, match=r"was made with folds=2 \(now 3\).*cv.json"):
        runner.cross_validate(folds=3, num_epochs=1)


def test_a_fold_listed_as_done_whose_folder_is_gone_is_trained_again(tmp_path):
    runner = runner_for(numbers_frame(100, seed=1), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = runner.cross_validate(folds=2, num_epochs=1)
    best = os.path.join(runner.run_dir, "fold_1", "checkpoints", "runner.best.pth")
    weights = torch.load(best, weights_only=True)["model_state_dict"]
    shutil.rmtree(os.path.join(runner.run_dir, "fold_1"))  # what the errors advise for a damaged fold
    with pytest.warns(UserWarning, match=r"cv.json lists fold_1 as done, but .*fold_1 is gone: training it again"):
        again = runner.cross_validate(folds=2, num_epochs=1)
    pd.testing.assert_frame_equal(first, again)  # the same fold model again (every fold starts from one copy)
    for key, value in torch.load(best, weights_only=True)["model_state_dict"].items():
        assert torch.equal(value, weights[key]), key
    with open(os.path.join(runner.run_dir, "cv.json")) as f:
        cv = json.load(f)
    assert cv["status"] == {"fold_0": "done", "fold_1": "done"} and sorted(cv["trained"]) == ["fold_0", "fold_1"]


def test_a_failing_fold_is_marked_failed(tmp_path, monkeypatch):
    runner = runner_for(numbers_frame(100, seed=1), tmp_path)
    from dnn_cool_catalyst.runners.runner import DnnCoolSupervisedRunner

    def interrupted_evaluate(self, loader="test", gating="gt"):
        raise KeyboardInterrupt
    monkeypatch.setattr(DnnCoolSupervisedRunner, "evaluate", interrupted_evaluate)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.cross_validate(folds=2, num_epochs=1)
    with open(os.path.join(runner.run_dir, "cv.json")) as f:
        cv = json.load(f)
    assert cv["status"] == {"fold_0": "failed"} and cv["trained"] == ["fold_0"]
    assert not os.path.exists(os.path.join(runner.run_dir, ".lock"))


# -- per-fold regression scaling -------------------------------------------------------------------------------

def test_regression_scaling_is_fitted_per_fold_and_the_ensemble_averages_label_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=90)
    df = pd.DataFrame({"x": x, "y": 3.0 * x + 100.0 + rng.normal(0, 1, size=90), "big": (x > 5).astype(float)})
    from dnn_cool_catalyst.data import Converters
    from dnn_cool_catalyst.tabular import tabular_model

    converters = Converters()
    converters.type.type_mapping.update({"x": "numeric", "y": "regression", "big": "binary"})
    project = Project(df, "x", ["y", "big"], converters=converters, project_dir=str(tmp_path))

    @project.add_flow
    def flow_fn(flow, x, out):
        out += flow.big(x.features)
        out += flow.y(x.features)
        return out

    torch.manual_seed(0)
    runner = project.runner(tabular_model(project, hidden=8), "cv", batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.cross_validate(folds=2, num_epochs=1)
    means = []
    for k, fold in enumerate(runner.fold_splits(folds=2)):
        with open(os.path.join(runner.run_dir, f"fold_{k}", "fitted_targets.json")) as f:
            fitted = json.load(f)
        assert fitted["num_rows"] == len(fold["train"])
        assert fitted["tasks"]["y"]["mean"] == pytest.approx(df.loc[fold["train"], "y"].mean())
        means.append(fitted["tasks"]["y"]["mean"])
    assert means[0] != means[1]
    folds = [read_npz(os.path.join(runner.run_dir, f"fold_{k}", "infer", "test", "y.npz")) for k in range(2)]
    ensemble = read_npz(os.path.join(runner.run_dir, "ensemble", "test", "y.npz"))
    np.testing.assert_allclose(ensemble["activations"], (folds[0]["activations"] + folds[1]["activations"]) / 2,
                               rtol=1e-6)
    assert abs(float(np.mean(ensemble["activations"])) - 115) < 60  # label units, not standardised
    saved = pd.read_csv(os.path.join(runner.run_dir, "evaluation_test_gt.csv"))
    assert "y" in set(saved.task_path)


# -- inverse activations ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, logits", [
    (BinaryTask("b"), torch.tensor([-3.0, 0.0, 2.5])),
    (MultilabelTask("m", n_classes=3), torch.tensor([[-1.0, 0.5, 4.0], [2.0, -2.0, 0.0]])),
    (ClassificationTask("c", n_classes=3), torch.tensor([[-1.0, 0.5, 4.0], [2.0, -2.0, 0.0]])),
    (TokenClassificationTask("t", n_classes=3), torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))),
    (BoundedRegressionTask("r", lo=0, hi=10), torch.tensor([-1.0, 0.3])),
    (RegressionTask("y"), torch.tensor([-1.0, 0.3, 2.0])),
])
def test_inverse_activation_gives_the_activations_back(task, logits):
    if isinstance(task, RegressionTask):
        task.set_fitted_state({"mean": 100.0, "std": 4.0})
    activations = task.activation(logits)
    back = task.activation(task.inverse_activation(activations))
    torch.testing.assert_close(back.float(), activations, rtol=1e-6, atol=1e-6)


# -- from YAML -------------------------------------------------------------------------------------------------

def test_tabular_cv_config_runs_end_to_end(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "dnn_cool_catalyst.config", "--config",
                           os.path.join(REPO, "configs", "tabular_cv.yml"), "--set",
                           f"project.project_dir={tmp_path / 'proj'}", "run.0.folds=2", "run.0.num_epochs=1",
                           "--dev", "300"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cross_validate (folds=2" in done.stdout and "fold_1" in done.stdout
    group = tmp_path / "proj" / "numbers_cv-dev300"  # --dev: 300 rows, in a directory of its own
    assert not (tmp_path / "proj" / "numbers_cv").exists()
    summary = pd.read_csv(group / "cv_summary.csv")
    assert list(summary.columns) == ["task_path", "metric_name", "mean", "std", "fold_0", "fold_1", "num_samples"]
    with open(group / "cv.json") as f:
        assert json.load(f)["stratify"] == "is_interesting"
    with open(group / "splits.json") as f:
        assert json.load(f)["num_samples"] == 300
    assert (group / "evaluation_test_decoded.csv").exists() and (group / "fold_1" / "tuned.json").exists()
