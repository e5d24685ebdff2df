"""Development subsets (issue 16, item 5): ``dev=N`` runs the whole pipeline on N seeded rows, chosen by row identity,
in ``<runner_name>-dev<N>``, never touching the full run's directory; ``--dev N`` on dnn-cool-run."""
import json
import os
import warnings

import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.config import ConfigError, run_config
from dnn_cool_catalyst.config.cli import main as cli_main
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join(REPO, "configs", "tabular.yml")
SAMPLES = 400


def runner_for(df, project_dir, name="exp", **kwargs):
    torch.manual_seed(0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=str(project_dir))
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=8), name, batch_size=32, **kwargs)


def used_labels(runner):
    row_ids = runner.dataset.data.row_ids
    return {row_ids[p] for positions in runner.splits.values() for p in positions}


def test_a_dev_run_uses_exactly_n_rows_in_its_own_directory(tmp_path):
    df = numbers_frame(SAMPLES, seed=0)
    runner = runner_for(df, tmp_path, dev=60)
    assert runner.run_dir == os.path.join(str(tmp_path), "exp-dev60")
    assert len(used_labels(runner)) == 60 and sum(len(v) for v in runner.splits.values()) == 60
    with open(os.path.join(runner.run_dir, "splits.json")) as f:
        saved = json.load(f)
    assert saved["num_samples"] == 60
    assert set(sum(saved["splits"].values(), [])) == used_labels(runner)
    with open(os.path.join(runner.run_dir, "fitted_targets.json")) as f:
        assert json.load(f)["num_rows"] == len(runner.splits["train"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=1)
        index = runner.infer()
        runner.tune()
        table = runner.evaluate("test")
    assert index["splits"] == {name: len(runner.splits[name]) for name in ("train", "valid", "test")}
    assert sum(index["splits"].values()) == 60
    assert table.groupby("task_path").num_samples.max().max() <= len(runner.splits["test"])
    assert not os.path.exists(os.path.join(str(tmp_path), "exp"))  # the full run's directory is never touched


def test_the_same_seed_and_n_pick_the_same_rows_from_a_reordered_frame(tmp_path):
    df = numbers_frame(SAMPLES, seed=0)
    first = runner_for(df, tmp_path / "a", dev=50, seed=5)
    reordered = runner_for(df.sample(frac=1.0, random_state=3), tmp_path / "b", dev=50, seed=5)
    assert used_labels(first) == used_labels(reordered)
    assert used_labels(runner_for(df, tmp_path / "c", dev=50, seed=6)) != used_labels(first)
    bigger = runner_for(df, tmp_path / "d", dev=100, seed=5)
    assert used_labels(first) <= used_labels(bigger)  # a larger subset keeps the rows of a smaller one


def test_a_dev_run_next_to_a_full_run_leaves_the_full_run_alone(tmp_path):
    df = numbers_frame(SAMPLES, seed=0)
    full = runner_for(df, tmp_path)
    before = {name: os.stat(os.path.join(full.run_dir, name)).st_mtime_ns for name in os.listdir(full.run_dir)}
    dev = runner_for(df, tmp_path, dev=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev.train(num_epochs=1)
    after = {name: os.stat(os.path.join(full.run_dir, name)).st_mtime_ns for name in os.listdir(full.run_dir)}
    assert after == before and len(used_labels(full)) == SAMPLES


def test_cross_validation_on_a_dev_subset(tmp_path):
    runner = runner_for(numbers_frame(SAMPLES, seed=0), tmp_path, dev=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = runner.cross_validate(folds=2, num_epochs=1)
    assert os.path.exists(os.path.join(str(tmp_path), "exp-dev80", "cv_summary.csv"))
    folds = runner.fold_splits(folds=2)
    assert len(set(folds[0]["train"]) | set(folds[0]["valid"]) | set(folds[0]["test"])) == 80
    assert list(summary.columns)[-1] == "num_samples"


@pytest.mark.parametrize("dev, pattern", [
    (0, r"dev=0: a development subset needs between 1 and 400 rows \(the dataset has 400\)"),
    (-3, r"dev=-3: a development subset needs between 1 and 400 rows"),
    (401, r"dev=401: a development subset needs between 1 and 400 rows"),
    ("10", r"dev must be a number of rows \(an int\), got '10'"),
    (True, r"dev must be a number of rows \(an int\), got True"),
])
def test_bad_dev_sizes_are_refused_before_anything_is_written(tmp_path, dev, pattern):
    with pytest.raises(RunnerError, match=pattern):
        runner_for(numbers_frame(SAMPLES, seed=0), tmp_path, dev=dev)
    assert sorted(os.listdir(tmp_path)) == ["converters.json"]


def test_dev_from_a_config_run(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_config([TABULAR], [f"project.project_dir={tmp_path}", "run.0.num_epochs=1"], echo=None,
                             dev=100)
    run_dir = tmp_path / "numbers_mlp-dev100"
    with open(run_dir / "splits.json") as f:
        assert json.load(f)["num_samples"] == 100
    assert isinstance(results[-1], pd.DataFrame) and (run_dir / "evaluation_test_decoded.csv").exists()
    assert not (tmp_path / "numbers_mlp").exists()


def test_dev_on_the_command_line_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", TABULAR, "--dev", "0", "--set", f"project.project_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "--dev must be a positive number of rows, got 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"'runner' is not an object with a _target_"):
        run_config([TABULAR], ["runner=3"], echo=None, dev=5)
    assert not os.listdir(tmp_path)
