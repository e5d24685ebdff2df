"""Issue 25, item 5: a task with no labelled training row where its condition holds stops train() before any
epoch, naming the task, its path and condition, and the usable rows of the other splits."""
import os

import numpy as np
import pandas as pd
import pytest

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.training.trainable import usable_rows
from dnn_cool_catalyst.tabular import tabular_model

N = 60
TYPES = {"x": "numeric", "gate": "binary", "amount": "regression", "size": "category", "tags": "multilabel",
         "child": "binary"}
OUTPUTS = ["gate", "amount", "size", "tags", "child"]


def full_frame():
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    return pd.DataFrame({"x": x, "gate": (x > 0).astype(float), "amount": 100 + 10 * x,
                         "size": rng.choice(["S", "M", "L"], N).astype(object),
                         "tags": rng.choice(["a", "b", "a, b"], N).astype(object),
                         "child": np.where(x > 0, (x > 1).astype(float), np.nan)},
                        index=[f"r{i}" for i in range(N)])


def make_runner(df, directory):
    converters = Converters()
    converters.type.type_mapping.update(TYPES)
    project = Project(df, input_col="x", output_col=OUTPUTS, converters=converters, project_dir=str(directory))

    @project.add_flow
    def flow(flow, x, out):
        out += flow.gate(x.features)
        out += flow.amount(x.features)
        out += flow.size(x.features)
        out += flow.tags(x.features)
        out += flow.child(x.features) | out.gate
        return out

    return project.runner(tabular_model(project, hidden=4), "run", batch_size=16, seed=0)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """The row labels of each split (splits depend on the row labels and the seed only)."""
    runner = make_runner(full_frame(), tmp_path_factory.mktemp("splits"))
    row_ids = runner.dataset.data.row_ids
    return {name: [row_ids[p] for p in positions] for name, positions in runner.splits.items()}


@pytest.mark.parametrize("task", ["amount", "size", "tags", "gate"])
def test_a_task_labelled_only_outside_the_training_split_stops_train(task, splits, tmp_path):
    df = full_frame()
    df.loc[splits["train"], task] = np.nan
    runner = make_runner(df, tmp_path)
    assert {k: [runner.dataset.data.row_ids[p] for p in v] for k, v in runner.splits.items()} == splits
    with pytest.raises(RunnerError, match=f"task '{task}' \\(path '{task}'\\) has no labelled row in the training "
                                          f"split \\({len(splits['train'])} rows\\)") as e:
        runner.train(num_epochs=1, verbose=False)
    message = str(e.value)
    assert f"other splits: {len(splits['valid'])} in 'valid', {len(splits['test'])} in 'test'" in message
    assert "identity scaling" in message and "stratify" in message
    if task == "gate":  # its child is gated on it, so it has no usable training row either
        assert "task 'child'" in message
    else:
        assert message.count("has no labelled row") == 1
    assert not os.path.exists(os.path.join(runner.checkpoint_dir, "runner.last.pth"))  # not one epoch ran


def test_a_gated_task_whose_condition_never_holds_where_it_is_labelled(splits, tmp_path):
    df = full_frame()
    train = df.index.isin(splits["train"])
    df.loc[train, "child"] = np.nan  # labelled in training only where the gate is closed: never usable
    df.loc[train & (df["gate"] == 0), "child"] = 0.0
    runner = make_runner(df, tmp_path)
    counts = usable_rows(runner.flow, runner.dataset, runner.splits["train"])
    assert counts["child"] == 0 and counts["gate"] == int(train.sum())
    valid = df.loc[splits["valid"]]
    expected_valid = int(((valid["gate"] == 1) & valid["child"].notna()).sum())
    with pytest.raises(RunnerError, match="task 'child' \\(path 'child'\\) has no labelled row in the training split "
                                          f"\\({len(splits['train'])} rows\\) where its condition `gate` holds; "
                                          f"other splits: {expected_valid} in 'valid'"):
        runner.train(num_epochs=1, verbose=False)


def test_every_task_with_a_training_row_trains(splits, tmp_path):
    df = full_frame()
    keep = splits["train"][0]
    df.loc[[r for r in splits["train"] if r != keep], "amount"] = np.nan  # one labelled training row is enough
    runner = make_runner(df, tmp_path)
    assert usable_rows(runner.flow, runner.dataset, runner.splits["train"])["amount"] == 1
    runner.train(num_epochs=1, verbose=False)
    assert os.path.exists(os.path.join(runner.checkpoint_dir, "runner.last.pth"))
