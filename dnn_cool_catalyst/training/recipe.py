"""The default components of one fit: ``runner.train()`` without stages, and each stage of ``train(stages=...)``.

:func:`fit` checks the arguments, then builds what the caller did not give (every default is replaced by the usual
Catalyst argument of ``train``) and hands it all to Catalyst's ``SupervisedRunner.train``:

- the optimizer (:func:`optimizer_for`): a spec or AdamW over the trainable model parameters, plus the learned loss
  weights without weight decay;
- the scheduler (:func:`scheduler_for`): ReduceLROnPlateau on the selection metric, or a spec of :mod:`.schedules`;
- the callbacks (:func:`default_callbacks`): loss, NaN guard, metrics, model selection, interpretation, backward,
  optimizer, early stopping, scheduler, per-task selection, checkpoint, console. A default is left out when the
  caller gave a callback under its key, or (:func:`with_defaults`) one of the same kind for the loss, the backward
  pass and the optimizer step, as Catalyst's own ``get_callbacks`` decides;
- the TensorBoard logger of the runner's run, and the engine (the runner's, else :func:`.engine.default_engine`).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Optional

import torch
from catalyst import dl
from catalyst.core.callback import IBackwardCallback, ICriterionCallback, IOptimizerCallback
from catalyst.core.misc import callback_isinstance

from ..callbacks import FlowCriterionCallback, FlowMetricsCallback, InterpretationCallback
from ..callbacks.checkpoint import ResumableCheckpointCallback
from ..callbacks.console import EpochSummaryCallback, ProgressBarCallback, resolve_verbose
from ..callbacks.early_stopping import BaselineAwareEarlyStopping, trivial_baselines
from ..callbacks.nan_guard import NanGuardCallback
from ..callbacks.selection import ModelSelectionCallback, ValidMetricError, resolve_valid_metric, selection_key
from ..callbacks.task_checkpoints import TaskCheckpointCallback, remove_task_selection
from ..errors import RunnerError
from ..messages import warn_user
from ..run import fitted
from ..run.claim import check_own_folder
from ..run.layout import CHECKPOINT_MODE
from ..safe_read import read_json
from .engine import default_engine, scheduler_callbacks
from .epoch_budget import default_num_epochs, default_patience, plateau_patience
from .loggers import FlowTensorboardLogger
from .schedules import build_optimizer, build_scheduler, scheduler_interval, steps_per_epoch

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner

#: Defaults a caller replaces with a callback of the same kind under any key: two of them would compute the loss,
#: run the backward pass or step the optimizer twice per batch.
BY_KIND = {"_criterion": ICriterionCallback, "_backward": IBackwardCallback, "_optimizer": IOptimizerCallback}


def fit(runner: "DnnCoolSupervisedRunner", *, num_epochs: Optional[int], resume: bool, lr: float,
        early_stopping_patience: Optional[int], verbose, valid_metric: str, task_selection: bool = False,
        loss: Optional[torch.nn.Module] = None, **kwargs) -> "DnnCoolSupervisedRunner":
    """One Catalyst run of ``runner`` with the defaults above; ``loss``: the criterion (default
    ``runner.flow_loss``; a stage passes its own). ``kwargs`` reach Catalyst's ``train``."""
    loss = runner.flow_loss if loss is None else loss
    verbose = resolve_verbose(verbose)
    check_counts(num_epochs, early_stopping_patience)
    try:
        metric_key, minimize = resolve_valid_metric(runner.flow, valid_metric)
    except ValidMetricError as e:
        raise RunnerError(str(e)) from None
    monitored = selection_key(metric_key)
    checkpoint_dir = runner.checkpoint_dir
    check_own_folder(runner.run_dir, checkpoint_dir)  # a symlinked checkpoints/ is refused, as a file is
    last = runner.run_layout.checkpoint("last")  # the running stage's (training/stages.py)
    if resume and os.path.exists(last):
        check_resumed_selection(runner.run_layout.storage_index, monitored, minimize, valid_metric)
    runner._use_fitted_targets()
    runner._materialize()
    loaders = kwargs.pop("loaders", None) or OrderedDict(
        train=runner.split_loader("train", shuffle=True), valid=runner.split_loader("valid"))
    if num_epochs is None:  # the step budget; the same total again on resume (it depends on the data only)
        num_epochs = default_num_epochs(steps_per_epoch(loaders))
    if early_stopping_patience is None:
        early_stopping_patience = default_patience(num_epochs)
    optimizer = optimizer_for(runner.model, loss, kwargs.pop("optimizer", None), lr)
    scheduler = scheduler_for(kwargs.pop("scheduler", "default"), optimizer, lr=lr, loaders=loaders,
                              num_epochs=num_epochs, minimize=minimize, patience=early_stopping_patience)
    given = kwargs.pop("callbacks", None) or {}
    resuming = resume and os.path.exists(last)
    if resume and not resuming:
        warn_user(f"resume=True but {last} does not exist: training from scratch")
    if runner._writes_files() and not (task_selection and resuming):  # an earlier run's selection is not ours
        remove_task_selection(checkpoint_dir)
    defaults = default_callbacks(runner, loss, metric_key, minimize, early_stopping_patience, scheduler,
                                 task_selection=task_selection, resume_from=last if resuming else None,
                                 verbose=verbose)
    callbacks = with_defaults(given, defaults)
    loggers = kwargs.pop("loggers", None) or {
        "tensorboard": FlowTensorboardLogger(logdir=runner.tensorboard_dir)}
    engine = kwargs.pop("engine", None) or runner._engine_arg or default_engine()
    # Catalyst's own train: the runner's override is the entry point that called here.
    dl.SupervisedRunner.train(runner, loaders=loaders, model=runner.model, engine=engine, criterion=loss,
                              optimizer=optimizer, scheduler=scheduler, callbacks=callbacks, loggers=loggers,
                              num_epochs=num_epochs, logdir=runner.run_dir, valid_loader="valid",
                              valid_metric=monitored, minimize_valid_metric=minimize, seed=runner.split_seed,
                              verbose=verbose, **kwargs)
    return runner


