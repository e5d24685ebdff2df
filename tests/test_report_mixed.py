"""Issue 27, item 4: a report over a Python run and a config run shows the settings that differ, in one
vocabulary, and none of the launchers' bookkeeping."""
import os
import warnings

import pytest
import torch
import yaml

from dnn_cool_catalyst.config import run_config
from dnn_cool_catalyst.report import compare, write_report
from dnn_cool_catalyst.tabular import tabular_model, tabular_project

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join(REPO, "configs", "tabular.yml")


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory):
    """configs/tabular.yml run by dnn-cool-run (hidden 64, lr 0.003) and the same project from Python
    (hidden 16, lr 0.01), both one epoch, in one project folder."""
    root = tmp_path_factory.mktemp("mixed")
    before = os.getcwd()
    os.chdir(REPO)  # the config's relative CSV path
    try:
        tiny = root / "tiny.yml"
        tiny.write_text(yaml.safe_dump({"project": {"project_dir": str(root / "proj")},
                                        "run": [{"_call_": "train", "num_epochs": 1, "lr": 0.003},
                                                {"_call_": "infer", "splits": ["test"]},
                                                {"_call_": "evaluate"}]}))
        run_config([TABULAR, str(tiny)], ["runner.batch_size=64"], echo=None)
        project_args = {k: v for k, v in yaml.safe_load(open(TABULAR))["project"].items() if not k.startswith("_")}
        project = tabular_project(**{**project_args, "project_dir": str(root / "proj")})
        torch.manual_seed(0)
        runner = project.runner(tabular_model(project, hidden=16), "from_python", batch_size=64, seed=0)
        runner.train(num_epochs=1, lr=0.01, verbose=False)
        runner.infer(splits=["test"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # untuned: the default thresholds are fine here
            runner.evaluate()
    finally:
        os.chdir(before)
    return root / "proj"


def test_python_and_config_runs_differ_only_where_they_differ(mixed_runs):
    table = compare(mixed_runs, metric="is_interesting/accuracy")
    assert sorted(table.experiment) == ["from_python", "numbers_mlp"] and set(table.status) == {"done"}
    settings = [c for c in table.columns if "." in c and "/" not in c]
    # lr and the hidden size: the config records model.hidden (64), the Python run only the parameter count, so
    # the count is the common key that shows it; a key one run lacks is unknown there, not a difference
    assert settings == ["train.lr", "model.parameters"], settings
    rows = table.set_index("experiment")
    assert rows.loc["from_python", "train.lr"] == 0.01 and rows.loc["numbers_mlp", "train.lr"] == 0.003
    assert rows.loc["from_python", "model.parameters"] < rows.loc["numbers_mlp", "model.parameters"]


def test_mixed_report_html_names_the_real_changes_only(mixed_runs, tmp_path):
    write_report(mixed_runs, out=str(tmp_path / "report"), metric="is_interesting/accuracy")
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "train.lr" in page and "model.parameters" in page
    for bookkeeping in ("runner_name", "_call_", "_dnn_cool_run_", "train.verbose"):
        assert bookkeeping not in page, bookkeeping
