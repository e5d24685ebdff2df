"""``runner.lr_find()``: a learning-rate range test that leaves the runner as it found it.

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps`` training batches (the
training split, reshuffled each pass, cycled when it has fewer batches), one optimizer step per batch. The loss
is smoothed with an exponential moving average (weight ``smoothing`` on the newest value, bias-corrected as in
Adam), and the test stops early once the smoothed loss exceeds ``diverge_factor`` x its minimum so far, or a loss
is not finite.

Suggested learning rate: the point of *steepest descent* of the smoothed loss, i.e. the rate where
d(smoothed loss) / d(log lr) is most negative (numerical gradient over the steps up to the lowest smoothed loss,
before any divergence). It is a rate where the loss still falls fastest, below the minimum's rate (which is
already close to instability); ``nan`` when the lowest smoothed loss comes within the first 3 steps.

Catalyst's own ``LRFinder`` ends training with a ``KeyboardInterrupt`` and changes the model; this is a plain loop
instead. Before it runs, the model's and the loss's ``state_dict`` (learned loss weights), every parameter's
``requires_grad`` and ``.grad``, the training flag, the device and torch's random state are saved; they are put
back afterwards, also when it fails. The runner's own optimizer (of an earlier ``train``) is not used: the test
builds its own. Nothing is written to the run directory except, with ``tensorboard=True``, the curve under
``tensorboard/lr_find/`` (scalars ``lr_find/loss``, ``lr_find/smoothed_loss``, ``lr_find/lr`` per step and
``lr_find/suggested_lr``).
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import pandas as pd
import torch

from ..errors import RunnerError
from ..parallel import to_device
from ..run.lock import run_lock
from .schedules import build_optimizer

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


class LRFinderResult(NamedTuple):
    """``history`` (DataFrame: ``step``, ``lr``, ``loss``, ``smoothed_loss``) and ``suggested_lr``."""
    history: "object"
    suggested_lr: float

    def to_string(self, index: bool = False) -> str:
        """The table and the suggestion, for a console (``dnn-cool-run`` prints it)."""
        return f"{self.history.to_string(index=index)}\nsuggested lr: {self.suggested_lr:.3g}"


def lr_schedule(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """The exponential ramp ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``.

    >>> [float(f"{v:.0e}") for v in lr_schedule(1e-4, 1.0, 5)]
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    """
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))


def smooth(losses, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average with weight ``smoothing`` on the newest value.

    >>> [round(float(v), 3) for v in smooth([1.0, 1.0, 4.0], 0.5)]
    [1.0, 1.0, 2.714]
    """
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = smoothing * float(loss) + (1.0 - smoothing) * average
        out.append(average / (1.0 - (1.0 - smoothing) ** (i + 1)))
    return np.asarray(out, dtype=np.float64)


