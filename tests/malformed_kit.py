"""What the malformed-input catalogues (test_malformed*.py) share: a small trained run whose private copies the
cases damage, and the check that the error is the library's own and names what it should."""
import re
import shutil

import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

SAMPLES = 160


def numbers_project(project_dir, samples=SAMPLES):
    df = numbers_frame(samples, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    return project, define_flows(project)


def numbers_runner(project_dir, name="run", hidden=8, **kwargs):
    torch.manual_seed(0)
    project, flow = numbers_project(project_dir)
    return project.runner(numbers_model(flow, hidden=hidden), name, batch_size=32, **kwargs)


def trained_project(root, infer: bool = True):
    """``root`` holding one run trained for an epoch (and inferred and tuned unless ``infer=False``)."""
    runner = numbers_runner(root)
    runner.train(num_epochs=1)
    if infer:
        runner.infer()
        runner.tune()
    return root


def private_copy(trained_dir, tmp_path):
    """A copy of the trained project, so a case may damage its files."""
    copy = tmp_path / "project"
    shutil.copytree(trained_dir, copy)
    return copy


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A project directory with one trained, inferred and tuned run; cases work on copies of it."""
    return trained_project(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def run(trained_dir, tmp_path):
    """A runner over a private copy of the trained project."""
    return numbers_runner(private_copy(trained_dir, tmp_path))


def raises(error, *patterns):
    """Marker for a catalogue: the error type and regexes that must all be found in the message."""
    return error, patterns


def check_refused(case, error, patterns, request, tmp_path):
    """Run ``case`` on the ``run`` fixture (when its first parameter is named ``run``) or on ``tmp_path``; it must
    raise ``error`` with every pattern in the message. Returns the exception."""
    argument = request.getfixturevalue("run") if "run" in case.__code__.co_varnames[:1] else tmp_path
    with pytest.raises(error) as caught:
        case(argument)
    message = str(caught.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"{missing} not found in: {message}"
    return caught.value
