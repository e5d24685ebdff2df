"""Issue 18, item 3: ``dnn-cool-predict --run-dir DIR --csv new.csv --out predictions.csv`` on a run made by
``dnn-cool-run``, which saves the config it ran as ``<run_dir>/config.yml``."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from dnn_cool_catalyst.config.saved import ORIGIN_KEY
from dnn_cool_catalyst.prediction.cli import main, predict_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join(REPO, "configs", "tabular.yml")
NUMBERS = os.path.join(REPO, "configs", "data", "numbers.csv")
TASKS = ["is_interesting", "is_even", "predict_positive", "multiple_three"]
INPUTS = ["number", "remainder_2", "remainder_3", "remainder_5"]


def run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def config_run(tmp_path_factory):
    """A one-epoch dnn-cool-run of configs/tabular.yml, started from the repository root (its relative paths)."""
    tmp = tmp_path_factory.mktemp("cli")
    tiny = tmp / "tiny.yml"
    tiny.write_text(yaml.safe_dump({"run": [{"_call_": "train", "num_epochs": 3}, {"_call_": "infer"},
                                            {"_call_": "tune"}]}))
    done = run(["dnn_cool_catalyst.config", "--config", TABULAR, str(tiny), "--set",
                f"project.project_dir={tmp / 'proj'}", "run.0.num_epochs=1"], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    new = pd.read_csv(NUMBERS).head(40)
    new[INPUTS].to_csv(tmp / "new.csv", index=False)  # no label columns: they are not needed
    return tmp, tmp / "proj" / "numbers_mlp"


def test_dnn_cool_run_saves_the_config_it_ran(config_run):
    _, run_dir = config_run
    with open(run_dir / "config.yml", encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    assert saved["run"][0] == {"_call_": "train", "num_epochs": 1}  # the --set override, as run
    assert saved["project"]["project_dir"] == str(run_dir.parent)
    assert saved["project"]["csv"] == "configs/data/numbers.csv"  # relative: read from the saved cwd
    assert saved[ORIGIN_KEY]["cwd"] == REPO and saved[ORIGIN_KEY]["overrides"][1] == "run.0.num_epochs=1"


def test_predict_cli_end_to_end_from_another_directory(config_run):
    tmp, run_dir = config_run
    done = run(["dnn_cool_catalyst.predict", "--run-dir", os.path.relpath(run_dir, tmp), "--csv", "new.csv",
                "--out", "predictions.csv", "--proba", "--trust-config"],
               cwd=tmp)  # relative paths: from where it is called
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp / "predictions.csv")
    assert len(table) == 40 and list(table.columns) == [c for t in TASKS for c in (t, f"proba_{t}")]
    # The same as runner.predict in this process, with the tuned thresholds; gating on the decoded parents.
    expected = predict_csv(str(run_dir), str(tmp / "new.csv"), str(tmp / "again.csv"), proba=True,
                           trust_config=True)
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp / "again.csv"))
    assert expected["is_interesting"].notna().all() and set(expected["is_interesting"]) <= {0, 1}
    nested = expected[TASKS[1:]]
    assert nested[expected["is_interesting"] == 0].isna().all().all()
    applies = expected["predict_positive"].notna()
    assert (applies == ((expected["is_interesting"] == 1) & (expected["is_even"] == 1))).all()
    assert json.load(open(run_dir / "tuned.json"))["params"]  # thresholds came from the tuned file


def test_index_col_is_written_as_the_row_index(config_run, tmp_path):
    tmp, run_dir = config_run
    rows = pd.read_csv(NUMBERS).head(5)[INPUTS]
    rows.insert(0, "id", [f"n{i}" for i in range(5)])
    rows.to_csv(tmp_path / "ids.csv", index=False)
    assert main(["--run-dir", str(run_dir), "--csv", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "p.csv"),
                 "--index-col", "id", "--trust-config"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["id"] + TASKS and list(table["id"]) == [f"n{i}" for i in range(5)]


def cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dnn-cool-predict: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_errors_are_one_line_with_status_2(config_run, tmp_path, capsys):
    tmp, run_dir = config_run
    out = str(tmp_path / "p.csv")
    python_run = tmp_path / "python_run"
    python_run.mkdir()
    err = cli_error(capsys, ["--run-dir", str(python_run), "--csv", str(tmp / "new.csv"), "--out", out])
    assert "no config.yml" in err and "runner.predict(df)" in err
    pd.read_csv(NUMBERS).head(3)[INPUTS[:3]].to_csv(tmp_path / "short.csv", index=False)
    err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp_path / "short.csv"), "--out", out,
                             "--trust-config"])
    assert "['remainder_5']" in err
    err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp_path / "absent.csv"), "--out", out,
                             "--trust-config"])
    assert "absent.csv" in err and "does not exist" in err
    err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp / "new.csv"), "--out",
                             str(tmp_path / "no" / "p.csv"), "--trust-config"])
    assert "directory does not exist" in err
    err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp / "new.csv"), "--out", out,
                             "--checkpoint", "nope", "--trust-config"])
    assert "runner.nope.pth" in err and "train first" in err
    assert not os.path.exists(out)  # nothing half-written


def test_predictions_csv_prints_labels_as_the_training_csv_writes_them(config_run, tmp_path):
    """numbers.csv writes its 0/1 labels as 0.0/1.0 (float columns, empty where not labelled): the predictions
    CSV prints the same texts, gated tasks included (empty where a task does not apply)."""
    _, run_dir = config_run
    rows = pd.read_csv(NUMBERS).head(30)[INPUTS]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_csv(str(run_dir), str(tmp_path / "rows.csv"), str(tmp_path / "p.csv"), trust_config=True)
    printed = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    written = pd.read_csv(NUMBERS, dtype=str, keep_default_na=False)
    for task in TASKS:
        labels = set(written[task]) - {""}
        assert labels == {"0.0", "1.0"}, task
        assert set(printed[task]) - {""} <= labels and set(printed[task]) != {""}, task


def test_a_config_importing_foreign_code_needs_trust_config(config_run, tmp_path, capsys):
    """A run directory from elsewhere: its config.yml is code. Nothing outside the library is imported or run
    unless --trust-config is given, and the error lists what would run."""
    tmp, run_dir = config_run
    path = run_dir / "config.yml"
    original = path.read_text(encoding="utf-8")
    probe = tmp_path / "probe_marker"
    (tmp_path / "dnn_cool_probe.py").write_text(f"open({str(probe)!r}, 'w').write('imported')\nNet = None\n")
    config = yaml.safe_load(original)
    config["runner"]["model"]["_target_"] = "dnn_cool_probe.Net"
    sys.path.insert(0, str(tmp_path))
    try:
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        out = str(tmp_path / "p.csv")
        err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp / "new.csv"), "--out", out])
        assert "config.yml imports and runs code from outside dnn_cool_catalyst: ['configs/numbers_flows.py', " \
               "'dnn_cool_probe.Net']" in err
        assert "--trust-config" in err and not probe.exists() and not os.path.exists(out)
        err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp / "new.csv"), "--out", out,
                                 "--trust-config"])
        assert "--trust-config" not in err and probe.exists()  # trusted: it was imported (and then failed)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("dnn_cool_probe", None)
        path.write_text(original, encoding="utf-8")


def test_predictions_csv_cells_cannot_run_as_spreadsheet_formulas(config_run, tmp_path):
    tmp, run_dir = config_run
    rows = pd.read_csv(NUMBERS).head(4)[INPUTS]
    ids = ["=cmd|' /C calc'!A0", "@SUM(A1)", "-x", "+1"]
    rows.insert(0, "id", ids)
    rows.to_csv(tmp_path / "ids.csv", index=False)
    assert main(["--run-dir", str(run_dir), "--csv", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "p.csv"),
                 "--index-col", "id", "--proba", "--trust-config"]) == 0
    table = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    assert list(table["id"]) == ["'=cmd|' /C calc'!A0", "'@SUM(A1)", "'-x", "+1"]  # "+1" is a number: kept
    assert table["proba_is_interesting"].between(0, 1).all()


def test_one_word_in_a_numeric_column_is_named_with_its_row(config_run, tmp_path, capsys):
    """pandas reads every cell of a CSV column with one word in it as text: only the word is invalid."""
    tmp, run_dir = config_run
    new = pd.read_csv(NUMBERS).head(6)[INPUTS]
    new["number"] = new["number"].astype(object)
    new.loc[3, "number"] = "twelve"
    new.to_csv(tmp_path / "word.csv", index=False)
    err = cli_error(capsys, ["--run-dir", str(run_dir), "--csv", str(tmp_path / "word.csv"), "--out",
                             str(tmp_path / "p.csv"), "--trust-config"])
    assert err.endswith("numeric input column 'number': expected numbers, got 1 value(s) that are not numbers: "
                        "['twelve'] at row(s) [3] (so the whole column was read as text)"), err
