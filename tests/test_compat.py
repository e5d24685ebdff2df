"""Tests of dnn_cool_catalyst.compat: each Catalyst 22.4 defect is shown (through the saved original) and fixed."""
from __future__ import annotations

import importlib
import os
import pickle
import socket
import time
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from catalyst import dl
from catalyst.utils import load_checkpoint, pack_checkpoint, save_checkpoint

from dnn_cool_catalyst import compat
from dnn_cool_catalyst.training.engine import default_engine, scheduler_callbacks


@pytest.fixture(autouse=True, scope="module")
def _patched():
    compat.apply()
    yield


def _plain_cpu_engine():
    """``dl.CPUEngine()`` itself (no ``compat.apply``). On a CUDA machine an earlier test may have left accelerate's
    process-wide state on the GPU, which ``CPUEngine`` refuses: that state is reset first (what default_engine
    does)."""
    compat.accelerate.reset_conflicting_state("cpu", "no")
    return dl.CPUEngine()


def _loaders(n: int = 32, batch_size: int = 8):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    dataset = TensorDataset(x, y)
    return {"train": DataLoader(dataset, batch_size=batch_size), "valid": DataLoader(dataset, batch_size=batch_size)}


# ------------------------------------------------------------------------------------------------ idempotence
def test_apply_is_idempotent():
    compat.apply()
    from catalyst.engines.torch import DataParallelEngine
    import catalyst.metrics._auc as auc_module
    import catalyst.runners.supervised as supervised

    before = (DataParallelEngine.prepare_model, auc_module.all_gather, supervised.TorchScheduler)
    assert compat.apply() == []
    assert compat.apply() == []
    assert (DataParallelEngine.prepare_model, auc_module.all_gather, supervised.TorchScheduler) == before
    # catalyst 22.4 on torch 2.x needs every patch, except the CPU-DDP one on accelerate < 1 (0.28-0.33 need none)
    needed = set(compat.PATCHES) - (set() if compat.accelerate._cpu_ddp_needs_cpu_flag() else {"ddp_cpu_processes"})
    assert compat.applied() == needed
    for name in needed:
        assert compat.original(name) is not None


# ------------------------------------------------------------------------------------------------ 1. DataParallel
def test_dataparallel_prepare_model():
    engine = dl.DataParallelEngine()  # constructible without GPUs: accelerate falls back to the CPU
    original = compat.original("dataparallel_prepare_model")
    with pytest.raises(TypeError, match="device_placement"):
        original(engine, nn.Linear(3, 2), device_placement=None)  # what Accelerator.prepare does

    model = engine.prepare(nn.Linear(3, 2))
    assert isinstance(model, nn.DataParallel)
    again = engine.prepare(model)  # e.g. predict_loader after train: no DataParallel(DataParallel(...))
    assert isinstance(again, nn.DataParallel) and not isinstance(again.module, nn.DataParallel)
    assert again(torch.randn(5, 3)).shape == (5, 2)
    assert isinstance(engine.unwrap_model(again), nn.Linear)