def steepest_descent(lrs, smoothed) -> float:
    """The learning rate where the smoothed loss falls fastest per unit of ``log(lr)`` (``nan`` under 3 points).

    >>> lrs = np.logspace(-4, 1, 6)
    >>> bool(steepest_descent(lrs, [1.0, 0.98, 0.6, 0.3, 0.28, 2.0]) == lrs[2])
    True
    """
    lrs, smoothed = np.asarray(lrs, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    # Only the descent up to the lowest smoothed loss: past it, a noisy fall from a spike is no place to train.
    end = int(np.argmin(smoothed)) + 1
    lrs, smoothed = lrs[:end], smoothed[:end]
    if len(lrs) < 3:
        return math.nan
    slopes = np.gradient(smoothed, np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def _check_arguments(start_lr, end_lr, num_steps, smoothing, diverge_factor) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr), ("diverge_factor", diverge_factor)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise RunnerError(f"lr_find: {name} must be a positive number, got {value!r}")
    if start_lr >= end_lr:
        raise RunnerError(f"lr_find: start_lr ({float(start_lr):g}) must be below end_lr ({float(end_lr):g})")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3:
        raise RunnerError(f"lr_find: num_steps must be an int >= 3, got {num_steps!r}")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 < smoothing <= 1:
        raise RunnerError(f"lr_find: smoothing must be in (0, 1], got {smoothing!r}")
    if diverge_factor <= 1:
        raise RunnerError(f"lr_find: diverge_factor must be > 1, got {diverge_factor!r}")


def lr_find(runner: "DnnCoolSupervisedRunner", start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
            smoothing: float = 0.05, diverge_factor: float = 4.0, optimizer=None, tensorboard: bool = True,
            device: Optional[str] = None) -> LRFinderResult:
    """Learning-rate range test on ``runner``; returns ``(history, suggested_lr)``. ``optimizer``: a spec as in
    ``train`` (default AdamW). ``device``: default the GPU when there is one. See the module docstring for the
    method and what is restored."""
    _check_arguments(start_lr, end_lr, num_steps, smoothing, diverge_factor)
    with run_lock(runner.run_dir, "lr_find", enabled=runner._writes_files(), owner=runner):
        runner._use_fitted_targets()
        runner._materialize()
        with _Restored(runner.model, runner.flow_loss):
            history = _range_test(runner, lr_schedule(start_lr, end_lr, num_steps), smoothing, diverge_factor,
                                  optimizer, torch.device(device) if device else _default_device())
    stable = history[~history["diverged"]]
    suggested = steepest_descent(stable["lr"], stable["smoothed_loss"])
    history = history.drop(columns="diverged")
    if tensorboard and runner._writes_files():
        _log_lr_find(runner.run_layout.lr_find, history, suggested)
    return LRFinderResult(history, suggested)


def _range_test(runner: "DnnCoolSupervisedRunner", lrs, smoothing: float, diverge_factor: float, optimizer, device):
    model, loss_fn = runner.model, runner.flow_loss
    model.to(device).train()
    loss_fn.to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    loss_params = list(loss_fn.parameters())
    groups += [{"params": loss_params, "weight_decay": 0.0}] if loss_params else []
    opt = build_optimizer(optimizer, groups, float(lrs[0]))
    opt.zero_grad(set_to_none=True)  # never accumulate into the .grad tensors the caller holds
    loader = runner.split_loader("train", shuffle=True)
    rows, best, epoch = [], math.inf, 0
    batches = iter(())
    average = 0.0
    for step, lr in enumerate(lrs):
        batch = next(batches, None)
        if batch is None:  # the next pass over the training split, in its own shuffle
            loader.batch_sampler.set_epoch(epoch)
            epoch += 1
            batches = iter(loader)
            batch = next(batches)
        for group in opt.param_groups:
            group["lr"] = float(lr)
        batch = to_device(batch, device)
        loss = loss_fn(model(batch["inputs"]), batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            rows.append((step, float(lr), value, math.nan, True))
            break
        average = smoothing * value + (1.0 - smoothing) * average
        smoothed = average / (1.0 - (1.0 - smoothing) ** (step + 1))
        diverged = smoothed > diverge_factor * best
        rows.append((step, float(lr), value, smoothed, bool(diverged)))
        if diverged:
            break
        best = min(best, smoothed)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return pd.DataFrame(rows, columns=["step", "lr", "loss", "smoothed_loss", "diverged"])


def _log_lr_find(logdir: str, history, suggested: float) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(logdir)
    try:
        for row in history.itertuples(index=False):
            writer.add_scalar("lr_find/lr", row.lr, row.step)
            writer.add_scalar("lr_find/loss", row.loss, row.step)
            if math.isfinite(row.smoothed_loss):
                writer.add_scalar("lr_find/smoothed_loss", row.smoothed_loss, row.step)
        if math.isfinite(suggested):
            writer.add_scalar("lr_find/suggested_lr", suggested, 0)
    finally:
        writer.close()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Restored:
    """Saves what a range test changes on the model and the loss, and puts it back on exit."""

    def __init__(self, model: torch.nn.Module, loss_fn: torch.nn.Module):
        self.model, self.loss_fn = model, loss_fn

    def __enter__(self):
        model, loss_fn = self.model, self.loss_fn
        self.states = [copy.deepcopy(m.state_dict()) for m in (model, loss_fn)]
        self.params = [(p, p.requires_grad, p.grad, p.device) for m in (model, loss_fn) for p in m.parameters()]
        self.training = [(m, m.training) for m in list(model.modules()) + list(loss_fn.modules())]
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return self

    def __exit__(self, *exc) -> None:
        devices = {device for *_, device in self.params}
        if len(devices) == 1:  # back where the parameters were (a model spread over devices is not moved)
            device = devices.pop()
            self.model.to(device)
            self.loss_fn.to(device)
        for module, state in zip((self.model, self.loss_fn), self.states):
            module.load_state_dict(state)
        for p, requires_grad, grad, _ in self.params:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for module, training in self.training:
            module.train(training)
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
