"""Distributed data parallel on CPU (gloo, 2 processes): sampler, reductions, gathers, and a whole run against one
process."""
import glob
import json
import os
import pickle
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from catalyst import dl
from torch.utils.data import DataLoader

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.training.engine import default_engine
from dnn_cool_catalyst.parallel import (PaddingMarkedSubset, ShardedBatchSampler, epoch_permutation, gather_samples,
                                        reshard_loader)
from dnn_cool_catalyst.run import artifacts
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------ sampler
def test_epoch_permutation_is_what_a_shuffling_dataloader_draws_after_seeding():
    for seed in (0, 7, 43):
        torch.manual_seed(seed)
        expected = [i for batch in DataLoader(list(range(23)), batch_size=5, shuffle=True) for i in batch.tolist()]
        assert epoch_permutation(23, seed) == expected
    assert epoch_permutation(23, 1) != epoch_permutation(23, 2)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_share_every_global_batch_and_pad_with_marked_keys(world_size, shuffle):
    single = ShardedBatchSampler(23, batch_size=5, shuffle=shuffle, seed=3)
    single.set_epoch(2)
    shards = [single.shard(rank, world_size) for rank in range(world_size)]
    per_rank = [list(shard) for shard in shards]
    assert all(len(batches) == len(single) == 5 for batches in per_rank)
    for step, global_batch in enumerate(single):
        sizes = {len(batches[step]) for batches in per_rank}
        assert len(sizes) == 1  # every process runs a batch of the same size
        real = [i for batches in per_rank for i, is_real in batches[step] if is_real]
        assert real == [i for i, _ in global_batch]  # the same samples, in the same order
    last = [batches[-1] for batches in per_rank]  # 23 = 4 x 5 + 3: the last global batch has 3 samples
    assert sum(not is_real for keys in last for _, is_real in keys) == len(last) * len(last[0]) - 3
    assert {shard.batch_size for shard in shards} == {-(-5 // world_size)}


def test_padding_is_an_item_with_no_label_and_resharding_keeps_the_dataset(tmp_path):
    df = numbers_frame(12, seed=1)
    project = Project(df, "number", list(df.columns[1:]), project_dir=tmp_path)
    dataset = project.get_dataset(define_flows(project))
    subset = PaddingMarkedSubset(dataset, [5, 3, 7])
    real, pad = subset[(1, True)], subset[(1, False)]
    assert int(real["index"]) == int(pad["index"]) == 3
    assert bool(real["valid"]) and not bool(pad["valid"])
    assert not any(bool(mask.any()) for mask in pad["available"].values())
    assert subset[2]["valid"] and int(subset[2]["index"]) == 7

    loader = DataLoader(subset, batch_sampler=ShardedBatchSampler(3, batch_size=3))
    sharded = reshard_loader(loader, rank=1, world_size=2)
    batch = next(iter(sharded))
    assert sharded.dataset is subset and batch["index"].tolist() == [7, 5] and batch["valid"].tolist() == [True,
                                                                                                           False]
    assert reshard_loader(DataLoader(subset, batch_size=2), 0, 2) is None


def test_gather_samples_in_one_process_drops_padding_and_duplicates():
    fields = {"x": torch.tensor([10.0, 11.0, 12.0, 13.0]), "y": torch.tensor([[1], [2], [3], [4]])}
    out = gather_samples(fields, key=torch.tensor([3, 1, 3, 0]), valid=torch.tensor([True, True, True, False]))
    assert out["x"].tolist() == [11.0, 10.0] and out["y"].tolist() == [[2], [1]]


# ------------------------------------------------------------------------------------------------ collectives
def _collectives_worker(rank: int, world_size: int, port: int, outdir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from helpers import numbers_flows, numbers_batch

        flow, _ = numbers_flows()
        metrics = flow.get_metrics()
        batch = numbers_batch(missing=[("is_even", 1)])
        if rank == 0:  # rank 1 sees no batch at all: its states stay empty until the sync
            logits = {name: torch.linspace(-2, 2, 8) * (i + 1) for i, name in enumerate(flow.tasks)}
            metrics.update({"logits": logits}, batch)
        metrics.sync()
        result = {"metrics": metrics.compute(), "samples": {k: m.num_samples for k, m in metrics.metrics.items()}}
        # rank r holds rows for keys [r, r + 2, 4]: key 4 twice (unmarked duplicate), and one marked padding row
        key = torch.tensor([rank, rank + 2, 4, 9])
        result["gathered"] = gather_samples({"v": key.float() * 10 + rank}, key=key,
                                            valid=torch.tensor([True, True, True, False]))["v"].tolist()
        with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_metric_states_and_samples_reduce_across_processes(tmp_path):
    mp.spawn(_collectives_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [pickle.load(open(tmp_path / f"rank{r}.pkl", "rb")) for r in range(2)]

    from helpers import numbers_batch, numbers_flows

    flow, _ = numbers_flows()
    expected = flow.get_metrics()
    logits = {name: torch.linspace(-2, 2, 8) * (i + 1) for i, name in enumerate(flow.tasks)}
    expected.update({"logits": logits}, numbers_batch(missing=[("is_even", 1)]))
    for result in results:  # every process ends with the whole loader's values
        assert result["metrics"] == expected.compute()
        assert result["samples"] == {k: m.num_samples for k, m in expected.metrics.items()}
        assert result["gathered"] == [0.0, 11.0, 20.0, 31.0, 40.0]  # keys 0..4 once each, key 4 from rank 0


# ------------------------------------------------------------------------------------------------ a whole run
def build_runner(project_dir, **kwargs):
    torch.manual_seed(0)
    df = numbers_frame(240, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    # batch 25 is odd: every global batch is split 13 + 12 and the second process pads one sample
    return project.runner(numbers_model(flow, hidden=16), "exp", batch_size=25, **kwargs)


def run_pipeline(runner):
    runner.train(num_epochs=2, lr=3e-3)
    runner.infer()
    runner.tune()
    return runner.evaluate(), runner.evaluate(gating="decoded")


@pytest.fixture(scope="module")
def single_and_ddp(tmp_path_factory):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Both on the CPU on any machine: gloo, and cpu=True so that accelerate does not pick cuda:<rank> (a one-GPU
    # machine has no cuda:1).
    single = build_runner(tmp_path_factory.mktemp("single"), engine=default_engine("cpu"))
    single_tables = run_pipeline(single)
    engine = dl.DistributedDataParallelEngine(port=free_port(), world_size=2, num_node_workers=2,
                                              process_group_kwargs={"backend": "gloo"}, cpu=True)
    ddp = build_runner(tmp_path_factory.mktemp("ddp"), engine=engine)
    ddp_tables = run_pipeline(ddp)
    return single, single_tables, ddp, ddp_tables


def test_ddp_evaluation_equals_single_process(single_and_ddp):
    single, single_tables, ddp, ddp_tables = single_and_ddp
    for expected, actual in zip(single_tables, ddp_tables):
        pd.testing.assert_frame_equal(actual, expected, atol=1e-6, rtol=0)
    # the same training, not only the same evaluation: weights and the logged validation losses agree
    a = torch.load(os.path.join(single.checkpoint_dir, "runner.last.pth"), weights_only=True)
    b = torch.load(os.path.join(ddp.checkpoint_dir, "runner.last.pth"), weights_only=True)
    for key, value in a["model_state_dict"].items():
        torch.testing.assert_close(b["model_state_dict"][key], value, atol=1e-5, rtol=0)
    storage = [json.load(open(os.path.join(r.checkpoint_dir, "runner.storage.json")))["storage"]
               for r in (single, ddp)]
    assert [s["metric"] for s in storage[1]] == pytest.approx([s["metric"] for s in storage[0]], abs=1e-6)


def test_ddp_infer_gathers_every_sample_once_in_split_order(single_and_ddp):
    single, _, ddp, _ = single_and_ddp
    for split in ("train", "valid", "test"):
        expected = artifacts.load_split(single.infer_dir, split, single.flow.tasks)
        actual = artifacts.load_split(ddp.infer_dir, split, ddp.flow.tasks)
        for task, fields in expected.items():
            assert actual[task]["index"].tolist() == ddp.splits[split].tolist()  # global ids, no padding duplicate
            for field, value in fields.items():
                np.testing.assert_allclose(np.asarray(actual[task][field], dtype=np.float64),
                                           np.asarray(value, dtype=np.float64), atol=1e-6, err_msg=f"{task}/{field}")


def test_only_rank_zero_writes(single_and_ddp):
    single, _, ddp, _ = single_and_ddp

    def count(runner):
        counts = {}
        for path in glob.glob(os.path.join(runner.run_dir, "tensorboard", "**", "events.*"), recursive=True):
            folder = os.path.relpath(os.path.dirname(path), runner.run_dir)
            counts[folder] = counts.get(folder, 0) + 1
        return counts

    # as many event files per folder as one process writes: a second writer would have added its own
    assert count(ddp) == count(single) and count(ddp)
    assert sorted(os.listdir(ddp.checkpoint_dir)) == sorted(os.listdir(single.checkpoint_dir))
    assert sorted(os.listdir(ddp.infer_dir)) == sorted(os.listdir(single.infer_dir))
    assert sorted(os.listdir(ddp.run_dir)) == sorted(os.listdir(single.run_dir))
    tuned = [json.load(open(os.path.join(r.run_dir, "tuned.json")))["params"] for r in (single, ddp)]
    for path, params in tuned[0].items():
        assert tuned[1][path]["threshold"] == pytest.approx(params["threshold"], abs=1e-6)
