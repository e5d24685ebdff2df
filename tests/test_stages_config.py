"""configs/stages.yml (layered on configs/tabular.yml) run end to end on tiny sizes, and its errors as one line."""
import json
import os
import subprocess
import sys

import pandas as pd

from dnn_cool_catalyst.config import run_config
from dnn_cool_catalyst.training.lr_finder import LRFinderResult
from dnn_cool_catalyst.run.checkpoints import read_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABULAR = os.path.join(REPO, "configs", "tabular.yml")
STAGES = os.path.join(REPO, "configs", "stages.yml")


def test_stages_config_runs_lr_find_two_stages_and_evaluation(tmp_path):
    printed = []
    results = run_config([TABULAR, STAGES], [f"project.project_dir={tmp_path / 'proj'}", "run.0.num_steps=10",
                                             "run.1.stages.0.num_epochs=1", "run.1.stages.1.num_epochs=1"],
                         echo=printed.append)
    found = results[0]
    assert isinstance(found, LRFinderResult) and len(found.history) == 10
    assert any("suggested lr:" in text for text in printed)
    run_dir = tmp_path / "proj" / "numbers_stages"
    with open(run_dir / "checkpoints" / "stages.json", encoding="utf-8") as f:
        assert json.load(f)["completed"] == ["heads", "finetune"]
    heads = read_checkpoint(str(run_dir / "checkpoints" / "heads" / "runner.last.pth"))
    finetune = read_checkpoint(str(run_dir / "checkpoints" / "finetune" / "runner.last.pth"))
    assert heads["stage_name"] == "heads" and finetune["stage_name"] == "finetune"
    assert finetune["optimizer_state_dict"]["param_groups"][0]["weight_decay"] == 0.01
    schedule = finetune["scheduler_state_dict"]  # one-cycle, stepped after each of its training batches
    assert schedule["total_steps"] == schedule["last_epoch"] > 1
    trunk = [k for k in heads["model_state_dict"] if k.startswith("trunk.")]
    n_params = [len(c["optimizer_state_dict"]["param_groups"][0]["params"]) for c in (heads, finetune)]
    assert trunk and n_params[1] - n_params[0] == len(trunk)  # the trunk trained in the second stage only
    assert isinstance(results[-1], pd.DataFrame) and len(results[-1])


def test_a_bad_stage_in_a_config_is_one_line_on_stderr(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "dnn_cool_catalyst.config", "--config", TABULAR, STAGES, "--set",
                           f"project.project_dir={tmp_path / 'proj'}", "run.0.start_lr=2.0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == "dnn-cool-run: error: lr_find: start_lr (2) must be below end_lr (1)"
    done = subprocess.run([sys.executable, "-m", "dnn_cool_catalyst.config", "--config", TABULAR, STAGES, "--set",
                           f"project.project_dir={tmp_path / 'proj'}", "run.0.num_steps=5",
                           "run.1.stages.0.freeze=[trunc]"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "freeze prefix 'trunc' matches no parameter" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not os.path.exists(tmp_path / "proj" / "numbers_stages" / "checkpoints" / "heads")
