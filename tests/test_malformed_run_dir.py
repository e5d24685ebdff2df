"""Malformed or crafted run directories and names (issue 13 point 5, issue 14 items 1, 5): each case damages one
thing and checks the library's own error, naming the file and the field (or the name) and what was expected.
Companion to tests/test_malformed.py."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.data import ConverterError
from dnn_cool_catalyst.callbacks.checkpoint import CheckpointError
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.config.validate import ConfigError
from dnn_cool_catalyst.export import ExportError
from dnn_cool_catalyst.prediction.cli import predict_csv
from dnn_cool_catalyst.report import ReportError, write_report
from dnn_cool_catalyst.run.splits import index_fingerprint
from dnn_cool_catalyst.synthetic.numbers import numbers_frame

from malformed_kit import SAMPLES, check_refused, numbers_runner, private_copy, trained_project

VICTIM_BYTES = b"someone else's file"


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    return trained_project(tmp_path_factory.mktemp("trained"), infer=False)


@pytest.fixture
def run(trained_dir, tmp_path):
    """The path of a private copy of the trained project's run directory, so a case may damage its files."""
    return private_copy(trained_dir, tmp_path) / "run"


def edit_splits(run, change):
    path = run / "splits.json"
    saved = json.loads(path.read_text())
    change(saved)
    path.write_text(json.dumps(saved))
    numbers_runner(run.parent)


def fix_fingerprint(saved):
    saved["index_fingerprint"] = index_fingerprint(sum(saved["splits"].values(), []))


# -- splits.json ---------------------------------------------------------------------------------------------------

def splits_not_json(run):
    (run / "splits.json").write_text('{"splits": ')
    numbers_runner(run.parent)


def splits_nested_100000_deep(run):
    (run / "splits.json").write_text("[" * 100_000 + "]" * 100_000)
    numbers_runner(run.parent)


def splits_a_list(run):
    (run / "splits.json").write_text("[1, 2, 3]")
    numbers_runner(run.parent)


def splits_unknown_format(run):
    edit_splits(run, lambda s: s.update(format=3))


def splits_seed_a_string(run):
    edit_splits(run, lambda s: s.update(seed="42"))


def splits_two_fractions(run):
    edit_splits(run, lambda s: s.update(fractions=[0.5, 0.5]))


def splits_stratify_a_number(run):
    edit_splits(run, lambda s: s.update(stratify=3))


def splits_without_test(run):
    edit_splits(run, lambda s: s["splits"].pop("test"))


def splits_train_not_a_list(run):
    edit_splits(run, lambda s: s["splits"].update(train="0-111"))


def splits_float_label(run):
    edit_splits(run, lambda s: s["splits"]["train"].append(1.5))


def splits_bool_label(run):
    edit_splits(run, lambda s: s["splits"]["valid"].insert(0, True))


def splits_duplicate_row(run):
    edit_splits(run, lambda s: s["splits"]["test"].append(s["splits"]["test"][0]))


def splits_overlapping(run):
    edit_splits(run, lambda s: s["splits"]["valid"].append(s["splits"]["train"][0]))


def splits_label_not_in_the_frame(run):
    def change(saved):
        saved["splits"]["test"][0] = 99999  # consistent file (fingerprint fixed), other rows than the frame's
        fix_fingerprint(saved)
    edit_splits(run, change)


def splits_edited_without_fingerprint(run):
    def change(saved):
        saved["splits"]["test"][0] = 99999
    edit_splits(run, change)


def splits_wrong_num_samples(run):
    edit_splits(run, lambda s: s.update(num_samples=SAMPLES + 1))


def legacy_splits_out_of_range(run):
    (run / "splits.json").write_text(json.dumps({"num_samples": SAMPLES, "splits": {
        "train": list(range(100)), "valid": list(range(100, 130)), "test": list(range(130, 159)) + [160]}}))
    numbers_runner(run.parent)


# -- checkpoints/runner.storage.json and checkpoint files ----------------------------------------------------------

def edit_storage(run, entries):
    path = run / "checkpoints" / "runner.storage.json"
    saved = json.loads(path.read_text())
    saved["storage"] = entries
    path.write_text(json.dumps(saved))
    numbers_runner(run.parent).train(num_epochs=2, resume=True)


def victim(run) -> Path:
    """A file outside the run directory that a crafted entry points at; it must survive untouched."""
    path = run.parent.parent / "victim.pth"
    path.write_bytes(VICTIM_BYTES)
    return path


