"""Splits by row identity (issue 13, point 5): splits.json stores DataFrame index labels, so a reordered frame keeps
its splits; other rows or other split settings are an error unless ``resplit=True``; optional stratification."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.run.splits import index_fingerprint, make_splits, split_labels
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

SAMPLES = 160


def frame(samples=SAMPLES):
    return numbers_frame(samples, seed=0)


def runner_for(df, project_dir, name="run", **kwargs):
    torch.manual_seed(0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=8), name, batch_size=32, **kwargs)


def labels_of(runner):
    """Each split as the DataFrame labels of its rows, in the runner's order."""
    row_ids = runner.dataset.data.row_ids
    return {name: [row_ids[i] for i in positions] for name, positions in runner.splits.items()}


def saved(runner):
    with open(os.path.join(runner.run_dir, "splits.json")) as f:
        return json.load(f)


def test_splits_json_stores_labels_fingerprint_and_settings(tmp_path):
    df = frame().set_axis([f"r{i}" for i in range(SAMPLES)])
    runner = runner_for(df, tmp_path, seed=7, split_fractions=(0.5, 0.25, 0.25))
    data = saved(runner)
    assert data["seed"] == 7 and data["fractions"] == [0.5, 0.25, 0.25] and data["stratify"] is None
    assert data["num_samples"] == SAMPLES
    assert data["index_fingerprint"] == index_fingerprint([f"r{i}" for i in range(SAMPLES)])
    assert data["splits"] == labels_of(runner)  # labels, in the order the runner uses them
    assert sorted(sum(data["splits"].values(), [])) == sorted(df.index)
    assert [len(v) for v in data["splits"].values()] == [80, 40, 40]


def test_a_range_index_gets_the_splits_of_a_plain_permutation():
    order = np.random.default_rng(42).permutation(100)
    assert make_splits(100) == {"train": sorted(order[:70].tolist()), "valid": sorted(order[70:85].tolist()),
                                "test": sorted(order[85:].tolist())}


def test_assignment_depends_on_the_set_of_labels_only():
    labels = [3, "b", 10, "a", -1, 7, "c", 0]
    reordered = ["c", 0, 7, -1, "a", 10, "b", 3]
    first, second = split_labels(labels, (0.5, 0.25, 0.25), 1), split_labels(reordered, (0.5, 0.25, 0.25), 1)
    assert {k: set(v) for k, v in first.items()} == {k: set(v) for k, v in second.items()}
    assert [reordered.index(x) for x in second["train"]] == sorted(reordered.index(x) for x in second["train"])


@pytest.mark.parametrize("reorder", ["shuffle", "swap_two_rows"])
def test_a_reordered_frame_gets_the_same_rows_in_the_same_order(tmp_path, reorder):
    df = frame()
    original = labels_of(runner_for(df, tmp_path))
    if reorder == "shuffle":
        changed = df.sample(frac=1.0, random_state=3)
    else:
        train_row, test_row = original["train"][0], original["test"][0]
        order = list(df.index)
        i, j = order.index(train_row), order.index(test_row)
        order[i], order[j] = order[j], order[i]
        changed = df.loc[order]
    again = runner_for(changed, tmp_path)
    assert labels_of(again) == original
    # And the positions really point at those rows of the reordered frame (same inputs).
    positions = again.splits["test"]
    assert changed["number"].iloc[positions].tolist() == df.loc[original["test"], "number"].tolist()


def test_a_shuffled_frame_gives_the_same_evaluation_table(tmp_path):
    df = frame()
    first = runner_for(df, tmp_path)
    first.train(num_epochs=1)
    first.infer(splits=["valid", "test"])
    first.tune()
    expected = first.evaluate("test")
    shuffled = runner_for(df.sample(frac=1.0, random_state=5), tmp_path)
    shuffled.infer(splits=["valid", "test"])
    table = shuffled.evaluate("test")
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-5)


