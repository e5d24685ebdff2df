"""Console output of runner.train: verbose='auto', the per-epoch summary table, and no torch/Catalyst warning."""
import io
import re
import sys
import warnings

import pytest
import torch

from dnn_cool_catalyst import Project, RunnerError
from dnn_cool_catalyst.callbacks.console import resolve_verbose
from dnn_cool_catalyst.console_summary import format_epoch_summary, format_number, headline_metrics
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def test_summary_text_is_exact():
    metrics = {"train": {"loss": 12.3456789, "loss/a": 0.5, "a/accuracy": 1.0, "task_mean": 0.75,
                         "loss/b.c": 3.14159e-5, "b.c/mae": 123456.0}}
    text = format_epoch_summary(2, 10, metrics, [("a", "accuracy"), ("b.c", "mae"), ("d", None)], note="(1.5 s)")
    assert text == (
        "epoch 2/10 (1.5 s)\n"
        "task         loss train  metric     train\n"
        "(all tasks)       12.35  task_mean  0.7500\n"
        "a                0.5000  accuracy   1.000\n"
        "b.c           3.142e-05  mae        1.235e+05\n"
        "d                     -  -          -")


def test_numbers_and_headline_metrics(tmp_path):
    assert [format_number(v) for v in (0.0, -1.23456, 99999.0, float("inf"))] == ["0.000", "-1.235", "1.000e+05",
                                                                                   "-"]
    df = numbers_frame(40, seed=0)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=str(tmp_path))
    flow = define_flows(project)
    assert headline_metrics(flow) == [("is_interesting", "accuracy"), ("numerical_flow.is_even", "accuracy"),
                                      ("numerical_flow.predict_positive", "accuracy"),
                                      ("numerical_flow.multiple_three", "accuracy")]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_auto_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert resolve_verbose("auto") is True
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert resolve_verbose("auto") is False
    assert resolve_verbose(True) is True and resolve_verbose(False) is False
    with pytest.raises(RunnerError, match=r"verbose must be True, False or 'auto' .* got 'yes'"):
        resolve_verbose("yes")


def _runner(tmp_path, name):
    torch.manual_seed(0)
    df = numbers_frame(160, seed=0)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=str(tmp_path))
    flow = define_flows(project)
    return project.runner(model=numbers_model(flow, hidden=8), runner_name=name, batch_size=64, seed=0)


def _train(runner, capsys, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.train(num_epochs=2, **kwargs)
    out = capsys.readouterr().out
    return out, [str(w.message) for w in caught]


def test_verbose_train_prints_one_small_table_per_epoch_and_no_grad_warning(tmp_path, capsys):
    out, caught = _train(_runner(tmp_path, "loud"), capsys, verbose=True)
    assert not [m for m in caught if "requires_grad" in m], caught
    tables = re.findall(r"^epoch (\d)/2 \(\d+\.\d s\)\n(task .*)\n((?:.+\n){5})", out, flags=re.M)
    assert [t[0] for t in tables] == ["1", "2"], out
    for _, header, body in tables:
        assert header.split() == ["task", "loss", "train", "loss", "valid", "metric", "train", "valid"]
        rows = [line.split() for line in body.splitlines()]
        assert [r[0] for r in rows] == ["(all", "is_interesting", "numerical_flow.is_even",
                                        "numerical_flow.predict_positive", "numerical_flow.multiple_three"]
        for row in rows:
            numbers = row[-5:-3] + row[-2:]  # loss train, loss valid, metric train, metric valid
            four_digits = r"[1-9]\.\d{3}|0\.\d{4}|\d\d\.\d\d|-"  # 4 significant digits (or nothing measured)
            assert all(re.fullmatch(four_digits, n) for n in numbers), row
    assert "|" not in out and "momentum" not in out  # not Catalyst's ConsoleLogger line


def test_quiet_when_not_a_terminal(tmp_path, capsys):
    out, caught = _train(_runner(tmp_path, "quiet"), capsys)  # verbose="auto", stdout captured: not a terminal
    assert out == ""
    assert not [m for m in caught if "requires_grad" in m], caught
