"""Optimizers and learning-rate schedules named by plain values, so Python calls and YAML configs say the same.

``optimizer``: ``None`` / ``"AdamW"`` / ``{"name": "SGD", "momentum": 0.9, ...}``: any class of ``torch.optim``,
built over the trainable parameters with the stage's ``lr`` unless the spec gives its own ``lr``.

``scheduler`` (one of, with keyword arguments next to ``name``):

- ``"plateau"``: ``ReduceLROnPlateau`` on the validation metric, stepped per epoch (``factor``, ``patience``);
- ``"one_cycle"``: torch's ``OneCycleLR`` stepped per batch over the whole run; ``max_lr`` defaults to ``lr``,
  ``total_steps`` is batches per epoch x ``num_epochs``;
- ``"cyclic"``: torch's ``CyclicLR`` stepped per batch between ``base_lr`` (default ``lr / 10``) and ``max_lr``
  (default ``lr``), ``step_size_up`` defaulting to one epoch of batches; ``cycle_momentum`` defaults to False
  (AdamW has no momentum to cycle);
- ``"warmup_cosine"``: linear warm-up from 0 to ``lr`` over ``warmup_epochs`` (default 1, may be fractional)
  or ``warmup_steps`` batches, then a cosine decay towards ``min_lr`` (default 0), reached just after the last
  batch, stepped per batch;
- any other ``torch.optim.lr_scheduler`` class by name (``{"name": "StepLR", "step_size": 2}``), stepped per
  epoch unless ``interval: batch``;
- ``None`` / ``"none"``: a constant learning rate.

Per-batch schedules are stepped by Catalyst's ``SchedulerCallback`` after every training batch; their state
(how many steps taken) is in every checkpoint, so a resumed run continues the curve where it stopped.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch.optim import lr_scheduler

from ..errors import RunnerError

#: Named schedules; other names are looked up in ``torch.optim.lr_scheduler``.
SCHEDULE_NAMES = ("plateau", "one_cycle", "cyclic", "warmup_cosine", "none")
#: Catalyst's SchedulerCallback reads the stepping interval from this attribute of the schedulers built here.
INTERVAL_ATTRIBUTE = "_dnn_cool_interval"


def _split_spec(spec, what: str):
    """``(name, kwargs)`` of ``"Name"`` or ``{"name": "Name", **kwargs}``."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if not isinstance(spec.get("name"), str):
            raise RunnerError(f"{what}={spec!r} must have a 'name' (a string) next to its arguments")
        kwargs = dict(spec)
        return kwargs.pop("name"), kwargs
    raise RunnerError(f"{what} must be a name, a dict with 'name' or a torch object, got {type(spec).__name__}")