def storage_absolute_path_outside(run):
    edit_storage(run, [{"logpath": str(victim(run)), "metric": -1.0}])


def storage_dotdot_path(run):
    victim(run)
    edit_storage(run, [{"logpath": "../../../victim.pth", "metric": -1.0}])


def storage_symlink_out(run):
    link = run / "checkpoints" / "runner.0009.pth"
    os.symlink(victim(run), link)
    edit_storage(run, [{"logpath": "runner.0009.pth", "metric": -1.0}])


def storage_not_a_checkpoint_file(run):
    edit_storage(run, [{"logpath": "runner.storage.json", "metric": -1.0}])


def storage_metric_a_string(run):
    edit_storage(run, [{"logpath": "runner.0001.pth", "metric": "0.5"}])


def storage_entry_a_string(run):
    edit_storage(run, ["runner.0001.pth"])


def storage_not_a_list(run):
    edit_storage(run, {"logpath": "runner.0001.pth", "metric": 0.5})


def storage_nested_100000_deep(run):
    (run / "checkpoints" / "runner.storage.json").write_text('{"storage": ' + "[" * 100_000 + "]" * 100_000 + "}")
    numbers_runner(run.parent).train(num_epochs=2, resume=True)


def last_checkpoint_symlinked_out(run):
    last = run / "checkpoints" / "runner.last.pth"
    target = victim(run)
    last.unlink()
    os.symlink(target, last)
    numbers_runner(run.parent).train(num_epochs=2, resume=True)


def best_checkpoint_symlinked_out(run):
    best = run / "checkpoints" / "runner.best.pth"
    target = victim(run)
    best.unlink()
    os.symlink(target, best)
    numbers_runner(run.parent).infer()


# -- a run's own files as the output of a command (issue 26, bug 1) -------------------------------------------------

def _new_rows(run) -> str:
    path = run.parent.parent / "new.csv"
    numbers_frame(10, seed=1)[["number"]].to_csv(path, index=False)
    return str(path)


def predict_out_onto_the_best_checkpoint(run):
    predict_csv(str(run), _new_rows(run), str(run / "checkpoints" / "runner.best.pth"))


def predict_out_onto_splits_json(run):
    predict_csv(str(run), _new_rows(run), str(run / "splits.json"))


def predict_out_onto_config_yml(run):
    predict_csv(str(run), _new_rows(run), str(run / "config.yml"))


def predict_out_onto_tuned_json(run):
    (run / "tuned.json").write_text("{}")
    predict_csv(str(run), _new_rows(run), str(run / "tuned.json"))


def predict_out_through_a_symlink_into_the_run(run):
    link = run.parent.parent / "out.csv"
    os.symlink(run / "flow.json", link)
    predict_csv(str(run), _new_rows(run), str(link))


def predict_out_into_a_symlinked_folder_of_the_run(run):
    link = run.parent.parent / "elsewhere"
    os.symlink(run / "checkpoints", link)
    predict_csv(str(run), _new_rows(run), str(link / "predictions.csv"))


def export_into_the_checkpoints_folder(run):
    numbers_runner(run.parent).export(str(run / "checkpoints" / "model.pt2"))


def export_into_the_run_root(run):
    numbers_runner(run.parent).export(str(run / "model.pt2"), overwrite=True)


def report_out_into_a_run_directory(run):
    write_report(str(run.parent), str(run / "checkpoints"))


def report_out_is_the_run_directory(run):
    write_report(str(run.parent), str(run))


def checkpoints_folder_symlinked_out(run):
    outside = run.parent.parent / "elsewhere"
    (run / "checkpoints").rename(outside)
    os.symlink(outside, run / "checkpoints")
    numbers_runner(run.parent).train(num_epochs=2, resume=True)


def checkpoints_folder_symlinked_out_then_infer(run):
    outside = run.parent.parent / "elsewhere"
    (run / "checkpoints").rename(outside)
    os.symlink(outside, run / "checkpoints")
    numbers_runner(run.parent).infer()


def stage_named_with_a_trailing_newline(run):
    numbers_runner(run.parent, "staged").train(stages=[{"name": "warm\n", "num_epochs": 1}])


OWNED = "lies inside the run directory .*a run's own files are never overwritten by an output"


# -- names ---------------------------------------------------------------------------------------------------------

def project_with_outputs(tmp_path, columns):
    data = {"x": np.arange(12.0)}
    data.update({c: [0.0, 1.0] * 6 for c in columns})
    return Project(pd.DataFrame(data), "x", list(columns), project_dir=tmp_path)