@pytest.mark.parametrize("change", ["removed", "added"])
def test_other_rows_are_an_error_naming_the_file_counts_and_labels(tmp_path, change):
    df = frame()
    runner_for(df, tmp_path)
    if change == "removed":
        other, pattern = df.drop(index=[5, 9]), r"0 row\(s\) added \[\], 2 removed \[5, 9\] \(the frame has 158 rows"
    else:
        extra = df.iloc[:1].set_axis([1000])
        other, pattern = pd.concat([df, extra]), r"1 row\(s\) added \[1000\], 0 removed \[\] \(the frame has 161"
    with pytest.raises(RunnerError, match=r"rows differ from those split in .*splits\.json: " + pattern) as info:
        runner_for(other, tmp_path)
    assert "resplit=True" in str(info.value)


def test_resplit_writes_fresh_splits_for_the_new_rows(tmp_path):
    df = frame()
    runner_for(df, tmp_path)
    smaller = df.drop(index=[5, 9])
    runner = runner_for(smaller, tmp_path, resplit=True, seed=3)
    data = saved(runner)
    assert data["seed"] == 3 and data["num_samples"] == SAMPLES - 2
    assert sorted(sum(data["splits"].values(), [])) == sorted(smaller.index)
    assert labels_of(runner_for(smaller, tmp_path, seed=3)) == data["splits"]  # and it is reused afterwards


@pytest.mark.parametrize("setting, pattern", [
    ({"seed": 1}, r"seed=42 \(now 1\)"),
    ({"split_fractions": (0.6, 0.2, 0.2)}, r"fractions=\[0\.7, 0\.15, 0\.15\] \(now \[0\.6, 0\.2, 0\.2\]\)"),
    ({"stratify": "is_even"}, r"stratify=None \(now 'is_even'\)"),
])
def test_changed_split_settings_for_an_existing_run_are_an_error(tmp_path, setting, pattern):
    runner_for(frame(), tmp_path)
    with pytest.raises(RunnerError, match=r"splits\.json was made with " + pattern + ".*resplit=True"):
        runner_for(frame(), tmp_path, **setting)


def test_stratified_splits_keep_each_class_in_proportion(tmp_path):
    df = frame(400)
    df.loc[df.index[:300], "is_interesting"] = 0.0  # 3:1 imbalance, plus the frame's own missing labels
    df.loc[df.index[300:], "is_interesting"] = 1.0
    df.loc[df.index[::10], "is_interesting"] = np.nan
    runner = runner_for(df, tmp_path, stratify="is_interesting")
    assert saved(runner)["stratify"] == "is_interesting"
    label = df["is_interesting"]
    for name, expected_fraction in zip(("train", "valid", "test"), (0.7, 0.15, 0.15)):
        rows = labels_of(runner)[name]
        for value in (0.0, 1.0):
            total = int((label == value).sum())
            assert abs(int((label[rows] == value).sum()) - expected_fraction * total) <= 1
        unlabelled = int(label.isna().sum())
        assert abs(int(label[rows].isna().sum()) - expected_fraction * unlabelled) <= 1


def test_stratify_by_an_unknown_or_continuous_task_is_an_error(tmp_path):
    with pytest.raises(RunnerError, match=r"stratify='is_odd' is not a task of flow 'is_interesting'; tasks are "
                                          r"\['is_interesting', 'is_even'"):
        runner_for(frame(), tmp_path, stratify="is_odd")
    df = pd.DataFrame({"x": np.arange(20.0), "size": np.linspace(0, 1, 20), "big": [0.0, 1.0] * 10})
    project = Project(df, "x", ["size", "big"], project_dir=tmp_path / "p2")

    @project.add_flow
    def sizes(flow, x, out):
        out += flow.size(x.x)
        out += flow.big(x.x)
        return out

    model = torch.nn.Sequential()
    with pytest.raises(RunnerError, match=r"stratify='size': task 'size' is a .* task; splits can be stratified by "
                                          r"a binary or classification task only"):
        project.runner(model, "r", stratify="size")
    assert not os.path.exists(tmp_path / "p2" / "r" / "splits.json")


def test_string_labels_round_trip_and_unsupported_label_types_are_refused(tmp_path):
    df = frame(40)
    df.index = [f"{i}" if i % 2 else i for i in range(40)]  # "1" and 1 style labels mixed: both kept exactly
    runner = runner_for(df, tmp_path)
    again = runner_for(df.sample(frac=1.0, random_state=0), tmp_path)
    assert labels_of(again) == labels_of(runner) == saved(runner)["splits"]
    assert any(isinstance(v, str) for v in saved(runner)["splits"]["train"])
    floats = frame(40).set_axis(np.arange(40) + 0.5)
    with pytest.raises(RunnerError, match=r"index holds the label 0\.5 of type float.*int or a str"):
        runner_for(floats, tmp_path / "floats")
    assert not os.path.exists(tmp_path / "floats" / "run" / "splits.json")