# ------------------------------------------------------------------------------------------------ 2. all_gather
def _ddp_worker(rank: int, world_size: int, port: int, outdir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        import catalyst.utils.distributed as catalyst_dist
        from catalyst.metrics import AUCMetric

        result = {}
        try:  # the unpatched Catalyst function (a fresh process: nothing patched yet)
            catalyst_dist.all_gather({"rank": rank})
            result["original_error"] = None
        except Exception as error:  # noqa: BLE001 - any failure is what we record
            result["original_error"] = f"{type(error).__name__}: {error}"

        compat.apply()  # spawned processes import everything afresh: they must patch too
        result["repointed"] = all(
            importlib.import_module(name).all_gather is compat.distributed.all_gather
            for name in ("catalyst.utils", "catalyst.utils.distributed", "catalyst.metrics._auc",
                         "catalyst.metrics._classification", "catalyst.metrics._confusion_matrix")
        )
        # objects of different pickled sizes per rank exercise the padding
        result["objects"] = catalyst_dist.all_gather({"rank": rank, "payload": list(range(10 * (rank + 1)))})
        result["tensors"] = catalyst_dist.all_gather(torch.full((rank + 1,), float(rank)))
        result["ddp_reduce_all"] = catalyst_dist.ddp_reduce(torch.tensor([rank]), mode="all", world_size=world_size)

        # a loader metric as Catalyst computes it at loader end under DDP
        scores = [torch.tensor([[0.9], [0.2], [0.6]]), torch.tensor([[0.4], [0.7], [0.1]])]
        targets = [torch.tensor([[1], [0], [0]]), torch.tensor([[1], [1], [0]])]
        metric = AUCMetric()
        metric.reset(num_batches=1, num_samples=3)
        metric.update(scores[rank], targets[rank])
        result["auc"] = metric.compute_key_value()["auc"]
        with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_all_gather_under_cpu_ddp(tmp_path):
    start = time.perf_counter()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    elapsed = time.perf_counter() - start
    results = []
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as handle:
            results.append(pickle.load(handle))

    from catalyst.metrics import AUCMetric

    single = AUCMetric()
    all_scores = torch.tensor([[0.9], [0.2], [0.6], [0.4], [0.7], [0.1]])
    single.update(all_scores, torch.tensor([[1], [0], [0], [1], [1], [0]]))
    expected_auc = single.compute_key_value()["auc"]
    for rank, result in enumerate(results):
        if not torch.cuda.is_available():
            assert result["original_error"] is not None, "Catalyst's all_gather unexpectedly worked without CUDA"
        assert result["repointed"]
        assert result["objects"] == [{"rank": 0, "payload": list(range(10))}, {"rank": 1, "payload": list(range(20))}]
        assert [tensor.tolist() for tensor in result["tensors"]] == [[0.0], [1.0, 1.0]]
        assert [t.tolist() for t in result["ddp_reduce_all"]] == [[0], [1]]
        assert result["auc"] == pytest.approx(expected_auc)
    assert elapsed < 60, f"DDP test took {elapsed:.1f}s"


def test_all_gather_without_process_group():
    assert compat.distributed.all_gather({"a": 1}) == [{"a": 1}]


# ------------------------------------------------------------------------------------------------ 3. schedulers
def _train_once(tmp_path, scheduler_factory, engine=None, num_epochs=1, callbacks=None):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = scheduler_factory(optimizer)
    runner = dl.SupervisedRunner()
    runner.train(
        model=model,
        engine=engine or default_engine(),
        criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=scheduler,
        loaders=_loaders(),
        callbacks=callbacks,
        loggers={"tensorboard": dl.TensorboardLogger(logdir=str(tmp_path), use_logdir_postfix=True)},
        logdir=str(tmp_path),
        num_epochs=num_epochs,
        valid_loader="valid",
        valid_metric="loss",
        minimize_valid_metric=True,
    )
    return runner, optimizer


def _step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


def test_torch2_scheduler_not_recognised_without_patch(tmp_path, monkeypatch):
    import catalyst.runners.supervised as supervised

    original = compat.original("scheduler_recognition")
    assert not isinstance(_step_lr(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)), original)
    monkeypatch.setattr(supervised, "TorchScheduler", original)
    with pytest.warns(UserWarning, match="No ``ISchedulerCallback"):
        # a plain CPUEngine: default_engine() would call compat.apply() and re-patch
        _, optimizer = _train_once(tmp_path, _step_lr, engine=_plain_cpu_engine())
    assert optimizer.param_groups[0]["lr"] == 0.1  # never stepped


def test_default_engine_cpu_trains_and_steps_scheduler(tmp_path):
    if not torch.cuda.is_available():
        assert type(default_engine()) is dl.CPUEngine
    assert type(default_engine("cpu")) is dl.CPUEngine
    assert type(default_engine(torch.device("cpu"))) is dl.CPUEngine
    with pytest.raises(ValueError):
        default_engine("meta")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            default_engine("cuda")

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # engine_xla_enum: no DistributedType.TPU warning
        runner, optimizer = _train_once(tmp_path, _step_lr, engine=default_engine("cpu"))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert runner.epoch_metrics["_epoch_"]["lr"] == pytest.approx(0.05)
    assert set(runner.epoch_metrics) == {"_epoch_", "train", "valid"}
    for loader in ("train", "valid", "_epoch_"):  # TensorboardLogger: <logdir>/tensorboard/<loader>/
        assert os.listdir(tmp_path / "tensorboard" / loader)
    best = load_checkpoint(str(tmp_path / "checkpoints" / "model.best.pth"))  # weights_only=True default
    assert set(best) == {"weight", "bias"}


def test_default_engine_resets_conflicting_accelerate_state():
    _plain_cpu_engine()  # accelerate's process-wide state: CPU, fp32
    with pytest.raises(ValueError, match="already been initialized"):
        dl.CPUEngine(mixed_precision="bf16")
    try:
        assert default_engine("cpu", mixed_precision="bf16").mixed_precision == "bf16"
    finally:
        engine = default_engine("cpu")  # back to fp32 for the other tests
    assert engine.mixed_precision == "no" and engine.device.type == "cpu"


def test_scheduler_callbacks_helper():
    from catalyst.callbacks.scheduler import SchedulerCallback

    def optimizer():
        return torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)

    assert scheduler_callbacks(None) == {}
    step = scheduler_callbacks(_step_lr(optimizer()))["_scheduler"]
    assert isinstance(step, SchedulerCallback) and step.mode == "epoch"
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer(), max_lr=0.1, total_steps=10)
    assert scheduler_callbacks(one_cycle)["_scheduler"].mode == "batch"
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer())
    with pytest.raises(ValueError):
        scheduler_callbacks(plateau)
    callback = scheduler_callbacks(plateau, loader_key="valid", metric_key="loss")["_scheduler"]
    assert (callback.loader_key, callback.metric_key) == ("valid", "loss")


