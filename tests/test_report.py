"""dnn-cool-report / report.compare: experiments found, settings diffed, metrics joined, statuses, HTML."""
import json
import os
import re
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
import yaml
from tensorboardX import SummaryWriter

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.report import ReportError, compare, write_report
from dnn_cool_catalyst.report.tensorboard import read_scalars
from dnn_cool_catalyst.run.run_config import RUN_CONFIG_FILE
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

HIDDEN = {"small": 4, "medium": 8, "large": 16}
BASE_CONFIG = {"project": {"n_samples": 160, "seed": 0}, "model": {"hidden": None, "depth": 2},
               "run": [{"_call_": "train", "num_epochs": 1, "lr": 0.003}, {"_call_": "evaluate"}]}


def _config(hidden: int) -> dict:
    config = json.loads(json.dumps(BASE_CONFIG))
    config["model"]["hidden"] = hidden
    return config


def _evaluation(rows, path):
    pd.DataFrame(rows, columns=["task_path", "metric_name", "metric_res", "num_samples"]).to_csv(path, index=False)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Three tiny real runs (1 epoch) that differ only in model.hidden, each with the config.yml a config run
    saves; returns the experiments folder."""
    root = tmp_path_factory.mktemp("experiments")
    df = numbers_frame(160, seed=0)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=str(root / "numbers"))
    flow = define_flows(project)
    for name, hidden in HIDDEN.items():
        torch.manual_seed(0)
        runner = project.runner(model=numbers_model(flow, hidden=hidden), runner_name=name, batch_size=32)
        runner.train(num_epochs=1, lr=3e-3)
        runner.infer(splits=["test"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no tuned thresholds: default ones are fine here
            runner.evaluate()
        with open(os.path.join(runner.run_dir, "config.yml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(_config(hidden), f)
    return root


def _fold_group(root, folds_values, ensemble_value, hidden=32):
    """A fold group in the cross-validation layout: cv.json, fold_<k>/ runs with evaluation CSVs and
    TensorBoard scalars, cv_summary.csv, the ensemble's evaluation CSV, the group's config.yml."""
    group = root / "cv_group"
    fold_dirs = [f"fold_{k}" for k in range(len(folds_values))]
    for k, value in enumerate(folds_values):
        fold = group / fold_dirs[k]
        fold.mkdir(parents=True)
        (fold / "flow.json").write_text("{}")
        _evaluation([("is_interesting", "accuracy", value, 10), ("is_interesting", "f1", value / 2, 10)],
                    fold / "evaluation_test_gt.csv")
        with SummaryWriter(str(fold / "tensorboard" / "valid")) as writer:
            for epoch in (1, 2):
                writer.add_scalar("loss/epoch", 1.0 / (epoch + k), epoch)
    (group / "cv.json").write_text(json.dumps({
        "kind": "cross_validation", "folds": len(fold_dirs), "seed": 0, "stratify": None, "test_fraction": 0.15,
        "fold_dirs": fold_dirs, "status": {d: "done" for d in fold_dirs}}))
    _evaluation([("is_interesting", "accuracy", ensemble_value, 30)], group / "evaluation_test_gt.csv")
    with open(group / "config.yml", "w", encoding="utf-8") as f:
        yaml.safe_dump(_config(hidden), f)
    return group


def test_three_runs_and_a_fold_group(real_runs, tmp_path):
    root = real_runs
    folds = [0.5, 0.75, 1.0]
    _fold_group(root, folds, ensemble_value=0.9)
    table = compare(root, metric="is_interesting/accuracy")

    assert sorted(table.experiment) == ["cv_group", "numbers/large", "numbers/medium", "numbers/small"]
    params = [c for c in table.columns if c not in ("experiment", "kind", "status") and "/" not in c
              and c not in ("is_interesting/accuracy std", "is_interesting/accuracy ensemble", "metrics_source",
                            "config_source", "detail", "path")]
    # the keys that differ: the hidden size, and with it the parameter count (the fold group, which has only a
    # config.yml, has no parameter count: unknown there, not different)
    assert sorted(params) == ["model.hidden", "model.parameters"]
    by_name = table.set_index("experiment")
    assert by_name.loc["cv_group", "model.hidden"] == 32 and by_name.loc["numbers/small", "model.hidden"] == 4

    for name in HIDDEN:  # each run's metrics are its own CSV's, read back
        saved = pd.read_csv(root / "numbers" / name / "evaluation_test_gt.csv")
        for row in saved.itertuples():
            assert by_name.loc[f"numbers/{name}", f"{row.task_path}/{row.metric_name}"] == pytest.approx(
                row.metric_res, nan_ok=True)  # F1 and precision are NaN where undefined
        assert by_name.loc[f"numbers/{name}", "status"] == "done"
        assert by_name.loc[f"numbers/{name}", "kind"] == "run"

    assert by_name.loc["cv_group", "kind"] == "folds" and by_name.loc["cv_group", "status"] == "done"
    assert by_name.loc["cv_group", "is_interesting/accuracy"] == pytest.approx(pd.Series(folds).mean())
    assert by_name.loc["cv_group", "is_interesting/accuracy std"] == pytest.approx(pd.Series(folds).std())
    assert by_name.loc["cv_group", "is_interesting/f1"] == pytest.approx(pd.Series(folds).mean() / 2)
    assert by_name.loc["cv_group", "is_interesting/accuracy ensemble"] == pytest.approx(0.9)
    assert "3/3 folds done" in by_name.loc["cv_group", "detail"]
    # Accuracy: larger first, whatever the values.
    assert list(table["is_interesting/accuracy"]) == sorted(table["is_interesting/accuracy"], reverse=True)

    # The HTML report and the CSV (through the module's command line, as a user runs it).
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "dnn_cool_catalyst.report", str(root), "--metric",
                           "is_interesting/accuracy", "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(out / "report.csv")
    assert list(written.experiment) == list(table.experiment)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<table" in page and page.count("<svg") >= 3 and "<polyline" in page and "<rect" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    link = os.path.relpath(root / "numbers" / "small", out)
    assert f'href="{link}/"' in page and link.startswith("..")  # relative links to the run directories
    assert "model.hidden" in page
    # The learning curves come from the runs' real TensorBoard files (and the folds' written ones).
    curves = read_scalars(str(root / "numbers" / "small" / "tensorboard"))
    assert [step for step, _ in curves["valid"]["loss/epoch"]] == [1]
    assert "numbers/small" in page and "cv_group/fold_2" in page


def test_python_runs_record_their_settings_and_differ_in_lr(tmp_path):
    df = numbers_frame(120, seed=1)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=str(tmp_path / "p"))
    flow = define_flows(project)
    for name, lr in (("lr_low", 1e-3), ("lr_high", 1e-2)):
        torch.manual_seed(0)
        runner = project.runner(model=numbers_model(flow, hidden=4), runner_name=name, batch_size=40)
        runner.train(num_epochs=1, lr=lr)
    record = json.loads((tmp_path / "p" / "lr_high" / RUN_CONFIG_FILE).read_text())
    assert record["train"]["lr"] == 1e-2 and record["train"]["num_epochs"] == 1
    assert record["runner"]["batch_size"] == 40 and record["runner"]["split_fractions"] == [0.7, 0.15, 0.15]
    assert record["model"]["class"].endswith("NumbersModel")
    assert record["model"]["parameters"] == sum(p.numel() for p in runner.model.parameters())
    assert [t["path"] for t in record["flow"]["tasks"]][0] == "is_interesting"
    assert {c["column"] for c in record["converters"]} == set(df.columns)
    assert record["status"]["train"] == "done"
    table = compare(tmp_path / "p")  # no evaluation yet: listed, incomplete, not sorted
    assert sorted(table.experiment) == ["lr_high", "lr_low"]
    assert set(table.status) == {"incomplete"}
    assert [c for c in table.columns if c.startswith("train.")] == ["train.lr"]
    assert "runner.batch_size" not in table.columns  # the same in both


def test_a_failed_training_is_recorded(tmp_path):
    df = numbers_frame(60, seed=2)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=str(tmp_path / "p"))
    flow = define_flows(project)
    runner = project.runner(model=numbers_model(flow, hidden=4), runner_name="broken", batch_size=20)
    from catalyst.core.callback import Callback, CallbackOrder

    class Boom(Callback):  # a failure inside training, after run_config.json was written
        def __init__(self):
            super().__init__(order=CallbackOrder.External)

        def on_epoch_start(self, runner):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runner.train(num_epochs=1, callbacks={"boom": Boom()})
    record = json.loads((tmp_path / "p" / "broken" / RUN_CONFIG_FILE).read_text())
    assert record["status"]["train"] == "failed" and record["status"]["error"].startswith("RuntimeError")
    table = compare(tmp_path / "p")
    assert table.loc[0, "status"] == "failed" and "training failed: RuntimeError" in table.loc[0, "detail"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_statuses_and_fold_group_from_its_summary(tmp_path):
    import socket

    def run_dir(name, files=None):
        path = tmp_path / name
        path.mkdir(parents=True)
        (path / "flow.json").write_text("{}")
        for file_name, text in (files or {}).items():
            (path / file_name).write_text(text)
        return path

    ok = run_dir("ok", {"config.yml": "lr: 0.1\n"})
    _evaluation([("door", "mae", 0.2, 5)], ok / "evaluation_test_gt.csv")
    better = run_dir("better", {"config.yml": "lr: 0.01\n"})
    _evaluation([("door", "mae", 0.1, 5)], better / "evaluation_test_gt.csv")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": "train", "started": "now"}
    run_dir("busy", {".lock": json.dumps(holder), "config.yml": "lr: 0.5\n"})
    run_dir("killed", {".lock": json.dumps({**holder, "pid": _dead_pid()})})
    run_dir("stopped", {"run_config.json": json.dumps({"train": {"lr": 1.0}, "status": {"train": "running"}})})
    run_dir("not_evaluated")
    (tmp_path / "empty_folder" / "deeper").mkdir(parents=True)  # not a run: not listed
    # A fold group without per-fold test files: its cv_summary.csv gives mean and std; one fold failed.
    group = tmp_path / "group"
    for k in range(2):
        run_dir(f"group/fold_{k}")
    (group / "cv.json").write_text(json.dumps({"kind": "cross_validation", "folds": 2, "fold_dirs":
                                               ["fold_0", "fold_1"], "status": {"fold_0": "done",
                                                                                "fold_1": "failed"}}))
    pd.DataFrame({"task_path": ["door"], "metric_name": ["mae"], "mean": [0.15], "std": [0.05],
                  "fold_0": [0.1], "fold_1": [0.2], "num_samples": [10]}).to_csv(group / "cv_summary.csv",
                                                                                 index=False)
    table = compare(tmp_path, metric="door/mae").set_index("experiment")
    assert table.status.to_dict() == {"better": "done", "group": "failed", "ok": "done", "busy": "running",
                                      "killed": "failed", "stopped": "failed", "not_evaluated": "incomplete"}
    # mae: smaller first; experiments without the metric last
    assert list(table.index[:3]) == ["better", "group", "ok"]
    assert table.loc["group", "door/mae"] == pytest.approx(0.15)
    assert table.loc["group", "door/mae std"] == pytest.approx(0.05)
    assert table.loc["group", "metrics_source"] == "cv_summary.csv"
    assert "fold_1 failed" in table.loc["group", "detail"]
    assert "stale .lock" in table.loc["killed", "detail"]
    assert "no evaluation_test_gt.csv" in table.loc["not_evaluated", "detail"]
    # config.yml's 'lr' differs between the runs that have it; run_config.json's 'train.lr' is known for one run
    # only: unknown elsewhere, not a difference
    assert "lr" in table.columns and "train.lr" not in table.columns


def _cli(argv, capsys):
    """Exit status and standard error of ``dnn-cool-report argv``, run in this process."""
    from dnn_cool_catalyst.report.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    return exited.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    code, err = _cli([empty, "--out", tmp_path / "r"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no runs under" in err and not (tmp_path / "r").exists()

    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.5, 4), ("door", "f1", 0.4, 4)], run / "evaluation_test_gt.csv")
    code, err = _cli([tmp_path / "runs", "--metric", "door/acc", "--out", tmp_path / "r"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "unknown metric 'door/acc'" in err and "door/accuracy, door/f1" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ReportError, match="gating must be one of"):
        compare(tmp_path / "runs", gating="predicted")
    with pytest.raises(ReportError, match="available: none"):
        compare(tmp_path / "runs", metric="door/accuracy", split="valid")
    assert list(compare(run).experiment) == ["a"]  # DIR may be a run itself
    csv_path, html_path, _ = write_report(tmp_path / "runs", tmp_path / "r")
    assert os.path.exists(csv_path) and "<svg" in open(html_path, encoding="utf-8").read()


def test_names_are_escaped_and_a_cut_event_file_is_read_up_to_the_cut(tmp_path):
    run = tmp_path / "runs" / 'lr<0.1>&"x"'
    run.mkdir(parents=True)
    (run / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.5, 4)], run / "evaluation_test_gt.csv")
    logdir = run / "tensorboard" / "valid"
    with SummaryWriter(str(logdir)) as writer:
        for epoch in (1, 2, 3):
            writer.add_scalar("loss/epoch", 1.0 / epoch, epoch)
    event_file = next(logdir.glob("events.out.tfevents.*"))
    data = event_file.read_bytes()
    event_file.write_bytes(data[:-5])  # the last record cut short, as while a run is still writing
    assert read_scalars(str(run / "tensorboard"))["valid"]["loss/epoch"] == [(1, 1.0), (2, 0.5)]
    _, html_path, _ = write_report(tmp_path / "runs", tmp_path / "out")
    page = open(html_path, encoding="utf-8").read()
    assert "lr&lt;0.1&gt;&amp;&quot;x&quot;" in page and 'lr<0.1>' not in page


# -- hostile runs: each is listed as unreadable, naming the file and why; the other runs are reported ---------------

def _outside_fold_group(run, fold_dirs):
    (run / "flow.json").unlink()
    (run / "cv.json").write_text(json.dumps({"kind": "cross_validation", "folds": 1, "fold_dirs": fold_dirs,
                                             "status": {d: "done" for d in fold_dirs}}))


def _outside_run(run):
    outside = run.parent.parent / "outside_run"
    outside.mkdir(exist_ok=True)
    (outside / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.99, 4)], outside / "evaluation_test_gt.csv")
    return outside


HOSTILE_RUNS = [
    ("text_metric", lambda run: _evaluation([("door", "accuracy", "abc", 4)], run / "evaluation_test_gt.csv"),
     r"evaluation_test_gt.csv: column 'metric_res' holds 'abc', expected a number"),
    ("huge_metric", lambda run: _evaluation([("door", "accuracy", 1.7e308, 4)], run / "evaluation_test_gt.csv"),
     r"evaluation_test_gt.csv: column 'metric_res' holds 1.7e\+308, expected a number within \+-1e\+100"),
    ("huge_negative_metric", lambda run: _evaluation([("door", "accuracy", -1.7e308, 4)],
                                                     run / "evaluation_test_gt.csv"),
     r"column 'metric_res' holds -1.7e\+308"),
    ("self_referencing_alias", lambda run: (run / "config.yml").write_text("a: &a [1, *a]\n"),
     r"config.yml: a YAML alias refers to a node that contains it"),
    ("billion_laughs", lambda run: (run / "config.yml").write_text(__import__("test_safe_read").billion_laughs()),
     r"config.yml: its YAML aliases expand to more than 1000000 nodes"),
    ("deep_run_config", lambda run: (run / RUN_CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000),
     r"run_config.json is nested deeper than 100 levels"),
    ("lock_pid_2_70", lambda run: (run / ".lock").write_text(json.dumps({"pid": 2 ** 70, "host": "h"})),
     r"\.lock: pid 1180591620717411303424 is not a process id"),
    ("cv_fold_outside", lambda run: _outside_fold_group(run, [f"../../{_outside_run(run).name}"]),
     r"cv.json: fold_dirs entry '../../outside_run' points outside the fold group folder"),
    ("cv_fold_absolute", lambda run: _outside_fold_group(run, [str(_outside_run(run))]),
     r"cv.json: fold_dirs entry '.*outside_run' points outside the fold group folder"),
    ("cv_fold_the_group_itself", lambda run: _outside_fold_group(run, ["."]),
     r"fold_dirs entry '.' points outside the fold group folder"),
]


@pytest.mark.parametrize("damage, reason", [pytest.param(d, r, id=n) for n, d, r in HOSTILE_RUNS])
def test_a_hostile_run_is_listed_as_unreadable_and_the_others_reported(tmp_path, damage, reason):
    root = tmp_path / "runs"
    for name in ("good", "bad"):
        (root / name).mkdir(parents=True)
        (root / name / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.5, 4)], root / "good" / "evaluation_test_gt.csv")
    damage(root / "bad")
    csv_path, html_path, comparison = write_report(root, tmp_path / "out")
    table = comparison.table.set_index("experiment")
    assert sorted(table.index) == ["bad", "good"]
    assert table.loc["good", "status"] == "done" and table.loc["good", "door/accuracy"] == 0.5
    assert table.loc["bad", "status"] == "unreadable"
    assert re.search(reason, table.loc["bad", "detail"]), table.loc["bad", "detail"]
    assert pd.isna(table.loc["bad", "door/accuracy"])  # nothing of it, nor of a run outside ROOT, is shown
    page = open(html_path, encoding="utf-8").read()
    assert "0.99" not in page and "0.99" not in open(csv_path).read()  # the metric of a run outside ROOT
    assert 'class="status unreadable"' in page


def test_a_run_reached_through_a_symlink_is_listed_as_skipped(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "linked_run"
    elsewhere.mkdir(parents=True)
    (elsewhere / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.7, 4)], elsewhere / "evaluation_test_gt.csv")
    root = tmp_path / "runs"
    (root / "own").mkdir(parents=True)
    (root / "own" / "flow.json").write_text("{}")
    _evaluation([("door", "accuracy", 0.5, 4)], root / "own" / "evaluation_test_gt.csv")
    os.symlink(elsewhere, root / "link")
    table = compare(root).set_index("experiment")
    assert table.status.to_dict() == {"own": "done", "link": "skipped"}
    assert table.loc["link", "kind"] == "link" and pd.isna(table.loc["link", "door/accuracy"])
    assert f"a symlink to {elsewhere}: not followed" in table.loc["link", "detail"]


def test_report_csv_cells_cannot_run_as_spreadsheet_formulas(tmp_path):
    root = tmp_path / "runs"
    for name, value in (("=HYPERLINK(\"http:x\")", "=1+1"), ("plain", "@SUM(A1)")):
        run = root / name
        run.mkdir(parents=True)
        (run / "flow.json").write_text("{}")
        (run / "config.yml").write_text(yaml.safe_dump({"note": value, "lr": -0.5 if name == "plain" else 0.1}))
        _evaluation([("door", "accuracy", -0.25, 4)], run / "evaluation_test_gt.csv")
    csv_path, _, _ = write_report(root, tmp_path / "out")
    written = pd.read_csv(csv_path, dtype=str, keep_default_na=False).set_index("path")
    text = open(csv_path, encoding="utf-8").read()
    assert "'=HYPERLINK" in text and "'=1+1" in text and "'@SUM(A1)" in text
    assert not any(line.startswith(("=", "@")) or ",=" in line or ",@" in line for line in text.splitlines())
    assert sorted(written["lr"]) == ["-0.5", "0.1"]  # numbers, negative ones included, are left as they are
    assert set(written["door/accuracy"]) == {"-0.25"}