def test_a_splits_file_of_an_older_version_is_still_read_with_a_warning(tmp_path):
    runner = runner_for(frame(), tmp_path)
    path = os.path.join(runner.run_dir, "splits.json")
    positions = make_splits(SAMPLES)
    with open(path, "w") as f:
        json.dump({"num_samples": SAMPLES, "seed": 42, "fractions": [0.7, 0.15, 0.15], "splits": positions}, f)
    with pytest.warns(UserWarning, match="stores row positions"):
        assert {k: v.tolist() for k, v in runner_for(frame(), tmp_path).splits.items()} == positions


def as_lists(splits):
    return {name: [int(p) for p in members] for name, members in splits.items()}


@pytest.mark.parametrize("given", ["list", "index"])
@pytest.mark.parametrize("stratified", [False, True])
def test_the_integer_fast_path_gives_what_the_general_path_gives(tmp_path, monkeypatch, stratified, given):
    """Integer labels are split, fingerprinted, written and looked up with numpy (run/splits.py: label_keys,
    _int_array, splits_json); the result must be the general path's, byte for byte, so that existing splits.json
    files and seeds keep their rows. ``index``: the labels as a pandas Index, read as its array at once."""
    from dnn_cool_catalyst.run import splits as splits_module

    rng = np.random.default_rng(5)
    labels = [int(v) for v in rng.choice(10 ** 9, size=997, replace=False)]
    strata = [None if v % 7 == 0 else int(v % 3) for v in labels] if stratified else None

    def run(folder, row_ids):
        os.makedirs(folder)
        path = os.path.join(folder, "splits.json")
        positions = splits_module.load_or_make_splits(path, row_ids, (0.6, 0.2, 0.2), 3,
                                                      "t" if stratified else None, strata)
        reread = splits_module.load_or_make_splits(path, row_ids, (0.6, 0.2, 0.2), 3,
                                                   "t" if stratified else None, strata)
        assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in [*positions.values(),
                                                                                *reread.values()])
        with open(path, encoding="utf-8") as f:
            return as_lists(positions), as_lists(reread), f.read()

    monkeypatch.setattr(splits_module, "_CHUNK", 100)  # several chunks per split in splits.json
    fast = run(str(tmp_path / "fast"), labels if given == "list" else pd.Index(labels))
    monkeypatch.setattr(splits_module, "_int_array", lambda labels: None)
    general = run(str(tmp_path / "general"), labels)
    assert fast == general
    assert fast[0] == fast[1] and sorted(sum(fast[0].values(), [])) == list(range(len(labels)))
    saved = json.loads(fast[2])
    assert fast[2] == json.dumps(saved, indent=2)  # what atomic_write_json writes for the lists
    assert {name: [labels[p] for p in members] for name, members in fast[0].items()} == saved["splits"]


def test_string_labels_in_the_same_order_get_the_positions_of_integer_labels(tmp_path):
    """Zero-padded strings sort as their ints do, so the general path (strings) must give the integer fast path's
    positions, and splits.json the same labels as text."""
    from dnn_cool_catalyst.run.splits import load_or_make_splits

    ints = pd.Index(np.random.default_rng(1).choice(10 ** 6, size=1500, replace=False))
    strings = [f"{v:07d}" for v in ints]
    by_int = load_or_make_splits(str(tmp_path / "ints.json"), ints, (0.7, 0.15, 0.15), 4)
    by_str = load_or_make_splits(str(tmp_path / "strs.json"), strings, (0.7, 0.15, 0.15), 4)
    assert as_lists(by_int) == as_lists(by_str)
    with open(tmp_path / "ints.json") as f, open(tmp_path / "strs.json") as g:
        saved_ints, saved_strs = json.load(f)["splits"], json.load(g)["splits"]
    assert {k: [f"{v:07d}" for v in members] for k, members in saved_ints.items()} == saved_strs
