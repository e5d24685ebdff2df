"""Class-balanced sampling of the training split: epoch contents, seeding, DDP slices, training, errors."""
import json
import os

import pytest
import torch
from catalyst import dl

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.parallel.balanced import BalancedBatchSampler
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    df = numbers_frame(600, seed=0)  # is_interesting: 4 positives per negative; 10% of each label missing
    project = Project(df, "number", list(df.columns[1:]), project_dir=str(tmp_path_factory.mktemp("balance")))
    define_flows(project)
    return project


def runner_of(project, name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return project.runner(numbers_model(project.get_full_flow(), hidden=8), name, batch_size=32, seed=seed, **kwargs)


@pytest.fixture(scope="module")
def runner(project):
    return runner_of(project, "sampling")


def epoch_rows(runner, balance, epoch=0):
    """Dataset positions of one balanced training epoch, in order."""
    with runner._training_extras(balance=balance):
        loader = runner.split_loader("train", shuffle=True)
        loader.batch_sampler.set_epoch(epoch)
        assert isinstance(loader.batch_sampler, BalancedBatchSampler)
        return torch.cat([batch["index"] for batch in loader])


def _sampler(runner, balance, epoch):
    with runner._training_extras(balance=balance):
        sampler = runner.split_loader("train", shuffle=True).batch_sampler
    sampler.set_epoch(epoch)
    return sampler


def labels(runner, task, rows):
    data = runner.dataset.data
    return data.targets[task][rows].round().long(), data.available[task][rows]


def test_inverse_frequency_balances_the_classes_and_keeps_unlabelled_rows(runner):
    train = torch.as_tensor(runner.splits["train"])
    y, known = labels(runner, "is_interesting", train)
    assert int((y[known] == 1).sum()) > 3 * int((y[known] == 0).sum())  # unbalanced to start with
    epochs = torch.cat([epoch_rows(runner, {"is_interesting": "inverse_frequency"}, e) for e in range(4)])
    assert len(epochs) == 4 * len(train)  # an epoch is as long as the split
    drawn, drawn_known = labels(runner, "is_interesting", epochs)
    positives = float((drawn[drawn_known] == 1).float().mean())
    assert 0.45 < positives < 0.55  # expected 0.5
    # Unlabelled rows keep weight 1: drawn as often as without balancing (their share of the split).
    unlabelled_share = float((~known).float().mean())
    assert abs(float((~drawn_known).float().mean()) - unlabelled_share) < 0.03
    assert set(epochs.tolist()) <= set(train.tolist())


def test_negatives_per_positive_epoch_contents(runner):
    train = torch.as_tensor(runner.splits["train"])
    y, known = labels(runner, "predict_positive", train)
    positives = set(train[known & (y == 1)].tolist())
    negatives = set(train[known & (y == 0)].tolist())
    unlabelled = set(train[~known].tolist())
    balance = {"predict_positive": {"negatives_per_positive": 0.5}}
    first, second = epoch_rows(runner, balance, 0).tolist(), epoch_rows(runner, balance, 1).tolist()
    for rows in (first, second):
        assert len(rows) == len(set(rows))  # no row twice in an epoch
        assert positives <= set(rows) and unlabelled <= set(rows)
        chosen = set(rows) & negatives
        assert len(chosen) == round(0.5 * len(positives))
    assert set(first) != set(second)  # fresh negatives every epoch
    assert epoch_rows(runner, balance, 0).tolist() == first  # same seed and epoch: same order
    # More negatives asked than there are: all of them.
    rows = set(epoch_rows(runner, {"predict_positive": {"negatives_per_positive": 100}}).tolist())
    assert negatives <= rows


def test_seeded_and_sliced_per_rank_like_the_plain_sampler(project, runner):
    balance = {"is_interesting": "inverse_frequency"}
    other = runner_of(project, "sampling_seed1", seed=1)
    assert epoch_rows(runner, balance).tolist() == epoch_rows(runner, balance).tolist()
    assert epoch_rows(runner, balance).tolist() != epoch_rows(other, balance).tolist()
    with runner._training_extras(balance=balance):
        sampler = runner.split_loader("train", shuffle=True).batch_sampler
    sampler.set_epoch(2)
    whole = [[i for i, _ in batch] for batch in sampler]
    shards = [list(sampler.shard(rank, 3)) for rank in range(3)]
    assert all(len(s) == len(whole) for s in shards)
    for b, batch in enumerate(whole):  # each global batch, sliced over the ranks, padding marked
        joined = [i for rank in range(3) for i, real in shards[rank][b] if real]
        assert joined == batch
    for rank in range(3):  # the tensor form that gathering from memory iterates: the same keys
        as_keys = [[(i, v is None or bool(v[j])) for j, i in enumerate(p.tolist())]
                   for p, v in sampler.shard(rank, 3).index_batches()]
        assert as_keys == shards[rank]


class LabelRecorder(dl.Callback):
    def __init__(self):
        super().__init__(order=dl.CallbackOrder.External)
        self.seen = []

    def on_batch_end(self, runner):
        if runner.is_train_loader:
            self.seen.append(runner.batch["index"].cpu())


def test_train_uses_the_balanced_sampler_then_drops_it(project):
    runner = runner_of(project, "train_balanced")
    recorder = LabelRecorder()
    runner.train(num_epochs=2, balance={"is_interesting": "inverse_frequency"}, callbacks={"rec": recorder})
    seen = torch.cat(recorder.seen)
    assert len(seen) == 2 * len(runner.splits["train"])
    y, known = labels(runner, "is_interesting", seen)
    assert 0.4 < float((y[known] == 1).float().mean()) < 0.6
    assert epoch_rows_plain(runner) == sorted(runner.splits["train"])  # balance held for that train() only


def epoch_rows_plain(runner):
    return sorted(torch.cat([b["index"] for b in runner.split_loader("train", shuffle=True)]).tolist())


@pytest.mark.parametrize("balance, message", [
    ({"is_boring": "inverse_frequency"}, r"'is_boring' is not a task of flow 'is_interesting'"),
    ({"is_even": "undersample"}, r"balance\['is_even'\]: unknown mode 'undersample'"),
    ({"is_even": {"negatives": 3}}, r"unknown mode \{'negatives': 3\}"),
    ({"is_even": {"negatives_per_positive": 0}}, "must be a positive number"),
    ({"is_even": {"negatives_per_positive": 2}, "is_interesting": "inverse_frequency"}, "cannot be combined"),
    (["is_even"], "balance must be a mapping"),
])
def test_bad_balance_is_refused_before_training(project, balance, message):
    runner = runner_of(project, "bad_balance")
    with pytest.raises(RunnerError, match=message):
        runner.train(num_epochs=1, balance=balance)
    assert not os.path.exists(runner.checkpoint_dir)


def test_balance_needs_a_binary_or_classification_task(tmp_path):
    from dnn_cool_catalyst.synthetic.security import security_project
    from dnn_cool_catalyst.synthetic.security_model import security_model

    project = security_project(str(tmp_path), n_samples=40, seed=0)
    runner = project.runner(security_model(project.get_full_flow(), width=4, features=8), "kinds")
    with pytest.raises(RunnerError, match=r"'facial_characteristics' is a multilabel task"):
        runner.train(num_epochs=1, balance={"facial_characteristics": "inverse_frequency"})
    with pytest.raises(RunnerError, match=r"'face_x1' is a bounded_regression task"):
        runner.train(num_epochs=1, balance={"face_x1": "inverse_frequency"})
    with pytest.raises(RunnerError, match=r"negatives_per_positive needs a binary task; 'shirt_type' is a "
                                          r"classification task"):
        runner.train(num_epochs=1, balance={"shirt_type": {"negatives_per_positive": 2}})
    # A classification task balances: every shirt type present gets the same total weight; unlabelled rows 1.
    with runner._training_extras(balance={"shirt_type": "inverse_frequency"}):
        weights = runner.split_loader("train", shuffle=True).batch_sampler.draw.weights
    y, known = labels(runner, "shirt_type", torch.as_tensor(runner.splits["train"]))
    totals = [float(weights[known & (y == c)].sum()) for c in y[known].unique().tolist()]
    assert len(totals) > 1 and max(totals) == pytest.approx(min(totals))
    assert sum(totals) == pytest.approx(int(known.sum()))
    assert torch.all(weights[~known] == 1)


class RowsPerRank(dl.Callback):
    """Writes, per DDP rank, the real training rows of every (epoch, step): module-level, so spawn can pickle it."""

    def __init__(self, outdir: str):
        super().__init__(order=dl.CallbackOrder.External)
        self.outdir, self.rows = outdir, []

    def on_batch_end(self, runner):
        if runner.is_train_loader:
            valid = runner.batch["valid"].cpu()
            self.rows.append([runner.epoch_step, runner.loader_batch_step,
                              runner.batch["index"].cpu()[valid].tolist()])

    def on_experiment_end(self, runner):
        rank = max(0, runner.engine.process_index)
        with open(os.path.join(self.outdir, f"rows{rank}.json"), "w", encoding="utf-8") as f:
            json.dump(self.rows, f)


def test_balanced_epochs_under_ddp_are_the_single_process_batches_sliced(project, tmp_path):
    from test_ddp import free_port

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    engine = dl.DistributedDataParallelEngine(port=free_port(), world_size=2, num_node_workers=2,
                                              process_group_kwargs={"backend": "gloo"}, cpu=True)
    runner = runner_of(project, "ddp_balanced", engine=engine)
    balance = {"is_interesting": {"negatives_per_positive": 1}}
    runner.train(num_epochs=2, balance=balance, callbacks={"rows": RowsPerRank(str(tmp_path))})
    ranks = []
    for rank in range(2):
        with open(tmp_path / f"rows{rank}.json", encoding="utf-8") as f:
            ranks.append(json.load(f))
    dataset_rows = runner.splits["train"]
    for epoch in (1, 2):
        expected = [[dataset_rows[i] for i, _ in batch] for batch in _sampler(runner, balance, epoch)]
        got = [r0[2] + r1[2] for r0, r1 in zip(*ranks) if r0[0] == epoch]
        assert got == expected
