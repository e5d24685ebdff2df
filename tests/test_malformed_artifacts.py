"""Run-directory artifacts that were interrupted, mixed, swapped, stale, crafted or damaged (issue 14, items 2, 4, 6).

Each catalogue case damages one thing in a private copy of a trained, inferred and tuned run (or feeds one
out-of-range value to the converters) and checks the library's own error type and that the message names the
file and field (or column, row and value) and what to do. The interrupted-infer scenario (SIGKILL mid-way) has a
test of its own below.
"""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnn_cool_catalyst.data import ConverterError, Converters
from dnn_cool_catalyst.data.numeric_labels import ContinuousConverter, RegressionConverter
from dnn_cool_catalyst.run import artifacts
from dnn_cool_catalyst.runners import RunnerError

# run and trained_dir are fixtures: importing them makes pytest use them here.
from malformed_kit import check_refused, numbers_runner, raises, run, trained_dir  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
# Converting 1e39 to float32 makes numpy warn before our check raises; the error is what these tests look at.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")
AGAIN = "run runner.infer\\(\\) again"


def _manifest_path(run, split="test"):
    return Path(run.infer_dir, split, artifacts.MANIFEST)


def _edit_manifest(run, edit, split="test"):
    path = _manifest_path(run, split)
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _craft_npz(run, edit, split="test", task="is_even"):
    """Rewrite one output file AND its digest in the manifest, as someone crafting both would: the field checks
    must catch what the digest no longer can."""
    path = Path(run.infer_dir, split, f"{task}.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    edit(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    _edit_manifest(run, lambda m: m["tasks"][task].update(sha256=artifacts.sha256_bytes(buffer.getvalue())), split)


# -- item 2: incomplete, mixed, swapped, stale outputs --

def valid_npz_copied_over_test_npz(run):
    shutil.copy(Path(run.infer_dir, "valid", "is_even.npz"), Path(run.infer_dir, "test", "is_even.npz"))
    run.evaluate("test")


def valid_split_directory_copied_over_test(run):
    shutil.rmtree(Path(run.infer_dir, "test"))
    shutil.copytree(Path(run.infer_dir, "valid"), Path(run.infer_dir, "test"))
    run.evaluate("test")


def retrained_then_evaluated_without_infer(run):
    run.train(num_epochs=1, lr=3e-3)
    run.evaluate("test")


def retrained_then_tuned_without_infer(run):
    run.train(num_epochs=1, lr=3e-3)
    run.tune()


def retrained_then_worst_examples_without_infer(run):
    run.train(num_epochs=1, lr=3e-3)
    run.worst_examples("test")


def retrained_then_explained_without_infer(run):
    run.train(num_epochs=1, lr=3e-3)
    run.explain("test", [run.dataset.row_id(run.splits["test"][0])])


def files_of_two_infers_mixed(run):
    earlier = Path(run.infer_dir, "test", "is_even.npz").read_bytes()
    run.train(num_epochs=1, lr=3e-3)
    run.infer(splits=["test"])
    Path(run.infer_dir, "test", "is_even.npz").write_bytes(earlier)  # one task from the earlier checkpoint
    run.evaluate("test")


def outputs_without_manifest(run):
    _manifest_path(run).unlink()  # what a pre-manifest version, or a writer that died, leaves behind
    run.evaluate("test")


def checkpoint_deleted_after_infer(run):
    Path(run.checkpoint_dir, "runner.best.pth").unlink()
    run.evaluate("test")


def manifest_rows_of_other_positions(run):
    other = run.splits["valid"][:1].tolist()
    _edit_manifest(run, lambda m: m["rows"].update(positions=other + m["rows"]["positions"][1:]))
    run.evaluate("test")


def manifest_rows_of_other_labels(run):
    _edit_manifest(run, lambda m: m["rows"]["labels"].__setitem__(0, "someone else"))
    run.evaluate("test")


# -- item 6: the manifest and the index, field by field --

def manifest_corrupted(run):
    _manifest_path(run).write_text('{"version": 1, "split": "te')
    run.evaluate("test")


def manifest_checkpoint_outside_the_run(run):
    _edit_manifest(run, lambda m: m["checkpoint"].update(file="../../../etc/passwd"))
    run.evaluate("test")


def manifest_checkpoint_name_with_a_trailing_newline(run):
    _edit_manifest(run, lambda m: m["checkpoint"].update(file="runner.best.pth\n"))
    run.evaluate("test")


def manifest_digest_with_a_trailing_newline(run):
    _edit_manifest(run, lambda m: m["tasks"]["is_even"].update(sha256=m["tasks"]["is_even"]["sha256"] + "\n"))
    run.evaluate("test")


def manifest_digest_not_a_digest(run):
    _edit_manifest(run, lambda m: m["tasks"]["is_even"].update(sha256=12))
    run.evaluate("test")


def manifest_missing_a_task(run):
    _edit_manifest(run, lambda m: m["tasks"].pop("multiple_three"))
    run.evaluate("test")


def manifest_labels_fewer_than_positions(run):
    _edit_manifest(run, lambda m: m["rows"]["labels"].pop())
    run.evaluate("test")


def index_with_a_bad_count(run):
    path = Path(run.infer_dir, "index.json")
    index = json.loads(path.read_text())
    index["splits"]["test"] = "all"
    path.write_text(json.dumps(index))
    artifacts.read_index(run.infer_dir)  # what a DDP infer() returns


# -- item 6: the .npz files, field by field (digest re-crafted to match) --

def npz_five_rows_short(run):
    def short(arrays):
        for key in arrays:
            arrays[key] = arrays[key][:-5]
    _craft_npz(run, short)
    run.evaluate("test")


def npz_without_mask_gt(run):
    _craft_npz(run, lambda arrays: arrays.pop("mask_gt"))
    run.evaluate("test")


def npz_mask_of_the_wrong_dtype(run):
    _craft_npz(run, lambda arrays: arrays.update(mask_gt=arrays["mask_gt"].astype(np.float32)))
    run.evaluate("test")


def npz_targets_of_the_wrong_shape(run):
    _craft_npz(run, lambda arrays: arrays.update(targets=np.stack([arrays["targets"]] * 2, axis=1),
                                                 available=np.stack([arrays["available"]] * 2, axis=1)))
    run.evaluate("test")


def npz_index_of_other_rows(run):
    _craft_npz(run, lambda arrays: arrays.update(index=arrays["index"][::-1].copy()))
    run.evaluate("test")


def npz_with_an_extra_field(run):
    _craft_npz(run, lambda arrays: arrays.update(note=np.zeros(len(arrays["index"]))))
    run.evaluate("test")


# -- item 6: flow.json, converters.json, tuned.json --

def flow_json_tasks_not_objects(run):
    Path(run.run_dir, "flow.json").write_text(json.dumps({"name": "is_interesting", "tasks": [1, 2]}))
    numbers_runner(Path(run.run_dir).parent)


def flow_json_not_an_object(run):
    Path(run.run_dir, "flow.json").write_text("[]")
    numbers_runner(Path(run.run_dir).parent)


def flow_json_name_not_a_string(run):
    Path(run.run_dir, "flow.json").write_text(json.dumps({"name": ["x"], "tasks": []}))
    numbers_runner(Path(run.run_dir).parent)


def _edit_converters(run, edit):
    path = Path(run.run_dir).parent / "converters.json"
    state = json.loads(path.read_text())
    edit(state["columns"])
    path.write_text(json.dumps(state))
    numbers_runner(Path(run.run_dir).parent)


def converters_json_type_a_list(run):
    _edit_converters(run, lambda columns: columns["is_even"].update(type=["binary"]))


def converters_json_entry_not_an_object(run):
    _edit_converters(run, lambda columns: columns.update(is_even="binary"))


def converters_json_unknown_role(run):
    _edit_converters(run, lambda columns: columns["is_even"].update(role="target"))


def converters_json_unknown_entry_field(run):
    _edit_converters(run, lambda columns: columns["is_even"].update(extra=1))


def converters_json_unknown_state_field(run):
    _edit_converters(run, lambda columns: columns["is_even"].update(state={"threshold": 0.5}))


def _people_state(tmp_path, column_state, **types):
    """Fit a small frame once (writing converters.json), damage one column's state, build again."""
    df = pd.DataFrame({"x": np.arange(8.0), "size": np.linspace(0, 1, 8),
                       "shirt": ["red", "blue"] * 4}, index=[f"r{i}" for i in range(8)])
    state_path = str(tmp_path / "converters.json")
    converters = Converters()
    converters.type.type_mapping.update(types)
    converters.build(df, ["x"], ["size", "shirt"], state_path=state_path)
    state = json.loads(Path(state_path).read_text())
    column, key, value = column_state
    state["columns"][column]["state"][key] = value
    Path(state_path).write_text(json.dumps(state))
    converters.build(df, ["x"], ["size", "shirt"], state_path=state_path)


def converters_json_bound_as_text(tmp_path):
    _people_state(tmp_path, ("size", "lo", "0.0"), size="continuous")


def converters_json_bound_as_bool(tmp_path):
    _people_state(tmp_path, ("size", "hi", True), size="continuous")


def converters_json_class_names_as_text(tmp_path):
    _people_state(tmp_path, ("shirt", "class_names", "br"), size="continuous")


def _tuned(run, threshold):
    path = Path(run.run_dir, "tuned.json")
    saved = json.loads(path.read_text())
    saved["params"]["is_interesting"]["threshold"] = threshold
    path.write_text(json.dumps(saved))
    run.evaluate("test")


def tuned_threshold_true(run):
    _tuned(run, True)


def tuned_threshold_1e308(run):
    _tuned(run, 1e308)


def tuned_threshold_text(run):
    _tuned(run, "0.3")


def tuned_threshold_nan(run):
    _tuned(run, float("nan"))  # json writes NaN, which json.load accepts


def tuned_threshold_negative(run):
    _tuned(run, -0.2)


def tuned_params_not_an_object(run):
    path = Path(run.run_dir, "tuned.json")
    saved = json.loads(path.read_text())
    saved["params"]["is_interesting"] = 0.5
    path.write_text(json.dumps(saved))
    run.load_tuned()


def tuned_report_threshold_text(run):
    path = Path(run.run_dir, "tuned.json")
    saved = json.loads(path.read_text())
    saved["report"]["is_interesting"]["threshold"]["threshold"] = "high"
    path.write_text(json.dumps(saved))
    run.infer(splits=["test"])


# -- item 4: values that are not finite after conversion to float32 --

def _frame():
    return pd.DataFrame({"x": np.arange(6.0), "y": np.linspace(0.0, 1.0, 6), "b": [0.0, 1.0] * 3},
                        index=[f"r{i}" for i in range(6)])


def label_1e39_in_regression(tmp_path):
    df = _frame()
    df.loc["r3", "y"] = 1e39
    converters = Converters()
    converters.type.type_mapping["y"] = "regression"
    converters.build(df, ["x"], ["y"])


def input_1e39(tmp_path):
    df = _frame()
    df.loc["r2", "x"] = 1e39
    Converters().build(df, ["x"], ["b"])


def array_input_element_beyond_float32(tmp_path):
    df = _frame()
    df["e"] = [np.array([1.0, 2.0])] * 6
    df.at["r4", "e"] = np.array([1.0, -1e40])
    converters = Converters()
    converters.type.type_mapping["e"] = "array"
    converters.build(df, ["e"], ["b"])


def continuous_bounds_1e308(tmp_path):
    converters = Converters()
    converters.values.col_mapping["y"] = lambda: ContinuousConverter(lo=-1e308, hi=1e308)
    converters.build(_frame(), ["x"], ["y"])


def continuous_labels_spanning_beyond_float32(tmp_path):
    df = _frame()
    df.loc["r1", "y"], df.loc["r5", "y"] = -3e38, 3e38
    converters = Converters()
    converters.type.type_mapping["y"] = "continuous"
    converters.build(df, ["x"], ["y"])


class _DoublingConverter(RegressionConverter):
    """A custom converter whose output overflows float32 only after its own arithmetic."""

    def transform(self, series, column):
        values, available = super().transform(series, column)
        return values + 1e39, available


def custom_converter_output_beyond_float32(tmp_path):
    converters = Converters()
    converters.values.col_mapping["y"] = _DoublingConverter
    df = _frame()
    df.loc["r0", "y"] = np.nan  # a missing label's filler is never checked
    converters.build(df, ["x"], ["y"])


# -- the catalogue --

STALE = ("infer.test are stale", "runner.best.pth changed since they were written", AGAIN)
MANIFEST = [
    (valid_npz_copied_over_test_npz, raises(RunnerError, "test.is_even.npz", "not the file infer\\(\\) wrote",
                                            AGAIN)),
    (valid_split_directory_copied_over_test, raises(RunnerError, "test.manifest.json", "field 'split'",
                                                    "'test'", AGAIN)),
    (retrained_then_evaluated_without_infer, raises(RunnerError, *STALE)),
    (retrained_then_tuned_without_infer, raises(RunnerError, "infer.valid are stale", AGAIN)),
    (retrained_then_worst_examples_without_infer, raises(RunnerError, *STALE)),
    (retrained_then_explained_without_infer, raises(RunnerError, *STALE)),
    (files_of_two_infers_mixed, raises(RunnerError, "test.is_even.npz", "sha256 differs", AGAIN)),
    (outputs_without_manifest, raises(RunnerError, "infer.test are incomplete", "no manifest.json", AGAIN)),
    (checkpoint_deleted_after_infer, raises(RunnerError, "runner.best.pth, which no longer exists", AGAIN)),
    (manifest_rows_of_other_positions, raises(RunnerError, "not those of split 'test'", "rows.positions", AGAIN)),
    (manifest_rows_of_other_labels, raises(RunnerError, "computed for other rows", "'someone else'",
                                           "rows.labels", AGAIN)),
    (manifest_corrupted, raises(RunnerError, "manifest .*test.manifest.json is corrupted", AGAIN)),
    (manifest_checkpoint_outside_the_run, raises(RunnerError, "field 'checkpoint.file'", "etc/passwd", AGAIN)),
    (manifest_digest_not_a_digest, raises(RunnerError, "field 'tasks.is_even.sha256'", AGAIN)),
    (manifest_checkpoint_name_with_a_trailing_newline, raises(RunnerError, "field 'checkpoint.file'",
                                                              r"runner.best.pth\\n", AGAIN)),
    (manifest_digest_with_a_trailing_newline, raises(RunnerError, "field 'tasks.is_even.sha256'", AGAIN)),
    (manifest_missing_a_task, raises(RunnerError, "field 'tasks' must be the flow's tasks", AGAIN)),
    (manifest_labels_fewer_than_positions, raises(RunnerError, "field 'rows.labels' must be a list of \\d+ row",
                                                  AGAIN)),
    (index_with_a_bad_count, raises(artifacts.ArtifactError, "index.json: field 'splits.test' must be a sample count",
                                    "'all'")),
]
NPZ = [
    (npz_five_rows_short, raises(RunnerError, "test.is_even.npz: field 'logits' has shape \\(\\d+,\\)",
                                 "expected \\d+ rows", AGAIN)),
    (npz_without_mask_gt, raises(RunnerError, "is_even.npz: field 'mask_gt' is missing", AGAIN)),
    (npz_mask_of_the_wrong_dtype, raises(RunnerError, "is_even.npz: field 'mask_gt' has dtype float32",
                                         "expected bool")),
    (npz_targets_of_the_wrong_shape, raises(RunnerError, "is_even.npz: field 'targets' has dtype float32 and "
                                                         "shape \\(\\d+, 2\\)", "expected float32 and \\(\\d+,\\)")),
    (npz_index_of_other_rows, raises(RunnerError, "is_even.npz: field 'index' holds rows other than",
                                     AGAIN)),
    (npz_with_an_extra_field, raises(RunnerError, "is_even.npz: field 'note' is not an inference field")),
]
FILES = [
    (flow_json_tasks_not_objects, raises(RunnerError, "flow.json: field 'tasks\\[0\\]' must be an object",
                                         "got 1", "choose another runner_name")),
    (flow_json_not_an_object, raises(RunnerError, "flow.json: field '\\(top level\\)' must be an object")),
    (flow_json_name_not_a_string, raises(RunnerError, "flow.json: field 'name'", "\\['x'\\]")),
    (converters_json_type_a_list, raises(ConverterError, "converters.json': field 'columns.is_even.type' must be "
                                                         "a type name", "\\['binary'\\]", "fix or delete it")),
    (converters_json_entry_not_an_object, raises(ConverterError, "field 'columns.is_even' must be an object",
                                                 "'binary'")),
    (converters_json_unknown_role, raises(ConverterError, "field 'columns.is_even.role' must be 'input' or "
                                                          "'output'", "'target'")),
    (converters_json_unknown_entry_field, raises(ConverterError, "field 'columns.is_even.extra' must be absent")),
    (converters_json_unknown_state_field, raises(ConverterError, "columns.is_even", "threshold")),
    (converters_json_bound_as_text, raises(ConverterError, "field 'columns.size.state.lo' must be like 0.0",
                                           "got '0.0'")),
    (converters_json_bound_as_bool, raises(ConverterError, "field 'columns.size.state.hi' must be like 1.0",
                                           "got True")),
    (converters_json_class_names_as_text, raises(ConverterError, "field 'columns.shirt.state.class_names'",
                                                 "got 'br'")),
    (tuned_threshold_true, raises(RunnerError, "tuned.json: field 'params.is_interesting.threshold' must be a "
                                               "number in \\[0, 1\\], got True", "run runner.tune\\(\\) again")),
    (tuned_threshold_1e308, raises(RunnerError, "field 'params.is_interesting.threshold'", "got 1e\\+308")),
    (tuned_threshold_text, raises(RunnerError, "field 'params.is_interesting.threshold'", "got '0.3'")),
    (tuned_threshold_nan, raises(RunnerError, "field 'params.is_interesting.threshold'", "got nan")),
    (tuned_threshold_negative, raises(RunnerError, "field 'params.is_interesting.threshold'", "got -0.2")),
    (tuned_params_not_an_object, raises(RunnerError, "field 'params.is_interesting' must be an object")),
    (tuned_report_threshold_text, raises(RunnerError, "field 'report.is_interesting.threshold.threshold'",
                                         "'high'")),
]
FLOAT32 = [
    (label_1e39_in_regression, raises(ConverterError, "output column 'y': value 1e\\+39 at row 'r3' is not finite "
                                                      "in float32")),
    (input_1e39, raises(ConverterError, "input column 'x': value 1e\\+39 at row 'r2' is not finite in float32")),
    (array_input_element_beyond_float32, raises(ConverterError, "input column 'e': value -1e\\+40 at row 'r4'")),
    (continuous_bounds_1e308, raises(ConverterError, "continuous column 'y': bounds lo=-1e\\+308, hi=1e\\+308 are "
                                                     "not finite in float32")),
    (continuous_labels_spanning_beyond_float32, raises(ConverterError, "continuous column 'y': bounds",
                                                       "not finite in float32", "rows 'r1' and 'r5'")),
    (custom_converter_output_beyond_float32, raises(ConverterError, "output column 'y': value 0.2 at row 'r1' is "
                                                                    "not finite in float32 \\(inf after")),
]
CATALOGUE = MANIFEST + NPZ + FILES + FLOAT32


def test_the_catalogue_has_one_case_per_variant():
    assert len(CATALOGUE) == 49
    assert len({case.__name__ for case, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("case, expected", [pytest.param(c, e, id=c.__name__) for c, e in CATALOGUE])
def test_damaged_artifact_is_refused_naming_file_and_field(case, expected, request, tmp_path):
    check_refused(case, *expected, request, tmp_path)


# -- what is still accepted --

def test_untouched_outputs_and_the_tuners_own_thresholds_are_accepted(run):
    table = run.evaluate("test")
    assert len(table) and set(table.columns) >= {"task_path", "metric_name", "metric_res"}
    # The tuner's "predict nothing" threshold is one float64 step above 1.0 (a saturated sigmoid scores 1.0).
    path = Path(run.run_dir, "tuned.json")
    saved = json.loads(path.read_text())
    saved["params"]["is_interesting"]["threshold"] = float(np.nextafter(1.0, np.inf))
    path.write_text(json.dumps(saved))
    run.load_tuned()
    assert run.flow.tasks["is_interesting"].threshold > 1.0
    run.evaluate("test")


def test_infer_leaves_no_hidden_directories_and_a_manifest_per_split(run):
    run.infer(splits=["valid"])
    names = sorted(os.listdir(run.infer_dir))
    assert names == ["index.json", "test", "train", "valid"]
    manifest = json.loads(_manifest_path(run, "valid").read_text())
    assert manifest["rows"]["positions"] == run.splits["valid"].tolist()
    assert manifest["rows"]["labels"] == [run.dataset.row_id(p) for p in run.splits["valid"]]
    assert manifest["checkpoint"]["file"] == "runner.best.pth"
    assert manifest["checkpoint"]["sha256"] == artifacts.sha256_bytes(
        Path(run.checkpoint_dir, "runner.best.pth").read_bytes())
    for task, entry in manifest["tasks"].items():
        assert entry["sha256"] == artifacts.sha256_bytes(Path(run.infer_dir, "valid", f"{task}.npz").read_bytes())


def test_a_failed_infer_keeps_the_previous_outputs_of_the_split(run, monkeypatch):
    before = {p.name: p.read_bytes() for p in Path(run.infer_dir, "test").iterdir()}
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(path, data)

    original = artifacts.atomic_write_bytes
    monkeypatch.setattr(artifacts, "atomic_write_bytes", failing)
    with pytest.raises(OSError, match="No space left"):
        run.infer(splits=["test"])
    after = {p.name: p.read_bytes() for p in Path(run.infer_dir, "test").iterdir()}
    assert after == before
    assert not [n for n in os.listdir(run.infer_dir) if n.startswith(".")]
    run.evaluate("test")  # still complete and consistent


# -- SIGKILL during infer() --

KILLED_INFER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    from dnn_cool_catalyst.run import artifacts
    from malformed_kit import numbers_runner  # the same builder as the parent's

    runner = numbers_runner(sys.argv[1])
    original, calls = artifacts.atomic_write_bytes, []

    def dying(path, data):
        calls.append(path)
        if len(calls) == 3:  # two task files of the split written, the third never
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path, data)

    def dying_between_the_renames(fresh, target):
        # the first of the two renames (as _swap_in names it), then death
        os.replace(target, os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".old-killed"))
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "swap":
        artifacts._swap_in = dying_between_the_renames
    else:
        artifacts.atomic_write_bytes = dying
    runner.infer(splits=["test"])
    raise SystemExit("not killed")
""")


def _killed_infer(project_dir, where: str) -> subprocess.CompletedProcess:
    """infer(splits=["test"]) in a fresh interpreter that SIGKILLs itself at ``where`` ("write": after two of the
    split's files; "swap": between the two renames that swap the split in)."""
    return subprocess.run([sys.executable, "-c", KILLED_INFER, str(project_dir), where, HERE], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def test_sigkill_during_infer_then_evaluate_refuses_and_a_fresh_infer_matches_an_uninterrupted_one(trained_dir,
                                                                                                  tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    shutil.copytree(trained_dir, killed_dir)
    numbers_runner(killed_dir).train(num_epochs=1, lr=3e-3)  # (the best checkpoint changes)
    shutil.copytree(killed_dir, reference_dir)

    done = _killed_infer(killed_dir, "write")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]

    killed = numbers_runner(killed_dir)
    with pytest.raises(RunnerError, match="infer.test are stale.*run runner.infer\\(\\) again"):
        killed.evaluate("test")
    killed.infer(splits=["test"])
    assert not [n for n in os.listdir(killed.infer_dir) if n.startswith(".")]  # the dead writer's leftovers
    table = killed.evaluate("test")

    reference = numbers_runner(reference_dir)
    reference.infer(splits=["test"])
    pd.testing.assert_frame_equal(table, reference.evaluate("test"))
    for name in ("is_even.npz", "multiple_three.npz"):
        assert (Path(killed.infer_dir, "test", name).read_bytes()
                == Path(reference.infer_dir, "test", name).read_bytes())


def test_sigkill_during_the_first_infer_leaves_no_split(trained_dir, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained_dir, project)
    shutil.rmtree(project / "run" / "infer")
    done = _killed_infer(project, "write")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    with pytest.raises(RunnerError, match="outputs of split 'test' .* are incomplete \\(infer\\(\\) was interrupted"):
        numbers_runner(project).evaluate("test")


def test_sigkill_between_the_two_renames_of_the_swap_leaves_no_split_then_infer_recovers(trained_dir, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained_dir, project)
    done = _killed_infer(project, "swap")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    runner = numbers_runner(project)
    assert [n for n in os.listdir(runner.infer_dir) if n.startswith(".test.new-")]  # the complete, unswapped one
    with pytest.raises(RunnerError, match="outputs of split 'test' .* are incomplete \\(infer\\(\\) was interrupted"
                                          ".*run runner.infer\\(\\) again"):
        runner.evaluate("test")
    runner.evaluate("valid")  # the other splits are untouched
    runner.infer(splits=["test"])
    assert not [n for n in os.listdir(runner.infer_dir) if n.startswith(".")]
    runner.evaluate("test")


# -- files that list every row of a split: their size limit grows with the rows ----------------------------------

def test_files_listing_rows_are_read_past_the_general_size_limit_but_not_past_theirs(run, monkeypatch):
    """splits.json and inference manifests list every row (70 MB of splits.json at 5 x 10^6 rows): the 64 MB limit
    of other files would refuse a large frame's own run. Their limit is ROW_BYTES per listed row instead."""
    from dnn_cool_catalyst import safe_read
    from dnn_cool_catalyst.run import splits as splits_file

    path, rows = run.run_layout.splits, sum(len(v) for v in run.splits.values())
    monkeypatch.setattr(safe_read, "MAX_BYTES", 256)  # below both files' sizes
    assert os.path.getsize(path) > 256 and os.path.getsize(_manifest_path(run)) > 256
    assert splits_file._read(path, rows)["splits"]["test"] == [run.dataset.row_id(p) for p in run.splits["test"]]
    manifest = artifacts.read_manifest(run.infer_dir, "test", list(run.flow.tasks), len(run.splits["test"]))
    assert manifest["rows"]["positions"] == run.splits["test"].tolist()
    evaluated = run.evaluate(loader="test")  # reads the manifests with the split's size
    assert len(evaluated) > 0
    monkeypatch.setattr(safe_read, "ROW_BYTES", 1)  # now both are larger than their limit
    with pytest.raises(RunnerError, match=f"cannot read the saved splits {path} .*is larger than 256 bytes"):
        splits_file._read(path, rows)
    with pytest.raises(ValueError, match="manifest.json is larger than 256 bytes; refused"):
        artifacts.read_manifest(run.infer_dir, "test", list(run.flow.tasks), len(run.splits["test"]))


@pytest.mark.parametrize("text", [b'{"a": [1, {"b": "[[["}], "c": [[[]]]}', b"[[[[[]]]]]" * 3, b"]]][[", b""])
def test_json_depth_by_pieces_is_the_depth_of_the_whole(text, monkeypatch):
    from dnn_cool_catalyst import safe_read

    whole = safe_read.json_depth(text)
    monkeypatch.setattr(safe_read, "_DEPTH_PIECE", 3)  # brackets and strings across piece boundaries
    assert safe_read.json_depth(text) == whole
    expected = {b"": 0, b"]]][[": 0}.get(text, 4 if text.startswith(b"{") else 5)
    assert whole == expected
