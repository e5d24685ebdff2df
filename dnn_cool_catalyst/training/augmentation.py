"""The runner's side of ``train(augment=..., balance=...)``, and its ``box_tasks``; functions over a runner.

- Training augmentation (``augment={"img": ["hflip", "brightness"]}``) runs in ``handle_batch`` on train loaders
  only, on the batch's device after the uint8 -> float conversion, from a generator seeded by the run's seed, the
  epoch, the batch step and the DDP rank: the same seed gives the same augmented batches.
- Class balancing (``balance=...``, ``training/balancing.py``) replaces the training split's batch sampler.
- ``box_tasks`` (``augment/boxes.py``) says which regression tasks are box coordinates, so that flips move them;
  test-time augmentation, which flips them too, is :mod:`dnn_cool_catalyst.outputs.tta`.

What one ``train()`` holds (the augmentation plan, the balanced draw) lives on the runner while that call runs
(``runner._augment_plan``, ``runner._balance_draw``; None otherwise).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from ..augment import AugmentationError, AugmentationPlan, batch_generator, parse_box_tasks
from ..augment.boxes import check_boxes
from ..errors import RunnerError
from ..parallel import ShardedBatchSampler
from ..parallel.balanced import BalancedBatchSampler
from .balancing import make_draw

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def set_box_tasks(runner: "DnnCoolSupervisedRunner", box_tasks) -> None:
    """Parse and check ``box_tasks`` (``augment/boxes.py``) against the flow, at construction."""
    try:
        runner.box_tasks = parse_box_tasks(box_tasks)
        check_boxes(runner.box_tasks, runner.flow)
    except AugmentationError as e:
        raise RunnerError(str(e)) from None


@contextlib.contextmanager
def training_extras(runner: "DnnCoolSupervisedRunner", augment=None, balance=None):
    """Validate ``augment`` and ``balance`` (before anything runs) and hold them for one ``train()``."""
    try:
        plan = AugmentationPlan(augment, runner.flow, runner.dataset, runner.box_tasks) if augment is not None \
            else None
    except AugmentationError as e:
        raise RunnerError(str(e)) from None
    draw = make_draw(balance, runner.flow, runner.dataset, runner.splits["train"]) if balance is not None else None
    runner._augment_plan, runner._balance_draw = plan, draw
    try:
        yield
    finally:
        runner._augment_plan, runner._balance_draw = None, None


def batch_sampler(runner: "DnnCoolSupervisedRunner", split: str, shuffle: bool,
                  batch_size: int) -> ShardedBatchSampler:
    """The batch sampler of a split loader: balanced for the shuffled training split while ``balance`` is set,
    else the plain seeded one."""
    if split == "train" and shuffle and runner._balance_draw is not None:
        return BalancedBatchSampler(runner._balance_draw, batch_size, seed=runner.split_seed)
    return ShardedBatchSampler(len(runner.splits[split]), batch_size, shuffle=shuffle, seed=runner.split_seed)


def augmented(runner: "DnnCoolSupervisedRunner", batch: dict) -> dict:
    """``batch`` augmented when training with ``augment`` (train loaders only), else as it is."""
    if runner._augment_plan is None or not runner.is_train_loader:
        return batch
    device = next(iter(batch["inputs"].values())).device if batch["inputs"] else torch.device("cpu")
    rank = max(0, getattr(runner.engine, "process_index", 0) or 0)
    generator = batch_generator(device, runner.split_seed, runner.epoch_step, runner.loader_batch_step, rank)
    try:
        return runner._augment_plan.apply(batch, generator)
    except AugmentationError as e:
        raise RunnerError(str(e)) from None
