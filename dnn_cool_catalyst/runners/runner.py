"""``DnnCoolSupervisedRunner``: Catalyst's SupervisedRunner driven by a flow."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from catalyst import dl
from catalyst.utils.misc import set_global_seed
from torch.utils.data import DataLoader

from .. import compat
from ..callbacks import FlowCriterionCallback, FlowMetricsCallback, InterpretationCallback
from ..callbacks.checkpoint import ResumableCheckpointCallback
from ..callbacks.task_checkpoints import TaskCheckpointCallback, remove_task_selection
from ..callbacks.early_stopping import BaselineAwareEarlyStopping, trivial_baselines
from ..callbacks.console import EpochSummaryCallback, ProgressBarCallback, resolve_verbose
from ..callbacks.nan_guard import NanGuardCallback
from ..callbacks.selection import ModelSelectionCallback, ValidMetricError, resolve_valid_metric, selection_key
from ..parallel import (REDUCTION_KEY, BatchedSubset, ShardedBatchSampler, autocast, autocast_dtype,
                        balanced_forward, collate_batch, reshard_loader)
from ..signatures import forwards_kwargs
from ..tasks.base import TaskError
from . import device_data as placement
from . import fitted
from ..experiments import dev_subset
from ..training import compiled_step
from ..training import task_selection as task_selection_of
from .augmentation import AugmentationMixin
from ..experiments.cross_validation import CrossValidationMixin
from .decoding import DecodingMixin
from .export import ExportMixin
from ..training.epoch_budget import default_num_epochs, default_patience, plateau_patience
from .errors import RunnerError
from .inference import InferenceMixin, to_device
from .interpretation import InterpretationMixin
from .lock import run_lock
from ..training.lr_finder import LRFinderMixin
from .prediction import PredictionMixin
from .run_config import recording_train, runner_settings
from .run_dir import check_own_folder, claim_run_dir
from ..training.schedules import build_optimizer, build_scheduler, scheduler_interval, steps_per_epoch
from .splits import load_or_make_splits
from ..training.stages import StagesMixin
from ..training.trainable import check_trainable
from .tensorboard_runs import FlowTensorboardLogger, TensorboardRunsMixin
from ..safe_read import read_json
from ..messages import warn_user


class DnnCoolSupervisedRunner(AugmentationMixin, CrossValidationMixin, InferenceMixin, DecodingMixin, PredictionMixin,
                              ExportMixin, InterpretationMixin, StagesMixin, LRFinderMixin, TensorboardRunsMixin,
                              dl.SupervisedRunner):
    """Trains, infers, tunes and evaluates a flow-driven model, keeping everything under ``run_dir``.

    ``model`` is any nn.Module taking the batch's ``"inputs"`` dict and returning the flow module's output (or a
    dict of logits per task). Ground truth never reaches the model: preconditions are applied in the loss and
    metrics from the batch's labels.

    Scale-out (README, "Multi-GPU, multi-node and mixed precision"): pass a Catalyst engine (DataParallel, DDP,
    ``mixed_precision=...``); ``balance_dataparallel_memory=True`` reduces loss and metric statistics on each
    DataParallel replica instead of gathering every logit on the main device.

    Data path (README, "Data path and device-resident data"): batches are gathered by index from the converted
    tensors. ``device_data`` (``"auto"``, ``"resident"``, ``"pinned"``, ``"off"``; see ``runners/device_data.py``)
    says where: ``"auto"`` keeps a split on the GPU when it fits in a quarter of the free memory, else copies
    batches from pinned memory; on the CPU it is the plain DataLoader. ``num_workers=None`` picks 0 when every input
    column is in memory and worker processes when some are read per item (image files).

    Splits (runners/splits.py): ``splits.json`` stores DataFrame index labels; ``self.splits`` maps each split
    to dataset positions. ``stratify`` names a binary/category task to stratify by; ``resplit=True`` replaces
    the saved splits (other rows or settings are otherwise an error).

    ``loss_weights``: ``None`` (every task 1.0), a dict of fixed weights or ``"uncertainty"`` (see
    :class:`~dnn_cool_catalyst.losses.FlowLoss`); validated here. The loss is ``runner.flow_loss``, also the
    Catalyst criterion (so learned weights are optimised and checkpointed).

    Layout of ``run_dir``: ``.lock`` (while training or inferring), ``flow.json`` (what the run was trained
    for), ``run_config.json`` (settings and train arguments, see runners/run_config.py), ``splits.json``,
    ``fitted_targets.json`` (state fitted on the training split, e.g. regression scaling), ``checkpoints/``,
    ``tensorboard/run-<N>/<loader>/`` (one TensorBoard run per runner object; per stage a subfolder),
    ``infer/<split>/<task>.npz`` + ``infer/<split>/manifest.json`` (checked on every read, see
    runners/artifacts.py) + ``infer/index.json``, ``tuned.json``, ``evaluation_<split>_<gating>.csv``,
    ``export/`` (``export()``'s default place, see ``runners/export.py``), and ``config.yml`` for runs made by
    ``dnn-cool-run`` (config/saved.py).

    ``dev=N`` (README, "Cross-validation and development subsets"): the same pipeline on N seeded rows, in the run
    directory ``<run_dir>-dev<N>``; ``cross_validate()`` (experiments/cross_validation.py) turns the run directory into
    a fold group.

    ``box_tasks``: which bounded regression tasks are box coordinates in the image (``augment/boxes.py``), so that
    flips in ``train(augment=...)`` and ``infer(tta=...)`` move them too; ``None`` refuses geometric augmentation
    on flows with regression tasks (README, "Augmentation, test-time augmentation and class balancing").
    """

    def __init__(self, model: torch.nn.Module, flow, run_dir: str, dataset=None, batch_size: int = 64,
                 num_workers: Optional[int] = None, seed: int = 42,
                 split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 engine=None, loss_weights=None,
                 balance_dataparallel_memory: bool = False, stratify: Optional[str] = None,
                 resplit: bool = False, device_data: str = "auto", dev: Optional[int] = None, box_tasks=None):
        compat.apply()
        super().__init__(model=model, input_key="inputs", output_key="outputs", target_key="targets",
                         loss_key="loss")
        self.flow = flow
        self.run_dir = os.fspath(run_dir)
        self.dataset = dataset if dataset is not None else flow.get_dataset()
        self.loader_batch, self.num_workers, self.split_seed = batch_size, num_workers, seed
        self.loss_weights = loss_weights
        self.device_data = placement.check_mode(device_data)
        # Saved with each training in run_config.json (runners/run_config.py) for comparing experiments.
        self.run_settings = runner_settings(
            batch_size=batch_size, num_workers=num_workers, seed=seed, split_fractions=split_fractions,
            loss_weights=loss_weights, stratify=stratify, device_data=device_data, engine=engine,
            balance_dataparallel_memory=balance_dataparallel_memory)
        try:  # validated now, not at the first batch; an nn.Module: learned weights train and checkpoint with it
            self.flow_loss = flow.get_loss(loss_weights)
        except TaskError as e:
            raise RunnerError(str(e)) from None
        self._engine_arg = engine
        self._set_box_tasks(box_tasks)
        # Under nn.DataParallel, reduce loss and metric statistics on each replica (see parallel/replicas.py).
        self.balance_dataparallel_memory = balance_dataparallel_memory
        # dev=N: N seeded rows in <run_dir>-dev<N>, never the full run's directory (experiments/dev_subset.py).
        self.dev = None if dev is None else dev_subset.check_dev(dev, len(self.dataset))
        dev_rows = None
        if self.dev is not None:
            self.run_dir = dev_subset.dev_run_dir(self.run_dir, self.dev)
            dev_rows = dev_subset.dev_positions(self._row_ids(), self.dev, seed)
        self._claim_run_dir()
        # Positions into self.dataset; splits.json stores row labels (runners/splits.py). Replacing the splits
        # of a run another process is training on would pull its rows away: resplit takes the run's lock.
        with run_lock(self.run_dir, "resplit", enabled=resplit, owner=self):
            splits = load_or_make_splits(os.path.join(self.run_dir, "splits.json"),
                                         dev_subset.subset(self._row_ids(), dev_rows), split_fractions, seed,
                                         stratify, dev_subset.subset(self._strata(stratify), dev_rows), resplit)
            self.splits = dev_subset.to_dataset_positions(splits, dev_rows)
        self.split_fractions, self.stratify = split_fractions, stratify
        try:  # e.g. regression target scaling, fitted on the training split only and saved with the run
            self.fitted_targets = fitted.load_or_fit(self.run_dir, self.flow, self.dataset, self.splits["train"],
                                                     write=self._writes_files())
        except fitted.FittedStateError as e:
            raise RunnerError(str(e)) from None
        self._fit_model_inputs()

    def _fit_model_inputs(self) -> None:
        """A model with input statistics of its own (``tabular_model(kind="tabm")``: standardisation, bins) fits
        them on this run's training split, deterministically, so a restarted runner rebuilds the same model before
        loading its weights. Called when the run (or a fold of it) is created, before any optimizer exists."""
        fit_inputs = getattr(self.model, "fit_inputs", None)
        if callable(fit_inputs):
            fit_inputs(self.dataset, self.splits["train"])

    def _use_fitted_targets(self) -> None:
        """Put this run's fitted state back on the tasks (another runner over the same project may have fitted
        the shared task objects on its own split since)."""
        fitted.apply_states(self.flow, self.fitted_targets, source=os.path.join(self.run_dir, fitted.FITTED_FILE))

    # -- run directory ---------------------------------------------------------------------------------------
    def _claim_run_dir(self) -> None:
        claim_run_dir(self.run_dir, self.flow)

    def _row_ids(self) -> list:
        data = getattr(self.dataset, "data", None)
        row_ids = getattr(data, "row_ids", None)
        # A user's own dataset without row labels: its positions are its labels.
        return list(row_ids) if row_ids is not None and len(row_ids) == len(self.dataset) \
            else list(range(len(self.dataset)))

    def _strata(self, stratify: Optional[str]) -> Optional[list]:
        """Each row's label of the task ``stratify`` (``None`` where unlabelled), to split each class alike."""
        if stratify is None:
            return None
        if not isinstance(stratify, str) or stratify not in self.flow.tasks:
            raise RunnerError(f"stratify={stratify!r} is not a task of flow '{self.flow.name}'; tasks are "
                              f"{list(self.flow.tasks)}")
        task = self.flow.tasks[stratify]
        data = getattr(self.dataset, "data", None)
        if getattr(task, "type_name", None) not in ("binary", "classification"):
            raise RunnerError(f"stratify={stratify!r}: task '{stratify}' is a {getattr(task, 'type_name', '?')} "
                              f"task; splits can be stratified by a binary or classification task only")
        if data is None or stratify not in getattr(data, "targets", {}):
            raise RunnerError(f"stratify={stratify!r} needs the project's dataset with the labels of "
                              f"'{stratify}'")
        targets = data.targets[stratify].reshape(len(self.dataset), -1)
        available = data.available[stratify].reshape(len(self.dataset), -1)
        if targets.shape[1] != 1:
            raise RunnerError(f"stratify={stratify!r}: expected one label per row, got {targets.shape[1]}")
        return [int(round(float(t))) if bool(a) else None for t, a in zip(targets[:, 0], available[:, 0])]

    @property
    def checkpoint_dir(self) -> str:
        # While a stage of train(stages=...) runs, its own subdirectory (training/stages.py).
        return self._stage_subdir(os.path.join(self.run_dir, "checkpoints"))

    @property
    def tensorboard_dir(self) -> str:
        # This runner's TensorBoard run (runners/tensorboard_runs.py); while a stage runs, its subfolder there.
        return self._stage_subdir(self.tensorboard_run_dir)

    @property
    def infer_dir(self) -> str:
        return os.path.join(self.run_dir, "infer")

    # -- data ------------------------------------------------------------------------------------------------
    def split_loader(self, split: str, shuffle: bool = False, batch_size: Optional[int] = None) -> DataLoader:
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
        if split not in self.splits:
            raise RunnerError(f"unknown split '{split}'; splits are {list(self.splits)}")
        if not self.splits[split]:
            raise RunnerError(f"split '{split}' has no samples ({len(self.dataset)} samples split by "
                              f"{[len(v) for v in self.splits.values()]}); change split_fractions")
        # Our own batch sampler, so that under DDP each process gets its slice of the very batches one process
        # would see (parallel/sampler.py); batches carry "valid" (False marks distributed padding). Each batch is
        # fetched whole (BatchedSubset: columns indexed by the batch's positions, no per-item dicts).
        # With train(balance=...), the training split's sampler draws a balanced epoch (runners/augmentation.py).
        sampler = self._make_batch_sampler(split, shuffle, batch_size or self.loader_batch)
        workers = self.num_workers if self.num_workers is not None else default_num_workers(self.dataset)
        return DataLoader(BatchedSubset(self.dataset, self.splits[split]), batch_sampler=sampler,
                          collate_fn=collate_batch, num_workers=workers, persistent_workers=workers > 0)

    def _placed_loader(self, loader, device, rank: int = 0, world: int = 1):
        """``loader`` as this process iterates it on ``device``: gathered on the device or through pinned memory
        (``device_data``), resharded under DDP, or as it is (``handle_batch`` moves its batches: accelerate's
        wrapper would only add per-batch work); None when it is not a split loader of ours (accelerate's then)."""
        sampler = getattr(loader, "batch_sampler", None)
        if not isinstance(sampler, ShardedBatchSampler):
            return None
        mode = placement.resolve_mode(self.device_data, loader, torch.device(device))
        if mode == "off":
            return reshard_loader(loader, rank, world) if world > 1 else loader
        return placement.DeviceBatches(loader, device, mode, batch_sampler=sampler.shard(rank, world))

    def _materialize(self) -> None:
        """Run one small batch through the model so lazy heads get their shapes before an optimizer exists."""
        if not any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in self.model.parameters()):
            return
        batch = next(iter(self.split_loader("train", batch_size=2)))
        was_training = self.model.training
        with torch.no_grad():
            self.model.eval()
            self.model(batch["inputs"])
        self.model.train(was_training)

    # -- Catalyst hooks --------------------------------------------------------------------------------------
    def get_loggers(self):
        loggers = super().get_loggers()
        # Catalyst always adds a console logger; quiet runs stay quiet and verbose ones print EpochSummaryCallback's
        # table instead (a ConsoleLogger passed in loggers= is kept)
        loggers.pop("_console", None)
        if "_tensorboard" in loggers:  # Catalyst's default (user loggers without one): ours, in this runner's run
            loggers["_tensorboard"] = FlowTensorboardLogger(logdir=self.tensorboard_dir)
        return loggers

    def on_batch_start(self, runner) -> None:
        super().on_batch_start(runner)
        # Catalyst takes len() of the batch dict's first value, which for our nested batch is the number of
        # input columns, not samples, and has already added it to the sample counters (checkpointed, and the
        # step of batch metrics in TensorBoard): correct both.
        counted = self.batch_size
        self.batch_size = int(self.batch["index"].shape[0])
        correction = (self.batch_size - counted) * self.engine.num_processes
        self.sample_step += correction
        self.loader_sample_step += correction

    def on_loader_start(self, runner) -> None:
        super().on_loader_start(runner)
        sampler = getattr(self.loader, "batch_sampler", None)
        if isinstance(sampler, ShardedBatchSampler):
            sampler.set_epoch(self.epoch_step)  # this epoch's shuffle, the same in every process

    def _setup_loaders(self) -> None:
        rank, world = max(0, self.engine.process_index), self.engine.num_processes
        # accelerate's prepare() would deal whole batches to processes in turn; slice every global batch instead,
        # and gather on the device when device_data says so. Other loaders (user-given) go through accelerate.
        set_global_seed(self.seed + rank + self.epoch_step)
        device = self.engine.device
        self.loaders = {key: self._placed_loader(loader, device, rank, world) or self.engine.prepare(loader)
                        for key, loader in self.get_loaders().items()}

    def _setup_components(self) -> None:
        super()._setup_components()
        if isinstance(self.criterion, torch.nn.Module):  # Catalyst does not place the criterion (learned weights)
            self.criterion.to(self.engine.device)

    def _run_local(self, local_rank: int = -1, world_size: int = 1) -> None:
        compat.apply()  # DDP processes are fresh interpreters, where Catalyst is unpatched
        super()._run_local(local_rank, world_size)

    def _writes_files(self) -> bool:
        """Whether this process writes the run directory: rank 0 inside a process group; outside one, the
        launching process, unless it launches a later node of a multi-node DDP run (engine's
        ``workers_dist_rank`` > 0: node 0 writes)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank() == 0
        return getattr(self._engine_arg, "_workers_global_rank", 0) == 0

    def _balanced(self) -> bool:
        model = self.model
        return (self.balance_dataparallel_memory and isinstance(model, torch.nn.DataParallel)
                and len(model.device_ids) > 1)

    def handle_batch(self, batch) -> None:
        # Our DataLoaders are not accelerate-prepared, so they yield CPU tensors; DeviceBatches are already there.
        device = self.engine.device
        if device.type != "cpu" and not isinstance(self.loader, placement.DeviceBatches):
            batch = to_device(batch, device, non_blocking=True)
        batch = self._augmented(batch)  # train(augment=...): train loaders only
        step = compiled_step.step_for(self)  # train(compile=...): model, heads and masked loss as one graph
        if step is not None:
            self.batch = step(batch)
            return
        dtype = autocast_dtype(self.engine)
        if self._balanced():
            self.batch = {**batch, REDUCTION_KEY: balanced_forward(self.model, batch, self.flow.graph, dtype)}
            return
        # Also on top of accelerate's own autocast: accelerate silently leaves fp16 off on the CPU.
        with autocast(self.engine.device.type, dtype):
            outputs = self.model(batch["inputs"])
        self.batch = {**batch, "outputs": outputs}

    # -- train -----------------------------------------------------------------------------------------------
    # **kwargs reach Catalyst's train, except the arguments _train passes itself
    @forwards_kwargs("catalyst.dl.SupervisedRunner.train",
                     exclude=("model", "criterion", "logdir", "valid_loader", "minimize_valid_metric", "seed"))
    def train(self, *, num_epochs: Optional[int] = None, resume: bool = False, lr: float = 1e-3,
              early_stopping_patience: Optional[int] = None, verbose="auto", valid_metric: str = "loss",
              stages: Optional[Sequence[dict]] = None, augment=None, balance=None, compile=False,
              task_selection="auto", **kwargs) -> "DnnCoolSupervisedRunner":
        """Train with sensible defaults; every default can be replaced with the usual Catalyst argument.

        Defaults: AdamW(lr) (its fused kernel where the parameters allow: :func:`.schedules.default_optimizer`),
        ReduceLROnPlateau on ``valid_metric`` (with its SchedulerCallback; halves the lr after
        a third of the early-stopping patience without improvement, at least 2 epochs), early stopping after
        ``early_stopping_patience`` epochs without improvement (default: a twelfth of ``num_epochs``, 5 to 16), held
        while a task is still at its trivial baseline (majority label / R^2 <= 0 on the validation split; see
        :mod:`dnn_cool_catalyst.callbacks.early_stopping`), best + last checkpoints in
        ``checkpoints/``, TensorBoard logs in ``tensorboard/run-<N>/`` (see :attr:`tensorboard_dir`), an explicit
        engine (GPU when available).
        ``resume=True`` continues from ``checkpoints/runner.last.pth`` with the optimizer, scheduler and epoch
        counters restored (``num_epochs`` is the total), and the learned loss weights with ``loss_weights=
        "uncertainty"``; a run that stopped early stays stopped (no further epoch: the checkpoint records it).

        ``valid_metric`` is what early stopping, the plateau scheduler and the best checkpoint follow: ``"loss"``
        (the validation loss), ``"loss/<task_path>"``, one task's metric ``"<task_path>/<metric>"`` (e.g.
        ``"door_open/accuracy"``; errors minimised, the rest maximised) or ``"task_mean"`` (the mean over tasks of
        accuracy / R^2, maximised); see :mod:`dnn_cool_catalyst.callbacks.selection`.

        ``optimizer`` and ``scheduler`` also take plain specs (``{"name": "SGD", "momentum": 0.9}``,
        ``{"name": "one_cycle", "max_lr": 0.01}``, ``"warmup_cosine"``; see :mod:`.schedules`); per-batch schedules
        are stepped after every training batch. Without ``num_epochs`` the run gets a budget of optimizer steps
        (:mod:`.epoch_budget`: 4,000 steps, 10 to 200 epochs; the same total again on resume).

        ``stages``: a list of stages trained one after the other, each a dict with ``num_epochs`` and optionally
        ``name``, ``lr``, ``optimizer``, ``scheduler``, ``loss_weights``, ``freeze``, ``initial_weights``,
        ``strict``, ``early_stopping_patience``, ``valid_metric`` (the other arguments of this call are their
        defaults); see :mod:`.stages` for checkpoints, TensorBoard and resume.

        ``verbose="auto"`` (default) shows progress bars and a small per-epoch table (loss and headline metric per
        task, train and valid) when standard output is a terminal, nothing otherwise (tests, CI, redirected logs);
        ``True``/``False`` force it.

        The run directory is locked meanwhile (``.lock``): another process training or inferring into it fails
        at once naming this one.

        ``augment={"img": ["hflip", "brightness"]}`` augments the training batches per input column and
        ``balance={"task": "inverse_frequency"}`` / ``{"task": {"negatives_per_positive": 3}}`` balances the
        training split's sampling (README, "Augmentation, test-time augmentation and class balancing").

        A task with no labelled training row where its condition holds is an error before any epoch (see
        :mod:`.trainable`), unless ``loaders=`` brings the user's own data.

        ``compile=True`` (or a ``torch.compile`` mode such as ``"max-autotune"``) compiles the training step (the
        model's forward with the flow's heads, the ground-truth masks, the masked per-task losses and their
        weighted sum) into one graph with ``torch.compile``; its backward is compiled too. Validation batches use
        the same compiled step in eval mode (a second graph); ``infer()`` stays eager. Losses, metrics and tuned
        thresholds equal eager training's within float tolerance; see :mod:`.compiled_step` (shapes, fallback to
        eager with a warning, DataParallel and DDP which train eagerly). The default is False because compiling
        costs up front far more than a short run takes: measured on this project's 2-core CPU machine while other
        jobs ran (2026-12-05, empty inductor cache), 53 s for the training and validation graphs of the 6-task
        tabular flow of ``benchmarks/bench_overhead.py`` (whose eager epoch on 20,000 rows takes ~1-2 s) and
        236 s for the security CNN's; switch it on for long runs (``benchmarks/bench_compile.py`` measures it).

        ``task_selection``: keep each task's weights of the epoch where its own validation loss was lowest, so that
        ``infer``/``predict``/``export`` of the best checkpoint run every task at its own best epoch (one forward per
        distinct epoch; :mod:`.task_selection`). ``"auto"`` (default): for models that declare
        ``select_per_task = True`` (``tabular_model``'s); ``True``/``False`` force it. Not with ``stages``.
        """
        compile_mode = compiled_step.check_compile(compile)
        selecting = task_selection_of.resolve(task_selection, self.model, staged=stages is not None)
        if "loaders" not in kwargs:
            check_trainable(self.flow, self.dataset, self.splits)
        train_args = dict(num_epochs=num_epochs, resume=resume, lr=lr, early_stopping_patience=early_stopping_patience,
                          verbose=verbose, valid_metric=valid_metric, **({} if stages is None else {"stages": stages}),
                          **({} if augment is None else {"augment": augment}),
                          **({} if balance is None else {"balance": balance}),
                          **({"compile": compile} if compile_mode else {}),
                          **({} if task_selection == "auto" else {"task_selection": task_selection}), **kwargs)
        writes = self._writes_files()
        with self._training_extras(augment, balance), run_lock(self.run_dir, "train", enabled=writes, owner=self), \
                recording_train(self, train_args, enabled=writes), compiled_step.compiling(self, compile_mode):
            if stages is not None:
                if writes:  # the staged run's best is copied here at its end; an earlier selection is not its own
                    remove_task_selection(self.checkpoint_dir)
                return self._train_stages(stages, num_epochs=num_epochs, resume=resume, lr=lr,
                                          early_stopping_patience=early_stopping_patience, verbose=verbose,
                                          valid_metric=valid_metric, **kwargs)
            self._check_not_staged(resume)
            return self._train(num_epochs=num_epochs, resume=resume, lr=lr,
                               early_stopping_patience=early_stopping_patience, verbose=verbose,
                               valid_metric=valid_metric, task_selection=selecting, **kwargs)

    def _train(self, *, num_epochs: Optional[int], resume: bool, lr: float, early_stopping_patience: Optional[int],
               verbose, valid_metric: str, task_selection: bool = False, **kwargs) -> "DnnCoolSupervisedRunner":
        verbose = resolve_verbose(verbose)
        if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, int)
                                       or num_epochs < 1):
            raise RunnerError(f"num_epochs must be a positive int (the total, also when resuming), got {num_epochs!r}")
        if early_stopping_patience is not None and (isinstance(early_stopping_patience, bool) or not isinstance(
                early_stopping_patience, int) or early_stopping_patience < 1):
            raise RunnerError(f"early_stopping_patience must be a positive int or None (derived from num_epochs), "
                              f"got {early_stopping_patience!r}")
        try:
            metric_key, minimize = resolve_valid_metric(self.flow, valid_metric)
        except ValidMetricError as e:
            raise RunnerError(str(e)) from None
        monitored = selection_key(metric_key)
        check_own_folder(self.run_dir, self.checkpoint_dir)  # a symlinked checkpoints/ is refused, as a file is
        last = os.path.join(self.checkpoint_dir, "runner.last.pth")
        if resume and os.path.exists(last):
            self._check_resumed_selection(monitored, minimize, valid_metric)
        self._use_fitted_targets()
        self._materialize()
        loaders = kwargs.pop("loaders", None) or OrderedDict(
            train=self.split_loader("train", shuffle=True), valid=self.split_loader("valid"))
        if num_epochs is None:  # the step budget; the same total again on resume (it depends on the data only)
            num_epochs = default_num_epochs(steps_per_epoch(loaders))
        if early_stopping_patience is None:
            early_stopping_patience = default_patience(num_epochs)
        optimizer = kwargs.pop("optimizer", None)
        loss_params = list(self.flow_loss.parameters())
        if optimizer is None or isinstance(optimizer, (str, dict)):
            # The learned loss weights train too, without weight decay (it would pull every task towards s_t = 0).
            # Frozen parameters (requires_grad=False, e.g. a stage's `freeze`) stay out of the optimizer.
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
            groups += [{"params": loss_params, "weight_decay": 0.0}] if loss_params else []
            optimizer = build_optimizer(optimizer, groups, lr)
        elif loss_params and isinstance(optimizer, torch.optim.Optimizer):
            given = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if not all(id(p) in given for p in loss_params):
                warn_user("loss_weights='uncertainty' but the optimizer given to train() does not hold the "
                          "learned log-variances (runner.flow_loss.parameters()): they will stay at 0")
        scheduler = kwargs.pop("scheduler", "default")
        if scheduler == "default":
            # Halve the lr after a third of early stopping's patience without improvement (2 epochs on short runs).
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if minimize else "max",
                                                                   factor=0.5,
                                                                   patience=plateau_patience(early_stopping_patience))
        elif scheduler is None or isinstance(scheduler, (str, dict)):
            scheduler = build_scheduler(scheduler, optimizer, lr=lr, steps_per_epoch=steps_per_epoch(loaders),
                                        num_epochs=num_epochs, minimize=minimize)
        callbacks = kwargs.pop("callbacks", None) or {}
        callbacks = OrderedDict(callbacks if isinstance(callbacks, dict) else enumerate(callbacks))
        resuming = resume and os.path.exists(last)
        if resume and not resuming:
            warn_user(f"resume=True but {last} does not exist: training from scratch")
        if self._writes_files() and not (task_selection and resuming):  # an earlier run's selection is not ours
            remove_task_selection(self.checkpoint_dir)
        defaults = OrderedDict(
            _criterion=FlowCriterionCallback(self.flow, loss_fn=self.flow_loss),
            _nan_guard=NanGuardCallback(self.flow),
            _metrics=FlowMetricsCallback(self.flow),
            _model_selection=ModelSelectionCallback(self.flow, metric_key, minimize),
            # Best/worst validation samples per task in TensorBoard; off with runner.interpretation_k = 0.
            **({"_interpretation": InterpretationCallback(
                self.flow, k=self.interpretation_k, loaders=("valid",), publishers=self.publishers,
                logdir=self.tensorboard_dir, every=self.interpretation_every, metric_key=monitored,
                minimize=minimize)} if self.interpretation_k > 0 else {}),
            _backward=dl.BackwardCallback(metric_key="loss"),
            _optimizer=dl.OptimizerCallback(metric_key="loss"),
            _early_stopping=BaselineAwareEarlyStopping(patience=early_stopping_patience, loader_key="valid",
                                                       metric_key=monitored, minimize=minimize,
                                                       baselines=self._valid_baselines()),
            # Same order as the checkpoint: listed first so the scheduler steps before its state is saved.
            **compat.scheduler_callbacks(scheduler, mode=scheduler_interval(scheduler), loader_key="valid",
                                         metric_key=monitored),
            # Also before the checkpoint, whose files carry each task's best epoch.
            **({"_task_checkpoints": TaskCheckpointCallback(self.flow, self.checkpoint_dir, loader_key="valid")}
               if task_selection else {}),
            _checkpoint=ResumableCheckpointCallback(
                logdir=self.checkpoint_dir, loader_key="valid", metric_key=monitored, minimize=minimize,
                mode="runner",
                resume_runner=last if resuming else None),
        )
        if verbose:  # instead of Catalyst's ConsoleLogger (one long line of 17-digit floats per loader)
            defaults.update(_verbose=ProgressBarCallback(), _epoch_summary=EpochSummaryCallback(self.flow))
        for key, callback in defaults.items():
            callbacks.setdefault(key, callback)
        loggers = kwargs.pop("loggers", None) or {
            "tensorboard": FlowTensorboardLogger(logdir=self.tensorboard_dir)}
        engine = kwargs.pop("engine", None) or self._engine_arg or compat.default_engine()
        super().train(loaders=loaders, model=self.model, engine=engine, criterion=self.flow_loss,
                      optimizer=optimizer, scheduler=scheduler, callbacks=callbacks, loggers=loggers,
                      num_epochs=num_epochs, logdir=self.run_dir, valid_loader="valid", valid_metric=monitored,
                      minimize_valid_metric=minimize, seed=self.split_seed, verbose=verbose, **kwargs)
        return self

    def _valid_baselines(self) -> dict:
        """Trivial baselines of the validation split (what early stopping waits for every task to beat)."""
        if not self.splits["valid"]:
            return {}
        targets, available = fitted.train_split_labels(self.dataset, self.flow, self.splits["valid"])
        return trivial_baselines(self.flow, targets, available)

    def _check_resumed_selection(self, monitored: str, minimize: bool, valid_metric: str) -> None:
        """A resumed run must select on what it selected on before: the best epoch and the early-stopping
        record are scores of that metric."""
        path = os.path.join(self.checkpoint_dir, "runner.storage.json")
        try:
            saved = read_json(path)
            before = (saved["metric_key"], bool(saved["minimize"]))
        except (OSError, ValueError, KeyError, TypeError):
            return  # no readable record: the checkpoint callback reports a damaged one itself
        if before != (monitored, minimize):
            name = before[0][len("model_selection/"):] if before[0].startswith("model_selection/") else before[0]
            raise RunnerError(f"resume=True with valid_metric={valid_metric!r}, but this run selected its best "
                              f"epoch on {name!r} ({path}); resume with valid_metric={name!r} or start a new run")


def default_num_workers(dataset) -> int:
    """DataLoader workers when ``num_workers`` is not given: none when every input column is in memory (a batch
    is an index: workers would only add copies between processes); for columns read per item (image files), one
    per core but one, at most 4."""
    inner = getattr(dataset, "dataset", dataset)
    if not getattr(inner, "reads_per_item", False):
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))