def runner_named(tmp_path, name):
    project = project_with_outputs(tmp_path, ["a"])

    @project.add_flow
    def flow_a(flow, x, out):
        out += flow.a(x.x)
        return out

    project.runner(torch.nn.Identity(), runner_name=name)


def task_starting_with_underscore(tmp_path):
    project_with_outputs(tmp_path, ["_hidden"])


def task_named_overall(tmp_path):
    project_with_outputs(tmp_path, ["overall"])


def nested_flow_named_like_a_task(tmp_path):
    project = project_with_outputs(tmp_path, ["a", "b"])

    @project.add_flow
    def a(flow, x, out):
        out += flow.b(x.x)
        return out

    @project.add_flow
    def outer(flow, x, out):
        out += flow.a(x)
        return out


CASES = [
    (splits_not_json, RunnerError, ["cannot read the saved splits .*splits.json as JSON", "resplit=True"]),
    (splits_nested_100000_deep, RunnerError, ["cannot read the saved splits .*splits.json",
                                              "nested deeper than 100 levels"]),
    (splits_a_list, RunnerError, ["saved splits .*splits.json hold a list, expected an object with 'splits'"]),
    (splits_unknown_format, RunnerError, ["splits.json: field 'format' must be 2, got 3"]),
    (splits_seed_a_string, RunnerError, ["splits.json: field 'seed' must be an int, got '42'"]),
    (splits_two_fractions, RunnerError, ["field 'fractions' must be three non-negative numbers summing to 1"]),
    (splits_stratify_a_number, RunnerError, ["field 'stratify' must be a task name or null, got 3"]),
    (splits_without_test, RunnerError, [r"field 'splits' must be an object with the lists \['train', 'valid', "
                                        r"'test'\]"]),
    (splits_train_not_a_list, RunnerError, ["field 'splits.train' must be a list of row labels, got '0-111'"]),
    (splits_float_label, RunnerError, [r"field 'splits.train' must be a list of row labels \(ints or strings\), "
                                       r"got 1.5"]),
    (splits_bool_label, RunnerError, ["field 'splits.valid' must be a list of row labels .*got True"]),
    (splits_duplicate_row, RunnerError, [r"splits.json: field 'splits.test' lists the row \d+ twice"]),
    (splits_overlapping, RunnerError, [r"splits.json: field 'splits.valid' lists the row \d+ also in 'train'",
                                       "must not overlap"]),
    (splits_label_not_in_the_frame, RunnerError, [r"rows differ from those split in .*splits.json: 1 row\(s\) "
                                                  r"added \[\d+\], 1 removed \[99999\]"]),
    (splits_edited_without_fingerprint, RunnerError, ["splits.json: field 'index_fingerprint' does not match"]),
    (splits_wrong_num_samples, RunnerError, [rf"field 'num_samples' must be the number of rows listed in 'splits' "
                                             rf"\({SAMPLES}\), got {SAMPLES + 1}"]),
    (legacy_splits_out_of_range, RunnerError, [rf"field 'splits.test' must be distinct row positions in "
                                               rf"\[0, {SAMPLES}\), got 160"]),
    (storage_absolute_path_outside, CheckpointError, [r"runner.storage.json: entry storage\[0\] logpath "
                                                      r"'.*victim.pth' is not a checkpoint file of"]),
    (storage_dotdot_path, CheckpointError, [r"entry storage\[0\] logpath '../../../victim.pth' is not a "
                                            r"checkpoint file"]),
    (storage_symlink_out, CheckpointError, [r"entry storage\[0\] logpath 'runner.0009.pth' is not a checkpoint "
                                            r"file"]),
    (storage_not_a_checkpoint_file, CheckpointError, [r"entry storage\[0\] logpath 'runner.storage.json'"]),
    (storage_metric_a_string, CheckpointError, [r"entry storage\[0\] must be \{'logpath': <file name>, 'metric': "
                                                r"<number>\}, got .*'0.5'"]),
    (storage_entry_a_string, CheckpointError, [r"entry storage\[0\] must be"]),
    (storage_not_a_list, CheckpointError, ["checkpoint index .*runner.storage.json is corrupted",
                                           "'storage' is a dict, expected a list"]),
    (storage_nested_100000_deep, CheckpointError, ["runner.storage.json", "nested deeper than 100 levels"]),
    (last_checkpoint_symlinked_out, CheckpointError, ["checkpoint .*runner.last.pth leads outside"]),
    (best_checkpoint_symlinked_out, RunnerError, ["checkpoint .*runner.best.pth leads outside"]),
    (lambda tmp_path: runner_named(tmp_path, "../evil"), RunnerError, ["runner_name must be a single directory "
                                                                       "name inside project_dir", "'../evil'"]),
    (task_starting_with_underscore, ConverterError, ["output column '_hidden'", "task name '_hidden' starts with "
                                                                                "'_'", "rename"]),
    (task_named_overall, ConverterError, ["output column 'overall'", "task name 'overall' is reserved",
                                          "worst_examples"]),
    (nested_flow_named_like_a_task, Exception, ["'a' is also the name of a flow, but flow.a means the task"]),
    (predict_out_onto_the_best_checkpoint, ConfigError, [r"--out .*runner.best.pth", r"as 'checkpoints/runner.best"
                                                         r".pth'", OWNED]),
    (predict_out_onto_splits_json, ConfigError, [r"--out .*splits.json", "as 'splits.json'", OWNED]),
    (predict_out_onto_config_yml, ConfigError, [r"--out .*config.yml", "as 'config.yml'", OWNED]),
    (predict_out_onto_tuned_json, ConfigError, [r"--out .*tuned.json", "as 'tuned.json'", OWNED]),
    (predict_out_through_a_symlink_into_the_run, ConfigError, [r"--out .*out.csv", "as 'flow.json'", OWNED]),
    (predict_out_into_a_symlinked_folder_of_the_run, ConfigError, ["as 'checkpoints/predictions.csv'", OWNED]),
    (export_into_the_checkpoints_folder, ExportError, ["path .*model.pt2", "as 'checkpoints/model.pt2'", OWNED,
                                                       r"or under its export/"]),
    (export_into_the_run_root, ExportError, ["as 'model.pt2'", OWNED]),
    (report_out_into_a_run_directory, ReportError, ["--out .*checkpoints", "as 'checkpoints'", OWNED]),
    (report_out_is_the_run_directory, ReportError, ["as the run directory itself", OWNED]),
    (checkpoints_folder_symlinked_out, RunnerError, [r"checkpoints leads outside the run directory .*elsewhere: a "
                                                     r"symlink\?\)", "replace the link with a real folder"]),
    (checkpoints_folder_symlinked_out_then_infer, RunnerError, [r"checkpoints leads outside the run directory"]),
    (stage_named_with_a_trailing_newline, RunnerError, [r"stages\[0\].name must be letters, digits, '_' or '-'",
                                                        r"got 'warm\\n'"]),
]