def check_counts(num_epochs, early_stopping_patience) -> None:
    """``num_epochs`` and ``early_stopping_patience``: positive ints, or None for their defaults."""
    if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, int)
                                   or num_epochs < 1):
        raise RunnerError(f"num_epochs must be a positive int (the total, also when resuming), got {num_epochs!r}")
    if early_stopping_patience is not None and (isinstance(early_stopping_patience, bool) or not isinstance(
            early_stopping_patience, int) or early_stopping_patience < 1):
        raise RunnerError(f"early_stopping_patience must be a positive int or None (derived from num_epochs), "
                          f"got {early_stopping_patience!r}")


def optimizer_for(model: torch.nn.Module, loss: torch.nn.Module, optimizer, lr: float):
    """``optimizer`` when it is one, else the optimizer its spec names (default AdamW) over the model's trainable
    parameters and ``loss``'s learned weights."""
    loss_params = list(loss.parameters())
    if optimizer is None or isinstance(optimizer, (str, dict)):
        # The learned loss weights train too, without weight decay (it would pull every task towards s_t = 0).
        # Frozen parameters (requires_grad=False, e.g. a stage's `freeze`) stay out of the optimizer.
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        groups += [{"params": loss_params, "weight_decay": 0.0}] if loss_params else []
        optimizer = build_optimizer(optimizer, groups, lr)
    elif loss_params and isinstance(optimizer, torch.optim.Optimizer):
        given = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not all(id(p) in given for p in loss_params):
            warn_user("loss_weights='uncertainty' but the optimizer given to train() does not hold the "
                      "learned log-variances (runner.flow_loss.parameters()): they will stay at 0")
    return optimizer


def scheduler_for(scheduler, optimizer, *, lr: float, loaders, num_epochs: int, minimize: bool, patience: int):
    """``scheduler`` when it is one; ``"default"``: ReduceLROnPlateau; a spec (or None): :func:`.build_scheduler`."""
    if scheduler == "default":
        # Halve the lr after a third of early stopping's patience without improvement (2 epochs on short runs).
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if minimize else "max", factor=0.5,
                                                          patience=plateau_patience(patience))
    if scheduler is None or isinstance(scheduler, (str, dict)):
        return build_scheduler(scheduler, optimizer, lr=lr, steps_per_epoch=steps_per_epoch(loaders),
                               num_epochs=num_epochs, minimize=minimize)
    return scheduler


