"""The runner's data side: its splits, split loaders, row labels and strata, loaders placed on a device, and the one
small batch that gives lazy heads their shapes.

Batches are gathered by index from the converted tensors (``BatchedSubset``), with our own batch sampler
(``parallel/sampler.py``) so that under DDP each process gets its slice of the very batches one process would see;
``device_data`` (:mod:`.device_data`) says whether they are gathered on the device, through pinned memory, or by
the plain DataLoader.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from catalyst.utils.misc import set_global_seed
from torch.utils.data import DataLoader

from ..errors import RunnerError
from ..experiments import dev_subset
from ..parallel import BatchedSubset, ShardedBatchSampler, collate_batch, reshard_loader
from ..run.lock import run_lock
from ..run.splits import load_or_make_splits
from ..training import augmentation
from . import device_data as placement

if TYPE_CHECKING:
    from .runner import DnnCoolSupervisedRunner


def row_ids(dataset) -> Sequence:
    """Each row's label (the DataFrame's index label), by dataset position: the project's ``pandas.Index`` itself
    (a copy as a list would hold a Python int per row; the splits read an integer index as its array)."""
    data = getattr(dataset, "data", None)
    ids = getattr(data, "row_ids", None)
    # A user's own dataset without row labels: its positions are its labels.
    return ids if ids is not None and len(ids) == len(dataset) else range(len(dataset))


def strata(flow, dataset, stratify: Optional[str]) -> Optional[list]:
    """Each row's label of the task ``stratify`` (``None`` where unlabelled), to split each class alike."""
    if stratify is None:
        return None
    if not isinstance(stratify, str) or stratify not in flow.tasks:
        raise RunnerError(f"stratify={stratify!r} is not a task of flow '{flow.name}'; tasks are "
                          f"{list(flow.tasks)}")
    task = flow.tasks[stratify]
    data = getattr(dataset, "data", None)
    if getattr(task, "type_name", None) not in ("binary", "classification"):
        raise RunnerError(f"stratify={stratify!r}: task '{stratify}' is a {getattr(task, 'type_name', '?')} "
                          f"task; splits can be stratified by a binary or classification task only")
    if data is None or stratify not in getattr(data, "targets", {}):
        raise RunnerError(f"stratify={stratify!r} needs the project's dataset with the labels of "
                          f"'{stratify}'")
    targets = data.targets[stratify].reshape(len(dataset), -1)
    available = data.available[stratify].reshape(len(dataset), -1)
    if targets.shape[1] != 1:
        raise RunnerError(f"stratify={stratify!r}: expected one label per row, got {targets.shape[1]}")
    return [int(round(float(t))) if bool(a) else None for t, a in zip(targets[:, 0], available[:, 0])]


def assign_splits(runner: "DnnCoolSupervisedRunner", split_fractions, seed: int, stratify: Optional[str],
                  resplit: bool) -> dict:
    """The runner's splits as dataset positions, from its ``splits.json`` (row labels; made when missing, see
    :mod:`~dnn_cool_catalyst.run.splits`); with ``dev=N``, over the N seeded rows of the development subset only."""
    ids = row_ids(runner.dataset)
    dev_rows = None if runner.dev is None else dev_subset.dev_positions(ids, runner.dev, seed)
    # Replacing the splits of a run another process is training on would pull its rows away: resplit takes the lock.
    with run_lock(runner.run_dir, "resplit", enabled=resplit, owner=runner):
        splits = load_or_make_splits(runner.run_layout.splits, dev_subset.subset(ids, dev_rows), split_fractions,
                                     seed, stratify,
                                     dev_subset.subset(strata(runner.flow, runner.dataset, stratify), dev_rows),
                                     resplit)
    return dev_subset.to_dataset_positions(splits, dev_rows)


def fit_model_inputs(model, dataset, train_positions) -> None:
    """A model with input statistics of its own (``tabular_model``'s standardisation, TabM's bins) fits them on the
    run's training split, deterministically, so a restarted runner rebuilds the same model before loading its
    weights. Called when the run (or a fold of it) is created, before any optimizer exists."""
    fit_inputs = getattr(model, "fit_inputs", None)
    if callable(fit_inputs):
        fit_inputs(dataset, train_positions)