@pytest.mark.parametrize("case, error, patterns", [pytest.param(*c, id=getattr(c[0], "__name__", "lambda"))
                                                   for c in CASES])
def test_malformed_run_directory_is_refused_naming_file_and_field(case, error, patterns, request, tmp_path):
    run = request.getfixturevalue("run") if OWNED in patterns else None  # outputs aimed at the run's own files
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} if run is not None else {}
    check_refused(case, error, patterns, request, tmp_path)
    if before:  # refused before anything was written: every file of the run is as it was
        run_files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        assert {p: run_files.get(p) for p in before} == before
    elsewhere = tmp_path / "elsewhere"
    if elsewhere.is_dir():  # a symlinked checkpoints/ was neither written into nor resumed from
        assert sorted(p.name for p in elsewhere.iterdir()) == ["runner.0001.pth", "runner.best.pth",
                                                               "runner.last.pth", "runner.storage.json"]
    assert not (tmp_path / "project" / "staged" / "checkpoints").exists()  # no "warm\n" folder
    victim_path = tmp_path / "victim.pth"
    if victim_path.exists():  # the file a crafted entry pointed at was neither deleted nor overwritten
        assert victim_path.read_bytes() == VICTIM_BYTES


@pytest.mark.parametrize("name", ["", ".", "..", "../evil", "a/b", "a\\b", "/tmp/abs", None, 3])
def test_runner_name_must_be_one_safe_path_component(tmp_path, name):
    project_dir = tmp_path / "project"
    with pytest.raises(RunnerError, match="runner_name must be a single directory name inside project_dir"):
        runner_named(project_dir, name)
    assert sorted(os.listdir(tmp_path)) == ["project"]
    assert sorted(p.name for p in project_dir.iterdir() if p.is_dir()) == []  # no run directory was made
