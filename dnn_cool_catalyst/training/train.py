"""``runner.train(...)``: what every training does before and around its epochs, staged or not: the checks that
need no epoch, the run's lock, ``run_config.json``, augmentation and balancing, and the compiled step."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..run.lock import run_lock
from ..run.run_config import recording_train
from . import compiled_step, recipe
from . import stages as staged_training
from . import task_selection as task_selection_of
from .augmentation import training_extras
from .trainable import check_trainable

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def train(runner: "DnnCoolSupervisedRunner", *, num_epochs: Optional[int], resume: bool, lr: float,
          early_stopping_patience: Optional[int], verbose, valid_metric: str, stages, augment, balance, compile,
          task_selection, **kwargs) -> "DnnCoolSupervisedRunner":
    """``runner.train(...)``: train with sensible defaults; every default can be replaced with the usual Catalyst
    argument. Checks what can be checked before any epoch, then trains under the run's lock with ``run_config.json``
    recorded, staged (:mod:`.stages`) or as one :func:`.recipe.fit`.

    Defaults (:mod:`~dnn_cool_catalyst.training.recipe`): AdamW(lr) (its fused kernel where the parameters allow:
    :func:`~dnn_cool_catalyst.training.schedules.default_optimizer`), ReduceLROnPlateau on ``valid_metric`` (with
    its SchedulerCallback; halves the lr after a third of the early-stopping patience without improvement, at least
    2 epochs), early stopping after ``early_stopping_patience`` epochs without improvement (default: a twelfth of
    ``num_epochs``, 5 to 16), held while a task is still at its trivial baseline (majority label / R^2 <= 0 on the
    validation split; see :mod:`dnn_cool_catalyst.callbacks.early_stopping`), best + last checkpoints in
    ``checkpoints/``, TensorBoard logs in ``tensorboard/run-<N>/`` (the runner's ``tensorboard_dir``), an explicit
    engine (GPU when available).
    ``resume=True`` continues from ``checkpoints/runner.last.pth`` with the optimizer, scheduler and epoch
    counters restored (``num_epochs`` is the total), and the learned loss weights with ``loss_weights=
    "uncertainty"``; a run that stopped early stays stopped (no further epoch: the checkpoint records it).

    ``valid_metric`` is what early stopping, the plateau scheduler and the best checkpoint follow: ``"loss"``
    (the validation loss), ``"loss/<task_path>"``, one task's metric ``"<task_path>/<metric>"`` (e.g.
    ``"door_open/accuracy"``; errors minimised, the rest maximised) or ``"task_mean"`` (the mean over tasks of
    accuracy / R^2, maximised); see :mod:`dnn_cool_catalyst.callbacks.selection`.

    ``optimizer`` and ``scheduler`` also take plain specs (``{"name": "SGD", "momentum": 0.9}``, ``{"name":
    "one_cycle", "max_lr": 0.01}``, ``"warmup_cosine"``; see :mod:`~dnn_cool_catalyst.training.schedules`);
    per-batch schedules are stepped after every training batch. Without ``num_epochs`` the run gets a budget of
    optimizer steps (:mod:`~dnn_cool_catalyst.training.epoch_budget`: 4,000 steps, 10 to 200 epochs; the same total
    again on resume).

    ``stages``: a list of stages trained one after the other, each a dict with ``num_epochs`` and optionally
    ``name``, ``lr``, ``optimizer``, ``scheduler``, ``loss_weights``, ``freeze``, ``initial_weights``, ``strict``,
    ``early_stopping_patience``, ``valid_metric`` (the other arguments of this call are their defaults); see
    :mod:`~dnn_cool_catalyst.training.stages` for checkpoints, TensorBoard and resume.

    ``verbose="auto"`` (default) shows progress bars and a small per-epoch table (loss and headline metric per
    task, train and valid) when standard output is a terminal, nothing otherwise (tests, CI, redirected logs);
    ``True``/``False`` force it.

    The run directory is locked meanwhile (``.lock``): another process training or inferring into it fails
    at once naming this one.

    ``augment={"img": ["hflip", "brightness"]}`` augments the training batches per input column and
    ``balance={"task": "inverse_frequency"}`` / ``{"task": {"negatives_per_positive": 3}}`` balances the
    training split's sampling (README, "Augmentation, test-time augmentation and class balancing").

    A task with no labelled training row where its condition holds is an error before any epoch (see
    :mod:`~dnn_cool_catalyst.training.trainable`), unless ``loaders=`` brings the user's own data.

    ``compile=True`` (or a ``torch.compile`` mode such as ``"max-autotune"``) compiles the training step (model,
    flow heads, ground-truth masks, masked losses and their weighted sum, and its backward) into one graph; losses,
    metrics and tuned thresholds equal eager training's within float tolerance. Off by default: compiling costs
    far more up front than a short run takes (:mod:`~dnn_cool_catalyst.training.compiled_step`, measured in
    ``benchmarks/bench_compile.py``).

    ``task_selection``: keep each task's weights of the epoch where its own validation loss was lowest, so that
    ``infer``/``predict``/``export`` run every task at its own best epoch
    (:mod:`~dnn_cool_catalyst.training.task_selection`). ``"auto"`` (default): for models that declare
    ``select_per_task = True`` (``tabular_model``'s); ``True``/``False`` force it. Not with ``stages``.
    """
    compile_mode = compiled_step.check_compile(compile)
    selecting = task_selection_of.resolve(task_selection, runner.model, staged=stages is not None)
    if "loaders" not in kwargs:
        check_trainable(runner.flow, runner.dataset, runner.splits)
    train_args = dict(num_epochs=num_epochs, resume=resume, lr=lr, early_stopping_patience=early_stopping_patience,
                      verbose=verbose, valid_metric=valid_metric, **({} if stages is None else {"stages": stages}),
                      **({} if augment is None else {"augment": augment}),
                      **({} if balance is None else {"balance": balance}),
                      **({"compile": compile} if compile_mode else {}),
                      **({} if task_selection == "auto" else {"task_selection": task_selection}), **kwargs)
    writes = runner._writes_files()
    with training_extras(runner, augment, balance), run_lock(runner.run_dir, "train", enabled=writes, owner=runner), \
            recording_train(runner, train_args, enabled=writes), compiled_step.compiling(runner, compile_mode):
        if stages is not None:
            return staged_training.train_stages(runner, stages, num_epochs=num_epochs, resume=resume, lr=lr,
                                                early_stopping_patience=early_stopping_patience, verbose=verbose,
                                                valid_metric=valid_metric, **kwargs)
        staged_training.check_not_staged(runner, resume)
        return recipe.fit(runner, num_epochs=num_epochs, resume=resume, lr=lr,
                          early_stopping_patience=early_stopping_patience, verbose=verbose,
                          valid_metric=valid_metric, task_selection=selecting, **kwargs)