def split_loader(runner: "DnnCoolSupervisedRunner", split: str, shuffle: bool = False,
                 batch_size: Optional[int] = None) -> DataLoader:
    """A DataLoader over the split ``split`` (``"train"``, ``"valid"``, ``"test"``): batches of
    ``batch_size`` (default: the runner's) dicts with ``inputs``, ``targets``, ``available`` (per task),
    ``index`` (dataset positions) and ``valid`` (False marks DDP padding); ``shuffle`` reshuffles every epoch
    with the runner's seed. The same loaders ``train`` and ``infer`` use.

    Example:
        >>> import tempfile
        >>> from dnn_cool_catalyst import Project
        >>> from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
        >>> project = Project(numbers_frame(100, seed=0), "number", ["is_interesting", "is_even",
        ...                   "predict_positive", "multiple_three"], project_dir=tempfile.mkdtemp())
        >>> runner = project.runner(numbers_model(define_flows(project)), "exp", batch_size=32)
        >>> batch = next(iter(runner.split_loader("train")))
        >>> sorted(batch), batch["index"].shape, batch["targets"]["is_even"].shape
        (['available', 'index', 'inputs', 'targets', 'valid'], torch.Size([32]), torch.Size([32]))
        >>> runner.split_loader("tset")
        Traceback (most recent call last):
        ...
        dnn_cool_catalyst.errors.RunnerError: unknown split 'tset'; splits are ['train', 'valid', 'test']
    """
    splits, dataset = runner.splits, runner.dataset
    if split not in splits:
        raise RunnerError(f"unknown split '{split}'; splits are {list(splits)}")
    if not len(splits[split]):
        raise RunnerError(f"split '{split}' has no samples ({len(dataset)} samples split by "
                          f"{[len(v) for v in splits.values()]}); change split_fractions")
    # Our own batch sampler, so that under DDP each process gets its slice of the very batches one process
    # would see (parallel/sampler.py); batches carry "valid" (False marks distributed padding). Each batch is
    # fetched whole (BatchedSubset: columns indexed by the batch's positions, no per-item dicts).
    # With train(balance=...), the training split's sampler draws a balanced epoch (training/augmentation.py).
    sampler = augmentation.batch_sampler(runner, split, shuffle, batch_size or runner.loader_batch)
    workers = runner.num_workers if runner.num_workers is not None else default_num_workers(dataset)
    return DataLoader(BatchedSubset(dataset, splits[split]), batch_sampler=sampler,
                      collate_fn=collate_batch, num_workers=workers, persistent_workers=workers > 0)


def placed_loader(runner: "DnnCoolSupervisedRunner", loader, device, rank: int = 0, world: int = 1):
    """``loader`` as this process iterates it on ``device``: gathered on the device or through pinned memory
    (``device_data``), resharded under DDP, or as it is (``handle_batch`` moves its batches: accelerate's
    wrapper would only add per-batch work); None when it is not a split loader of ours (accelerate's then)."""
    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, ShardedBatchSampler):
        return None
    mode = placement.resolve_mode(runner.device_data, loader, torch.device(device))
    if mode == "off":
        return reshard_loader(loader, rank, world) if world > 1 else loader
    return placement.DeviceBatches(loader, device, mode, batch_sampler=sampler.shard(rank, world))


def engine_loaders(runner: "DnnCoolSupervisedRunner", given: dict) -> dict:
    """The loaders of a Catalyst run as its engine's process iterates them (Catalyst's ``_setup_loaders``)."""
    engine = runner.engine
    rank, world = max(0, engine.process_index), engine.num_processes
    # accelerate's prepare() would deal whole batches to processes in turn; slice every global batch instead,
    # and gather on the device when device_data says so. Other loaders (user-given) go through accelerate.
    set_global_seed(runner.seed + rank + runner.epoch_step)
    return {key: runner._placed_loader(loader, engine.device, rank, world) or engine.prepare(loader)
            for key, loader in given.items()}


def materialize(runner: "DnnCoolSupervisedRunner") -> None:
    """Run one small batch through the model so lazy heads get their shapes before an optimizer exists."""
    model = runner.model
    if not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters()):
        return
    batch = next(iter(runner.split_loader("train", batch_size=2)))
    was_training = model.training
    with torch.no_grad():
        model.eval()
        model(batch["inputs"])
    model.train(was_training)


def default_num_workers(dataset) -> int:
    """DataLoader workers when ``num_workers`` is not given: none when every input column is in memory (a batch
    is an index: workers would only add copies between processes); for columns read per item (image files), one
    per core but one, at most 4."""
    inner = getattr(dataset, "dataset", dataset)
    if not getattr(inner, "reads_per_item", False):
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))
