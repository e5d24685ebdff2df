"""Config runs keep the README's promises: arguments checked against signatures before anything is built (with the
closest name), bad --set values and missing CSV columns in one line with exit status 2, catalyst-run saying where
its results went, and neither launcher writing into a run directory the other one is using."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from dnn_cool_catalyst.config.cli import main
from dnn_cool_catalyst.run.lock import run_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join("configs", "tabular.yml")


def tiny_config(tmp_path, run=None, **project):
    """configs/tabular.yml's project in tmp_path, with a one-epoch run (or ``run``)."""
    data = {"project": {"project_dir": str(tmp_path / "proj"), **project},
            "run": run or [{"_call_": "train", "num_epochs": 1}, {"_call_": "infer", "splits": ["test"]}]}
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def run_main(capsys, *args):
    """dnn-cool-run in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(["--config", TABULAR, *args])
    return info.value.code, capsys.readouterr().err


def run_cli(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(autouse=True)
def from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the configs' relative paths (configs/data/numbers.csv) are taken from here


def test_misspelt_stage_argument_is_one_line_with_exit_status_2(tmp_path):
    config = tiny_config(tmp_path)
    done = run_cli([sys.executable, "-m", "dnn_cool_catalyst.config", "--config", TABULAR, config,
                    "--set", "run.0.num_epoch=1"])
    assert done.returncode == 2
    assert done.stderr == (f"dnn-cool-run: error: {TABULAR} + {config}: run[0] (train) has no argument 'num_epoch' "
                           f"(did you mean 'num_epochs'?)\n")
    assert not (tmp_path / "proj").exists()  # refused before anything was built


@pytest.mark.parametrize("override, message", [
    # runner arguments reach DnnCoolSupervisedRunner through project_runner(**kwargs) and Project.runner(**kwargs)
    ("runner.batch_sise=3", "'runner' (dnn_cool_catalyst.config.factories.project_runner) has no argument "
                            "'batch_sise' (did you mean 'batch_size'?)"),
    ("runner.model.hiden=8", "'runner.model' (dnn_cool_catalyst.tabular.tabular_model) has no argument 'hiden' "
                             "(did you mean 'hidden'?)"),
    # train(**kwargs) reaches Catalyst's train: its own names are accepted, others are not
    ("run.0.load_best_on_ned=true", "run[0] (train) has no argument 'load_best_on_ned' "
                                    "(did you mean 'load_best_on_end'?)"),
    ("run.1.colour=1", "run[1] (infer) has no argument 'colour' (it accepts: splits, checkpoint, verbose, engine, tta)"),
])
def test_unknown_arguments_name_the_closest_accepted_one(tmp_path, capsys, override, message):
    config = tiny_config(tmp_path)
    status, err = run_main(capsys, config, "--set", override)
    assert (status, err) == (2, f"dnn-cool-run: error: {TABULAR} + {config}: {message}\n")
    assert not (tmp_path / "proj").exists()


def test_missing_required_stage_argument(tmp_path, capsys):
    config = tiny_config(tmp_path, run=[{"_call_": "explain", "render": False}])
    status, err = run_main(capsys, config)
    assert (status, err) == (2, f"dnn-cool-run: error: {TABULAR} + {config}: run[0] (explain) is missing required "
                                f"argument(s) ['loader', 'rows']\n")


@pytest.mark.parametrize("override, message", [
    ("run.0.num_epochs=!!python/object/apply:os.system [echo hi]",
     "override 'run.0.num_epochs=!!python/object/apply:os.system [echo hi]': the value is not plain YAML (could not "
     "determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system' at line 1, column 1); "
     "quote it to pass a string"),
    ("run.0.num_epochs=[1", "override 'run.0.num_epochs=[1': the value is not plain YAML (expected ',' or ']', but "
                            "got '<stream end>' at line 1, column 3); quote it to pass a string"),
    ("run.0.num_epochs", "override 'run.0.num_epochs' must look like key.path=value"),
])
def test_bad_override_values_are_one_line_errors(tmp_path, capsys, override, message):
    status, err = run_main(capsys, tiny_config(tmp_path), "--set", override)
    assert (status, err) == (2, f"dnn-cool-run: error: {message}\n")


def test_malformed_yaml_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("run: [unclosed\n")
    status, err = run_main(capsys, str(bad))
    assert (status, err) == (2, f"dnn-cool-run: error: config file {str(bad)!r} is not valid YAML: expected ',' or "
                                f"']', but got '<stream end>' at line 2, column 1\n")


def test_missing_csv_column_is_named(tmp_path, capsys):
    config = tiny_config(tmp_path)
    status, err = run_main(capsys, config, "--set", "project.input_cols=[numbr]")
    assert (status, err) == (2, f"dnn-cool-run: error: {TABULAR} + {config}: building "
                                f"dnn_cool_catalyst.tabular.tabular_project failed: ConverterError: column 'numbr' "
                                f"is not in CSV file 'configs/data/numbers.csv' (named in input_cols; did you mean "
                                f"'number'?)\n")


def test_catalyst_run_prints_stage_results_and_where_they_went(tmp_path):
    done = run_cli(["catalyst-run", "--config", TABULAR, tiny_config(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "proj" / "numbers_mlp"
    # each stage's result, which Catalyst only logs (train returns the runner itself)
    assert re.match(r"catalyst-run: train: done\ncatalyst-run: infer:\n\{'checkpoint': '\S+/runner.best.pth', "
                    r"'splits': \{'test': \d+\}", done.stdout), done.stdout
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith(f"catalyst-run: results of runner 'numbers_mlp' are in {run_dir} (checkpoints/, ")
    assert "infer/" in last and last.endswith(f"); see them with: tensorboard --logdir {run_dir}/tensorboard")


@pytest.mark.parametrize("launcher", ["catalyst-run", "dnn-cool-run"])
def test_a_launcher_never_trains_into_a_run_directory_in_use(tmp_path, launcher):
    """The run lock holds whichever launcher started first: here this test process stands for the other launcher's
    training (a live pid holding <run_dir>/.lock)."""
    run_dir = tmp_path / "proj" / "numbers_mlp"
    command = ["catalyst-run"] if launcher == "catalyst-run" else [sys.executable, "-m", "dnn_cool_catalyst.config"]
    with run_lock(str(run_dir), "train"):
        done = run_cli(command + ["--config", TABULAR, tiny_config(tmp_path)])
        assert not (run_dir / "checkpoints").exists()
    assert done.returncode != 0
    assert f"run directory {run_dir} is in use by pid {os.getpid()}" in done.stderr
    assert done.returncode == 2 and done.stderr.startswith(f"{launcher}: error: "), done.stderr
    if launcher == "catalyst-run":
        assert "Traceback" not in done.stderr
        assert done.stderr.rstrip().endswith(f"catalyst-run: stopped by RunnerError; what runner 'numbers_mlp' "
                                             f"wrote before is in {run_dir}")


def test_exponent_learning_rates_are_numbers_in_files_and_overrides(tmp_path, capsys):
    """``lr: 3e-3`` (a string to YAML 1.1 and PyYAML) is the float a user means, in a file and in --set."""
    from dnn_cool_catalyst.config.run import load_config

    path = tmp_path / "lr.yml"
    path.write_text("run:\n  - {_call_: train, num_epochs: 1, lr: 3e-3}\n")
    assert load_config([str(path)])["run"][0]["lr"] == 0.003
    assert load_config([str(path)], ["run.0.lr=1E-2"])["run"][0]["lr"] == 0.01
    config = tiny_config(tmp_path)
    assert main(["--config", TABULAR, config, "--set", "run.0.lr=3e-3"]) in (0, None)
    saved = json.loads((tmp_path / "proj" / "numbers_mlp" / "run_config.json").read_text())
    assert saved["train"]["lr"] == 0.003


def test_a_billion_laughs_config_is_a_one_line_error(tmp_path, capsys):
    from test_safe_read import billion_laughs

    bad = tmp_path / "laughs.yml"
    bad.write_text(billion_laughs())
    status, err = run_main(capsys, str(bad))
    assert status == 2 and err.count("\n") == 1
    assert "laughs.yml: its YAML aliases expand to more than 1000000 nodes" in err


def test_catalyst_run_refuses_arguments_it_would_ignore(tmp_path):
    """Catalyst's launcher drops unknown arguments: --set would silently train the config as written."""
    done = run_cli(["catalyst-run", "--config", TABULAR, tiny_config(tmp_path), "--set", "run.0.num_epochs=1"])
    assert done.returncode == 2 and not (tmp_path / "proj").exists()
    assert done.stderr == (f"catalyst-run: error: catalyst-run ignores '--set run.0.num_epochs=1' (it reads only "
                           f"--config, --deterministic and --benchmark); use dnn-cool-run --config {TABULAR} "
                           f"{tiny_config(tmp_path)} --set key.path=value, or edit the config\n")


def test_catalyst_run_config_typo_is_one_line(tmp_path):
    typo = tmp_path / "typo.yml"
    typo.write_text("run:\n  - {_call_: train, num_epoch: 1}\n")
    done = run_cli(["catalyst-run", "--config", TABULAR, tiny_config(tmp_path), str(typo)])
    assert (done.returncode, done.stderr) == (2, f"catalyst-run: error: {TABULAR} + {tiny_config(tmp_path)} + {typo}: "
                                                 f"run[0] (train) has no argument 'num_epoch' (did you mean "
                                                 f"'num_epochs'?)\n")


def test_dnn_cool_run_says_which_run_directory_it_wrote(tmp_path, capsys):
    main(["--config", TABULAR, tiny_config(tmp_path)])
    run_dir = tmp_path / "proj" / "numbers_mlp"
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        f"run directory: {run_dir}  (tensorboard --logdir {run_dir / 'tensorboard'})")
