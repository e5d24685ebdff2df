"""Package metadata (what `pip show` prints) and git-ignored run directories."""
import inspect
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_metadata_is_complete():
    fields = ["--author", "--license", "--classifiers", "--long-description"]
    done = subprocess.run([sys.executable, "setup.py", *fields], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] and lines[1] == "MIT"
    assert "License :: OSI Approved :: MIT License" in lines[2:]
    assert "# dnn_cool_catalyst" in lines  # the README is the long description
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        assert f.readline().strip() == "MIT License"


def _run_directories():
    """project_dir of every config and the default of every demo/example entry point."""
    from dnn_cool_catalyst import demo, quickstart

    found = set()
    for name in os.listdir(os.path.join(REPO, "configs")):
        if name.endswith(".yml"):
            with open(os.path.join(REPO, "configs", name), encoding="utf-8") as f:
                project = yaml.safe_load(f).get("project")
            if isinstance(project, dict) and "project_dir" in project:  # overlays (stages.yml) have none
                found.add(project["project_dir"])
    for module in (demo, quickstart):
        found.add(inspect.signature(module.run).parameters["project_dir"].default)
    return sorted(found)


def test_run_directories_of_demos_and_configs_are_git_ignored():
    if not os.path.isdir(os.path.join(REPO, ".git")) and not os.path.isfile(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    directories = _run_directories()
    assert "./tabular_project" in directories and "./security_project" in directories
    for directory in directories:
        probe = os.path.join(directory, "exp", "checkpoints", "runner.best.pth")
        done = subprocess.run(["git", "check-ignore", "-q", probe], cwd=REPO)
        assert done.returncode == 0, f"{probe} is not git-ignored"