# ------------------------------------------------------------------------------------------------ 4. TPU enum
def test_engine_mean_reduce_without_future_warning():
    engine = _plain_cpu_engine()
    original = compat.original("engine_xla_enum")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        # accelerate 0.27-0.33 deprecate DistributedType.TPU (FutureWarning), 1.x removed it (AttributeError)
        with pytest.raises((FutureWarning, AttributeError), match="TPU"):
            original(engine, {"loss": 1.0})
        assert engine.mean_reduce_ddp_metrics({"loss": 1.0}) == {"loss": 1.0}


# ------------------------------------------------------------------------------------------------ 5. checkpoints
def _runner_checkpoint(scheduler_factory):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = scheduler_factory(optimizer)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(1.0)
    else:
        scheduler.step()
    return model, pack_checkpoint(model=model, criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
                                  scheduler=scheduler, epoch_step=3, batch_step=12, sample_step=96)


@pytest.mark.parametrize("factory", [
    _step_lr,
    lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10),
    lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
], ids=["StepLR", "OneCycleLR", "ReduceLROnPlateau"])
def test_catalyst_checkpoints_load_with_weights_only(tmp_path, factory):
    model, checkpoint = _runner_checkpoint(factory)
    path = str(tmp_path / "runner.pth")
    save_checkpoint(checkpoint, path)
    loaded = load_checkpoint(path)  # Catalyst's loader: torch.load without weights_only -> True on torch >= 2.6
    assert torch.load(path, weights_only=True).keys() == loaded.keys()
    assert loaded["epoch_step"] == 3 and loaded["sample_step"] == 96
    torch.testing.assert_close(loaded["model_state_dict"]["weight"], model.weight.detach())

    # what would break it: an arbitrary Python object, e.g. a numpy scalar metric (keep artifacts free of them)
    save_checkpoint({**checkpoint, "best_score": np.float64(0.5)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_unpack_checkpoint_into_wrapped_model():
    import catalyst.callbacks.checkpoint as checkpoint_module

    source, checkpoint = _runner_checkpoint(_step_lr)
    target = nn.DataParallel(nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="module.weight"):
        compat.original("checkpoint_unpack_wrapped")(checkpoint, model=target)
    checkpoint_module.unpack_checkpoint(checkpoint, model=target)  # the name CheckpointCallback uses
    torch.testing.assert_close(target.module.weight, source.weight)


def test_resume_runner_under_dataparallel(tmp_path):
    """CheckpointCallback(mode="runner", resume_runner=...) restores weights, optimizer, scheduler and step counters.

    The SchedulerCallback is listed before the CheckpointCallback: both have order 50 and Catalyst's sort is stable,
    so this order saves the scheduler *after* its epoch step and the resumed run continues the schedule exactly.
    """
    logdir = str(tmp_path / "checkpoints")

    def callbacks(resume):
        return {
            "_scheduler": dl.SchedulerCallback(mode="epoch"),
            "_checkpoint": dl.CheckpointCallback(logdir=logdir, loader_key="valid", metric_key="loss", minimize=True,
                                                 mode="runner", resume_runner=resume),
        }

    runner, optimizer = _train_once(tmp_path, _step_lr, engine=dl.DataParallelEngine(), num_epochs=1,
                                    callbacks=callbacks(None))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    resumed, optimizer = _train_once(tmp_path, _step_lr, engine=dl.DataParallelEngine(), num_epochs=3,
                                     callbacks=callbacks(os.path.join(logdir, "runner.last.pth")))
    assert resumed.epoch_step == 3 and list(resumed.experiment_metrics) == [2, 3]  # num_epochs is the total
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_best_checkpoint_is_the_best_epoch(tmp_path):
    import types

    def train(logdir, use_original):
        callback = dl.CheckpointCallback(logdir=logdir, loader_key="valid", metric_key="loss", minimize=False)
        if use_original:
            callback.on_epoch_end = types.MethodType(compat.original("checkpoint_best_copy"), callback)
        # the valid loss falls every epoch: with minimize=False the best epoch is the first one
        _train_once(tmp_path, _step_lr, num_epochs=3, callbacks={"_checkpoint": callback})
        return [load_checkpoint(os.path.join(logdir, name))["weight"] for name in ("model.best.pth", "model.0001.pth")]

    best, first = train(str(tmp_path / "original"), use_original=True)
    assert not torch.equal(best, first)  # Catalyst's model.best.pth holds the last epoch's weights
    best, first = train(str(tmp_path / "patched"), use_original=False)
    assert torch.equal(best, first)