def default_callbacks(runner: "DnnCoolSupervisedRunner", loss: torch.nn.Module, metric_key: str, minimize: bool,
                      patience: int, scheduler, *, task_selection: bool, resume_from: Optional[str],
                      verbose: bool) -> "OrderedDict":
    """The default callbacks of one fit, by key, in the order they are added."""
    flow, checkpoint_dir, monitored = runner.flow, runner.checkpoint_dir, selection_key(metric_key)
    defaults = OrderedDict(
        _criterion=FlowCriterionCallback(flow, loss_fn=loss),
        _nan_guard=NanGuardCallback(flow),
        _metrics=FlowMetricsCallback(flow),
        _model_selection=ModelSelectionCallback(flow, metric_key, minimize),
        # Best/worst validation samples per task in TensorBoard; off with runner.interpretation_k = 0.
        **({"_interpretation": InterpretationCallback(
            flow, k=runner.interpretation_k, loaders=("valid",), publishers=runner.publishers,
            logdir=runner.tensorboard_dir, every=runner.interpretation_every, metric_key=monitored,
            minimize=minimize)} if runner.interpretation_k > 0 else {}),
        _backward=dl.BackwardCallback(metric_key="loss"),
        _optimizer=dl.OptimizerCallback(metric_key="loss"),
        _early_stopping=BaselineAwareEarlyStopping(patience=patience, loader_key="valid",
                                                   metric_key=monitored, minimize=minimize,
                                                   baselines=valid_baselines(runner)),
        # Same order as the checkpoint: listed first so the scheduler steps before its state is saved.
        **scheduler_callbacks(scheduler, mode=scheduler_interval(scheduler), loader_key="valid",
                                     metric_key=monitored),
        # Also before the checkpoint, whose files carry each task's best epoch.
        **({"_task_checkpoints": TaskCheckpointCallback(flow, checkpoint_dir, loader_key="valid")}
           if task_selection else {}),
        _checkpoint=ResumableCheckpointCallback(
            logdir=checkpoint_dir, loader_key="valid", metric_key=monitored, minimize=minimize,
            mode=CHECKPOINT_MODE,
            resume_runner=resume_from),
    )
    if verbose:  # instead of Catalyst's ConsoleLogger (one long line of 17-digit floats per loader)
        defaults.update(_verbose=ProgressBarCallback(), _epoch_summary=EpochSummaryCallback(flow))
    return defaults


def with_defaults(given, defaults: "OrderedDict") -> "OrderedDict":
    """The caller's callbacks (a dict, or a list keyed by position), then each default the caller did not give:
    none under its key, nor, for the kinds of :data:`BY_KIND`, one of its kind under another key.

    >>> own_loss = dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss")
    >>> defaults = OrderedDict(_criterion="flow loss", _metrics="flow metrics")
    >>> list(with_defaults([own_loss], defaults)), list(with_defaults({"_metrics": None}, defaults))
    ([0, '_metrics'], ['_metrics', '_criterion'])
    """
    callbacks = OrderedDict(given if isinstance(given, dict) else enumerate(given))
    for key, callback in defaults.items():
        kind = BY_KIND.get(key)
        if kind is not None and any(callback_isinstance(c, kind) for c in callbacks.values()):
            continue
        callbacks.setdefault(key, callback)
    return callbacks


def valid_baselines(runner: "DnnCoolSupervisedRunner") -> dict:
    """Trivial baselines of the validation split (what early stopping waits for every task to beat)."""
    if not len(runner.splits["valid"]):
        return {}
    targets, available = fitted.train_split_labels(runner.dataset, runner.flow, runner.splits["valid"])
    return trivial_baselines(runner.flow, targets, available)


def check_resumed_selection(path: str, monitored: str, minimize: bool, valid_metric: str) -> None:
    """A resumed run must select on what it selected on before: the best epoch and the early-stopping
    record are scores of that metric (``path``: the checkpoints' ``runner.storage.json``)."""
    try:
        saved = read_json(path)
        before = (saved["metric_key"], bool(saved["minimize"]))
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable record: the checkpoint callback reports a damaged one itself
    if before != (monitored, minimize):
        name = before[0][len("model_selection/"):] if before[0].startswith("model_selection/") else before[0]
        raise RunnerError(f"resume=True with valid_metric={valid_metric!r}, but this run selected its best "
                          f"epoch on {name!r} ({path}); resume with valid_metric={name!r} or start a new run")