def build_optimizer(spec, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``spec`` names over ``params`` (parameter groups), with ``lr`` unless the spec sets one.

    >>> opt = build_optimizer({"name": "SGD", "momentum": 0.9}, [torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    >>> type(opt).__name__, opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    ('SGD', 0.1, 0.9)
    """
    if spec is None:
        return default_optimizer(params, lr)
    name, kwargs = _split_spec(spec, "optimizer")
    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        known = sorted(n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
                       and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != "Optimizer")
        raise RunnerError(f"optimizer name {name!r} is not a torch.optim optimizer; known: {known}")
    kwargs.setdefault("lr", lr)
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as e:
        raise RunnerError(f"optimizer {name} with {kwargs}: {e}") from None


def default_optimizer(params, lr: float) -> torch.optim.Optimizer:
    """``train()``'s optimizer when none is given: AdamW with its fused implementation (one kernel for all
    parameters) where every parameter allows it, the for-loop one otherwise. Same update rule; on the CPU the
    for-loop AdamW costs a third of a small tabular model's training step (``benchmarks/bench_compile.py``, 240 vs
    74 ms per epoch of the 6-task tabular flow).

    >>> opt = default_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))]}], lr=0.1)
    >>> type(opt).__name__, opt.param_groups[0]["lr"], opt.defaults["fused"]
    ('AdamW', 0.1, True)
    """
    groups = list(params)
    tensors = [p for group in groups for p in (group["params"] if isinstance(group, dict) else [group])]
    fusable = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    if fusable:
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, ValueError):  # a build of torch without the fused kernel for this device or dtype
            pass
    return torch.optim.AdamW(groups, lr=lr)


class WarmupCosineLR(lr_scheduler.LRScheduler):
    """Linear warm-up from 0 to each group's initial lr over ``warmup_steps`` steps, then a cosine from it down to
    ``min_lr`` at step ``total_steps``; held at ``min_lr`` after that. A closed form of the step count, so its
    state is two numbers and a counter.

    >>> p = torch.nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.SGD([p], lr=1.0)
    >>> sched = WarmupCosineLR(opt, warmup_steps=2, total_steps=6)
    >>> lrs = []
    >>> for _ in range(6):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 3)); opt.step(); sched.step()
    >>> lrs
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146]
    """

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0, last_epoch: int = -1):
        self.warmup_steps, self.total_steps, self.min_lr = int(warmup_steps), int(total_steps), float(min_lr)
        super().__init__(optimizer, last_epoch)

    def factor_lr(self, base_lr: float, step: int) -> float:
        if step < self.warmup_steps:
            return base_lr * step / self.warmup_steps
        decay = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay)
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self):
        return [self.factor_lr(base, self.last_epoch) for base in self.base_lrs]


def build_scheduler(spec, optimizer, *, lr: float, steps_per_epoch: int, num_epochs: int, minimize: bool) -> Any:
    """The scheduler ``spec`` names (see the module docstring), ``None`` for none. Its stepping interval is
    :func:`scheduler_interval`."""
    if spec is None:
        return None
    name, kwargs = _split_spec(spec, "scheduler")
    interval = kwargs.pop("interval", None)
    if interval not in (None, "batch", "epoch"):
        raise RunnerError(f"scheduler {name!r}: interval must be 'batch' or 'epoch', got {interval!r}")
    total = steps_per_epoch * num_epochs
    try:
        if name == "none":
            return None
        if name == "plateau":
            kwargs.setdefault("mode", "min" if minimize else "max")
            kwargs.setdefault("factor", 0.5)
            kwargs.setdefault("patience", 2)
            scheduler, default = lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs), "epoch"
        elif name == "one_cycle":
            kwargs.setdefault("max_lr", lr)
            kwargs.setdefault("total_steps", total)
            scheduler, default = lr_scheduler.OneCycleLR(optimizer, **kwargs), "batch"
        elif name == "cyclic":
            kwargs.setdefault("max_lr", lr)
            kwargs.setdefault("base_lr", kwargs["max_lr"] / 10)
            kwargs.setdefault("step_size_up", max(1, steps_per_epoch))
            kwargs.setdefault("cycle_momentum", False)
            scheduler, default = lr_scheduler.CyclicLR(optimizer, **kwargs), "batch"
        elif name == "warmup_cosine":
            warmup_epochs = kwargs.pop("warmup_epochs", None if "warmup_steps" in kwargs else 1)
            warmup = kwargs.pop("warmup_steps", None)
            if warmup is None:
                warmup = int(round(float(warmup_epochs) * steps_per_epoch))
            scheduler = WarmupCosineLR(optimizer, warmup_steps=warmup, total_steps=total, **kwargs)
            default = "batch"
        else:
            cls = getattr(lr_scheduler, name, None)
            if not isinstance(cls, type) or name.startswith("_") or name in ("LRScheduler", "LambdaLR",
                                                                             "MultiplicativeLR"):
                raise RunnerError(f"scheduler name {name!r} is neither one of {list(SCHEDULE_NAMES)} nor a "
                                  f"torch.optim.lr_scheduler class taking plain arguments")
            scheduler, default = cls(optimizer, **kwargs), "epoch"
    except RunnerError:
        raise
    except (TypeError, ValueError) as e:
        raise RunnerError(f"scheduler {name} with {kwargs}: {e}") from None
    # An instance attribute: torch's state_dict saves it (a plain string), so a resumed scheduler keeps it.
    setattr(scheduler, INTERVAL_ATTRIBUTE, interval or default)
    return scheduler


def scheduler_interval(scheduler) -> Optional[str]:
    """``"batch"`` / ``"epoch"`` for a scheduler built here, ``None`` (Catalyst's own choice) otherwise."""
    return getattr(scheduler, INTERVAL_ATTRIBUTE, None)


def steps_per_epoch(loaders) -> int:
    """Batches in the training loader (the first loader whose name starts with ``train``)."""
    for key, loader in loaders.items():
        if str(key).startswith("train"):
            try:
                return len(loader)
            except TypeError:
                raise RunnerError(f"a per-batch schedule needs the number of batches per epoch, but the loader "
                                  f"'{key}' has no len()") from None
    raise RunnerError(f"no training loader among {list(loaders)} (names must start with 'train')")
