"""Config-API runs: configs/*.yml through Catalyst's own catalyst-run and through dnn-cool-run."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from dnn_cool_catalyst.config import ConfigError, load_config, run_config
from dnn_cool_catalyst.config.registry import SHORT_NAMES, register

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join(REPO, "configs", "tabular.yml")
SECURITY = os.path.join(REPO, "configs", "security.yml")
TINY_RUN = [{"_call_": "train", "num_epochs": 1}, {"_call_": "infer"}, {"_call_": "tune"},
            {"_call_": "evaluate", "loader": "test"}]


def write_yaml(path, data) -> str:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return str(path)


def run_cli(args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tiny_tabular(tmp_path):
    return write_yaml(tmp_path / "tiny.yml", {"project": {"project_dir": str(tmp_path / "proj")}, "run": TINY_RUN})


def test_tabular_config_runs_end_to_end_with_catalyst_run(tmp_path, tiny_tabular):
    done = run_cli([os.path.join(os.path.dirname(sys.executable), "catalyst-run"), "--config", TABULAR, tiny_tabular])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "proj" / "numbers_mlp"
    table = pd.read_csv(run_dir / "evaluation_test_gt.csv")
    assert set(table.task_path) == {"is_interesting", "numerical_flow.is_even", "numerical_flow.predict_positive",
                                    "numerical_flow.multiple_three"}
    assert (run_dir / "checkpoints" / "runner.best.pth").exists() and (run_dir / "tuned.json").exists()


def test_security_config_runs_end_to_end_with_catalyst_run(tmp_path):
    tiny = write_yaml(tmp_path / "tiny.yml", {"project": {"project_dir": str(tmp_path / "proj"), "n_samples": 200},
                                             "run": TINY_RUN})
    done = run_cli([os.path.join(os.path.dirname(sys.executable), "catalyst-run"), "--config", SECURITY, tiny])
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "proj" / "security_config" / "evaluation_test_gt.csv")
    assert {"camera_blocked", "person_regression.face_regression.face_x1",
            "person_regression.body_regression.shirt_type"} <= set(table.task_path)


def test_dnn_cool_run_prints_the_tables_and_accepts_overrides(tmp_path):
    done = run_cli([sys.executable, "-m", "dnn_cool_catalyst.config", "--config", TABULAR, "--set",
                    f"project.project_dir={tmp_path / 'proj'}", "run.0.num_epochs=1"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "numerical_flow.multiple_three" in done.stdout and "gating=decoded" in done.stdout
    assert (tmp_path / "proj" / "numbers_mlp" / "evaluation_test_decoded.csv").exists()


def test_short_names_are_registered_with_catalyst(tmp_path):
    from catalyst.registry import REGISTRY

    register(REGISTRY)
    assert all(name in REGISTRY for name in SHORT_NAMES)
    config = load_config([TABULAR])
    config["seed"] = 3
    config["project"]["_target_"] = "tabular_project"
    config["runner"]["_target_"] = "project_runner"
    config["runner"]["model"]["_target_"] = "tabular_model"
    config["project"]["project_dir"] = str(tmp_path / "proj")
    config["run"] = TINY_RUN
    tables = run_config([write_yaml(tmp_path / "short.yml", config)], echo=None)
    assert isinstance(tables[-1], pd.DataFrame) and len(tables[-1]) == 16


def test_same_seed_gives_the_same_evaluation(tmp_path):
    def run(name):
        overrides = [f"project.project_dir={tmp_path / name}", "run.0.num_epochs=2"]
        return run_config([TABULAR], overrides, echo=None)[-1]

    first, second = run("a"), run("b")
    pd.testing.assert_frame_equal(first, second)


def broken(tmp_path, **changes):
    config = load_config([TABULAR])
    config["project"]["project_dir"] = str(tmp_path / "proj")
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return write_yaml(tmp_path / "broken.yml", config)


@pytest.mark.parametrize("changes, expected", [
    ({"project___target_": "dnn_cool_catalyst.tabular.no_such_factory"},
     "'project._target_' is 'dnn_cool_catalyst.tabular.no_such_factory', which is neither"),
    ({"project__n_rows": 10}, "'project' (dnn_cool_catalyst.tabular.tabular_project) has no argument 'n_rows' "
                              "(it accepts: csv, input_cols, output_cols, flows, project_dir, column_types, "
                              "flow_names, read_csv_kwargs, missing, positive_class)"),
    ({"project__csv": None}, "is missing required argument(s) ['csv']"),
    ({"runner__model__project": {"_var_": "projekt"}}, "refers to _var_ 'projekt', but no object named 'projekt'"),
    ({"seed___mode_": None}, "is a function; add '_mode_: call'"),
    ({"run": [{"_call_": "fit"}]}, "run[0]._call_ is 'fit'; expected one of"),
    ({"run": None}, "missing top-level key 'run'"),
])
def test_malformed_configs_are_refused_before_anything_is_built(tmp_path, changes, expected):
    path = broken(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        run_config([path], echo=None)
    assert expected in str(info.value) and path in str(info.value)
    assert not (tmp_path / "proj").exists()


@pytest.mark.parametrize("changes, expected", [
    ({"project__column_types__is_even": "binray"}, "column 'is_even' has unknown type 'binray'"),
    ({"project__input_cols": ["number", "remainder_2", "remainder_3", "remainder_5", "remainder_7"]},
     "remainder_7"),
    ({"project__csv": "configs/data/missing.csv"}, "CSV file 'configs/data/missing.csv' does not exist"),
    ({"project__flows": "configs/no_flows.py"}, "flow module file 'configs/no_flows.py' does not exist"),
])
def test_bad_values_fail_with_a_readable_message(tmp_path, monkeypatch, changes, expected):
    monkeypatch.chdir(REPO)
    with pytest.raises((ConfigError, ValueError, FileNotFoundError)) as info:
        run_config([broken(tmp_path, **changes)], echo=None)
    assert expected in str(info.value)
    assert "kwargs=" not in str(info.value)  # hydra_slayer's dump of every argument is not shown


def test_cli_reports_a_broken_config_in_one_line_without_a_traceback(tmp_path):
    path = broken(tmp_path, project__column_types__is_even="binray")
    done = run_cli([sys.executable, "-m", "dnn_cool_catalyst.config", "--config", path])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("dnn-cool-run: error:") and "column 'is_even' has unknown type" in done.stderr


def test_overrides_and_files_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([str(tmp_path / "nope.yml")])
    (tmp_path / "bad.yml").write_text("runner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([str(tmp_path / "bad.yml")])
    with pytest.raises(ConfigError, match="no key 'projekt'"):
        load_config([TABULAR], ["projekt.csv=x"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config([TABULAR], ["run.99.num_epochs=1"])
    assert load_config([TABULAR], ["run.0.num_epochs=2", "project.hidden=[1, 2]"])["run"][0]["num_epochs"] == 2
