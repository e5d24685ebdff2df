"""``DnnCoolSupervisedRunner``: Catalyst's SupervisedRunner driven by a flow."""
from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from typing import Dict, Iterable, Optional, Sequence

import pandas as pd
import torch
from catalyst import dl
from catalyst.utils.misc import set_global_seed
from torch.utils.data import DataLoader

from .. import compat
from ..atomic import atomic_write_json, atomic_write_text
from ..callbacks import FlowCriterionCallback, FlowMetricsCallback, InterpretationCallback
from ..callbacks.checkpoint import CheckpointError, ResumableCheckpointCallback, is_inside, read_checkpoint
from ..callbacks.nan_guard import NanGuardCallback
from ..evaluation import GATINGS, split_masks, tune_flow
from ..flow.batch import output_logits
from ..flow.module import decode_condition_sources
from ..interpretation.pr_curves import mark_tuned_points
from ..parallel import (REDUCTION_KEY, BatchedSubset, ShardedBatchSampler, autocast, autocast_dtype,
                        balanced_forward, collate_batch, gather_samples, reshard_loader)
from ..parallel import world as parallel_world
from ..tasks.base import TaskError
from ..callbacks.selection import ModelSelectionCallback, ValidMetricError, resolve_valid_metric, selection_key
from ..interpretation.samples import SampleSource
from . import artifacts, fitted
from . import device_data as placement
from .errors import RunnerError
from .interpretation import InterpretationMixin
from .lock import run_lock
from .splits import SPLITS, load_or_make_splits
from .tuned_file import check_tuned_params


class DnnCoolSupervisedRunner(InterpretationMixin, dl.SupervisedRunner):
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
    for), ``splits.json``, ``fitted_targets.json`` (state fitted on the training split, e.g. regression scaling),
    ``checkpoints/``, ``tensorboard/<loader>/``, ``infer/<split>/<task>.npz`` + ``infer/<split>/manifest.json``
    (checked on every read, see runners/artifacts.py) + ``infer/index.json``, ``tuned.json``,
    ``evaluation_<split>_<gating>.csv``.
    """

    def __init__(self, model: torch.nn.Module, flow, run_dir: str, dataset=None, batch_size: int = 64,
                 num_workers: Optional[int] = None, seed: int = 42,
                 split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 engine=None, loss_weights=None,
                 balance_dataparallel_memory: bool = False, stratify: Optional[str] = None,
                 resplit: bool = False, device_data: str = "auto"):
        compat.apply()
        super().__init__(model=model, input_key="inputs", output_key="outputs", target_key="targets",
                         loss_key="loss")
        self.flow = flow
        self.run_dir = os.fspath(run_dir)
        self.dataset = dataset if dataset is not None else flow.get_dataset()
        self.loader_batch, self.num_workers, self.split_seed = batch_size, num_workers, seed
        self.loss_weights = loss_weights
        self.device_data = placement.check_mode(device_data)
        try:  # validated now, not at the first batch; an nn.Module: learned weights train and checkpoint with it
            self.flow_loss = flow.get_loss(loss_weights)
        except TaskError as e:
            raise RunnerError(str(e)) from None
        self._engine_arg = engine
        # Under nn.DataParallel, reduce loss and metric statistics on each replica (see parallel/replicas.py).
        self.balance_dataparallel_memory = balance_dataparallel_memory
        self._claim_run_dir()
        # Positions into self.dataset; splits.json stores row labels (runners/splits.py). Replacing the splits
        # of a run another process is training on would pull its rows away: resplit takes the run's lock.
        with run_lock(self.run_dir, "resplit", enabled=resplit):
            self.splits = load_or_make_splits(os.path.join(self.run_dir, "splits.json"), self._row_ids(),
                                              split_fractions, seed, stratify, self._strata(stratify), resplit)
        try:  # e.g. regression target scaling, fitted on the training split only and saved with the run
            self.fitted_targets = fitted.load_or_fit(self.run_dir, self.flow, self.dataset, self.splits["train"],
                                                     write=self._writes_files())
        except fitted.FittedStateError as e:
            raise RunnerError(str(e)) from None

    def _use_fitted_targets(self) -> None:
        """Put this run's fitted state back on the tasks (another runner over the same project may have fitted
        the shared task objects on its own split since)."""
        fitted.apply_states(self.flow, self.fitted_targets, source=os.path.join(self.run_dir, fitted.FITTED_FILE))

    # -- run directory ---------------------------------------------------------------------------------------
    def _claim_run_dir(self) -> None:
        path = os.path.join(self.run_dir, "flow.json")
        described = json.loads(json.dumps(self.flow.describe()))
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    saved = json.load(f)
            except (OSError, ValueError) as e:
                raise RunnerError(f"cannot read {path} ({e}): the run directory {self.run_dir} is damaged; choose "
                                  f"another runner_name or delete it") from None
            if saved == described:
                return
            _check_flow_file(path, saved, self.run_dir)
            if saved != described:
                raise RunnerError(f"run directory {self.run_dir} belongs to a different flow ('{saved.get('name')}' "
                                  f"with tasks {[t['path'] for t in saved.get('tasks', [])]}); choose another "
                                  f"runner_name. Nothing was overwritten.")
            return
        atomic_write_json(path, described)

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
        return os.path.join(self.run_dir, "checkpoints")

    @property
    def infer_dir(self) -> str:
        return os.path.join(self.run_dir, "infer")

    # -- data ------------------------------------------------------------------------------------------------
    def split_loader(self, split: str, shuffle: bool = False, batch_size: Optional[int] = None) -> DataLoader:
        if split not in self.splits:
            raise RunnerError(f"unknown split '{split}'; splits are {list(self.splits)}")
        if not self.splits[split]:
            raise RunnerError(f"split '{split}' has no samples ({len(self.dataset)} samples split by "
                              f"{[len(v) for v in self.splits.values()]}); change split_fractions")
        # Our own batch sampler, so that under DDP each process gets its slice of the very batches one process
        # would see (parallel/sampler.py); batches carry "valid" (False marks distributed padding). Each batch is
        # fetched whole (BatchedSubset: columns indexed by the batch's positions, no per-item dicts).
        sampler = ShardedBatchSampler(len(self.splits[split]), batch_size or self.loader_batch, shuffle=shuffle,
                                      seed=self.split_seed)
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
        if not self._verbose:  # Catalyst always adds a console logger; keep quiet runs quiet
            loggers.pop("_console", None)
        return loggers

    def on_batch_start(self, runner) -> None:
        super().on_batch_start(runner)
        # Catalyst takes len() of the batch dict's first value, which for our nested batch is the number of
        # input columns, not samples.
        self.batch_size = int(self.batch["index"].shape[0])

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
            batch = _to_device(batch, device, non_blocking=True)
        dtype = autocast_dtype(self.engine)
        if self._balanced():
            self.batch = {**batch, REDUCTION_KEY: balanced_forward(self.model, batch, self.flow.graph, dtype)}
            return
        # Also on top of accelerate's own autocast: accelerate silently leaves fp16 off on the CPU.
        with autocast(self.engine.device.type, dtype):
            outputs = self.model(batch["inputs"])
        self.batch = {**batch, "outputs": outputs}

    # -- train -----------------------------------------------------------------------------------------------
    def train(self, *, num_epochs: int = 10, resume: bool = False, lr: float = 1e-3, early_stopping_patience: int = 5,
              verbose: bool = False, valid_metric: str = "loss", **kwargs) -> "DnnCoolSupervisedRunner":
        """Train with sensible defaults; every default can be replaced with the usual Catalyst argument.

        Defaults: AdamW(lr), ReduceLROnPlateau on ``valid_metric`` (with its SchedulerCallback), early
        stopping after ``early_stopping_patience`` epochs without improvement, best + last checkpoints in
        ``checkpoints/``, TensorBoard logs in ``tensorboard/``, an explicit engine (GPU when available).
        ``resume=True`` continues from ``checkpoints/runner.last.pth`` with the optimizer, scheduler and epoch
        counters restored (``num_epochs`` is the total), and the learned loss weights with ``loss_weights=
        "uncertainty"``.

        ``valid_metric`` is what early stopping, the plateau scheduler and the best checkpoint follow: ``"loss"``
        (the validation loss), ``"loss/<task_path>"``, one task's metric ``"<task_path>/<metric>"`` (e.g.
        ``"door_open/accuracy"``; errors minimised, the rest maximised) or ``"task_mean"`` (the mean over tasks of
        accuracy / R^2, maximised); see :mod:`dnn_cool_catalyst.callbacks.selection`.

        The run directory is locked meanwhile (``.lock``): another process training or inferring into it fails
        at once naming this one.
        """
        with run_lock(self.run_dir, "train", enabled=self._writes_files()):
            return self._train(num_epochs=num_epochs, resume=resume, lr=lr,
                               early_stopping_patience=early_stopping_patience, verbose=verbose,
                               valid_metric=valid_metric, **kwargs)

    def _train(self, *, num_epochs: int, resume: bool, lr: float, early_stopping_patience: int, verbose: bool,
               valid_metric: str, **kwargs) -> "DnnCoolSupervisedRunner":
        if not isinstance(num_epochs, int) or num_epochs < 1:
            raise RunnerError(f"num_epochs must be a positive int (the total, also when resuming), got {num_epochs!r}")
        try:
            metric_key, minimize = resolve_valid_metric(self.flow, valid_metric)
        except ValidMetricError as e:
            raise RunnerError(str(e)) from None
        monitored = selection_key(metric_key)
        last = os.path.join(self.checkpoint_dir, "runner.last.pth")
        if resume and os.path.exists(last):
            self._check_resumed_selection(monitored, minimize, valid_metric)
        self._use_fitted_targets()
        self._materialize()
        loaders = kwargs.pop("loaders", None) or OrderedDict(
            train=self.split_loader("train", shuffle=True), valid=self.split_loader("valid"))
        optimizer = kwargs.pop("optimizer", None)
        loss_params = list(self.flow_loss.parameters())
        if optimizer is None:
            # The learned loss weights train too, without weight decay (it would pull every task towards s_t = 0).
            groups = [{"params": list(self.model.parameters())}]
            groups += [{"params": loss_params, "weight_decay": 0.0}] if loss_params else []
            optimizer = torch.optim.AdamW(groups, lr=lr)
        elif loss_params and isinstance(optimizer, torch.optim.Optimizer):
            given = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if not all(id(p) in given for p in loss_params):
                warnings.warn("loss_weights='uncertainty' but the optimizer given to train() does not hold the "
                              "learned log-variances (runner.flow_loss.parameters()): they will stay at 0",
                              stacklevel=2)
        scheduler = kwargs.pop("scheduler", "default")
        if scheduler == "default":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if minimize else "max",
                                                                   factor=0.5, patience=2)
        callbacks = kwargs.pop("callbacks", None) or {}
        callbacks = OrderedDict(callbacks if isinstance(callbacks, dict) else enumerate(callbacks))
        if resume and not os.path.exists(last):
            warnings.warn(f"resume=True but {last} does not exist: training from scratch", stacklevel=2)
        defaults = OrderedDict(
            _criterion=FlowCriterionCallback(self.flow, loss_fn=self.flow_loss),
            _nan_guard=NanGuardCallback(self.flow),
            _metrics=FlowMetricsCallback(self.flow),
            _model_selection=ModelSelectionCallback(self.flow, metric_key, minimize),
            # Best/worst validation samples per task in TensorBoard; off with runner.interpretation_k = 0.
            **({"_interpretation": InterpretationCallback(
                self.flow, k=self.interpretation_k, loaders=("valid",), publishers=self.publishers,
                logdir=os.path.join(self.run_dir, "tensorboard"))} if self.interpretation_k > 0 else {}),
            _backward=dl.BackwardCallback(metric_key="loss"),
            _optimizer=dl.OptimizerCallback(metric_key="loss"),
            _early_stopping=dl.EarlyStoppingCallback(patience=early_stopping_patience, loader_key="valid",
                                                     metric_key=monitored, minimize=minimize),
            # Same order as the checkpoint: listed first so the scheduler steps before its state is saved.
            **compat.scheduler_callbacks(scheduler, loader_key="valid", metric_key=monitored),
            _checkpoint=ResumableCheckpointCallback(
                logdir=self.checkpoint_dir, loader_key="valid", metric_key=monitored, minimize=minimize,
                mode="runner",
                resume_runner=last if resume and os.path.exists(last) else None),
        )
        for key, callback in defaults.items():
            callbacks.setdefault(key, callback)
        loggers = kwargs.pop("loggers", None) or {
            "tensorboard": dl.TensorboardLogger(logdir=os.path.join(self.run_dir, "tensorboard")),
            **({"console": dl.ConsoleLogger()} if verbose else {})}
        engine = kwargs.pop("engine", None) or self._engine_arg or compat.default_engine()
        super().train(loaders=loaders, model=self.model, engine=engine, criterion=self.flow_loss,
                      optimizer=optimizer, scheduler=scheduler, callbacks=callbacks, loggers=loggers,
                      num_epochs=num_epochs, logdir=self.run_dir, valid_loader="valid", valid_metric=monitored,
                      minimize_valid_metric=minimize, seed=self.split_seed, verbose=verbose, **kwargs)
        return self

    def _check_resumed_selection(self, monitored: str, minimize: bool, valid_metric: str) -> None:
        """A resumed run must select on what it selected on before: the best epoch and the early-stopping
        record are scores of that metric."""
        path = os.path.join(self.checkpoint_dir, "runner.storage.json")
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            before = (saved["metric_key"], bool(saved["minimize"]))
        except (OSError, ValueError, KeyError, TypeError):
            return  # no readable record: the checkpoint callback reports a damaged one itself
        if before != (monitored, minimize):
            name = before[0][len("model_selection/"):] if before[0].startswith("model_selection/") else before[0]
            raise RunnerError(f"resume=True with valid_metric={valid_metric!r}, but this run selected its best "
                              f"epoch on {name!r} ({path}); resume with valid_metric={name!r} or start a new run")

    # -- infer -----------------------------------------------------------------------------------------------
    def load_checkpoint(self, which: str = "best") -> str:
        path = os.path.join(self.checkpoint_dir, f"runner.{which}.pth")
        if not os.path.exists(path):
            raise RunnerError(f"no checkpoint {path}; train first (runner.train())")
        if not is_inside(path, self.checkpoint_dir):
            raise RunnerError(f"checkpoint {path} leads outside {self.checkpoint_dir} (a symlink?); only the run "
                              f"directory's own checkpoints are read")
        self._materialize()
        try:
            state = read_checkpoint(path)
        except CheckpointError as e:
            raise RunnerError(str(e)) from None
        try:
            self.model.load_state_dict(state["model_state_dict"])
        except (KeyError, RuntimeError) as e:
            raise RunnerError(f"checkpoint {path} does not fit this model: {e}") from None
        return path

    def infer(self, splits: Iterable[str] = SPLITS, checkpoint: str = "best", verbose: bool = False,
              engine=None) -> dict:
        """Run the ``checkpoint`` weights on every split and store logits, activations, targets, both masks and
        per-sample losses under ``infer/``. Decoded masks use the tuned thresholds when ``tuned.json`` exists.
        Returns the index (split → number of samples).

        With a ``DistributedDataParallelEngine`` (given here or to the constructor) the engine's processes each
        infer a slice of every batch; rank 0 gathers the samples (padding dropped, in split order) and writes.
        The run directory is locked meanwhile, as in :meth:`train`."""
        with run_lock(self.run_dir, "infer", enabled=self._writes_files()):
            return self._infer_job_or_local(list(splits), checkpoint, verbose, engine)

    def _infer_job_or_local(self, splits, checkpoint: str, verbose: bool, engine) -> dict:
        engine = engine or self._engine_arg
        if _is_ddp(engine):
            self._infer_job = (engine, splits, checkpoint)
            try:
                engine.spawn(self._infer_local)
            finally:
                self._infer_job = None
            index = artifacts.read_index(self.infer_dir)
        else:
            index = self._infer(splits, checkpoint, verbose)
        self.log_interpretation(splits)  # PR curves, best/worst samples, trees
        return index

    def _infer_local(self, local_rank: int, world_size: int) -> None:
        """One DDP process of :meth:`infer` (what ``engine.spawn`` runs)."""
        compat.apply()
        engine, splits, checkpoint = self._infer_job
        engine.setup(local_rank=local_rank, world_size=world_size)
        try:
            self._infer(splits, checkpoint, verbose=False, device=engine.device)
        finally:
            engine.cleanup()

    @torch.no_grad()
    def _infer(self, splits, checkpoint: str, verbose: bool, device=None) -> dict:
        rank, world = parallel_world()
        self._use_fitted_targets()
        path = self.load_checkpoint(checkpoint)
        # The digest of the weights the outputs come from; readers compare it with the checkpoint then on disk.
        checkpoint_sha256 = artifacts.sha256_file(path) if rank == 0 else None
        if os.path.exists(os.path.join(self.run_dir, "tuned.json")):
            self.load_tuned()
        # The engine's device when the runner was given one (a CPU engine infers on the CPU), else CUDA if any.
        device = device or getattr(self._engine_arg, "device", None) or torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        model = self.model.to(device).eval()
        graph = self.flow.graph
        try:  # splits inferred earlier stay listed; the ones run now are overwritten
            earlier = artifacts.read_index(self.infer_dir)["splits"]
        except (FileNotFoundError, KeyError, ValueError):
            earlier = {}
        index = {"checkpoint": path, "splits": dict(earlier), "fields": list(artifacts.FIELDS)}
        for split in splits:
            loader = self._placed_loader(self.split_loader(split), device, rank, world)
            if verbose:
                from tqdm.auto import tqdm
                loader = tqdm(loader, desc=f"infer {split}")
            collected = {name: {"logits": [], "targets": [], "available": []} for name in graph.tasks}
            positions, valid = [], []
            for batch in loader:
                inputs = _to_device(batch["inputs"], device)
                n = batch["index"].shape[0]
                logits = output_logits(graph, model(inputs), n)
                for name in graph.tasks:
                    collected[name]["logits"].append(logits[name].float().cpu())
                    collected[name]["targets"].append(batch["targets"][name].cpu())
                    collected[name]["available"].append(batch["available"][name].cpu())
                positions.append(batch["index"].cpu())
                valid.append(batch["valid"].cpu())
            stored = _finish_split(self.flow, collected, torch.cat(positions))
            if world > 1:
                stored = _gather_split(stored, torch.cat(valid), self.splits[split])
            if rank == 0:
                source = SampleSource(self.dataset)
                positions = next(iter(stored.values()))["index"].tolist()
                artifacts.save_split(self.infer_dir, split, stored, os.path.basename(path), checkpoint_sha256,
                                     [source.row_id(p) for p in positions])
            index["splits"][split] = int(len(self.splits[split]))
        if rank == 0:
            artifacts.write_index(self.infer_dir, index)
        return index

    def _stored(self, split: str):
        """The stored outputs of ``split`` as ``(logits, targets, available, fields)``, after checking that they
        are complete, are this split's rows and come from the checkpoint now on disk (see runners/artifacts.py).
        Anything else is one RunnerError saying to run infer() again."""
        try:
            data = self._checked_outputs(split)
        except artifacts.ArtifactError as e:
            raise RunnerError(str(e)) from None
        return ({k: v["logits"] for k, v in data.items()}, {k: v["targets"] for k, v in data.items()},
                {k: v["available"] for k, v in data.items()}, data)

    def _checked_outputs(self, split: str) -> Dict[str, Dict[str, torch.Tensor]]:
        again = artifacts.AGAIN
        split_dir = os.path.join(self.infer_dir, split)
        try:
            manifest = artifacts.read_manifest(self.infer_dir, split, list(self.flow.tasks))
        except FileNotFoundError:
            if os.path.isdir(split_dir):
                raise RunnerError(f"the inference outputs in {split_dir} are incomplete (no {artifacts.MANIFEST}: "
                                  f"infer() was interrupted, or they were written by an older version); "
                                  f"{again}") from None
            if not os.path.isdir(self.infer_dir):
                raise RunnerError(f"no inference outputs in {self.infer_dir}; run runner.infer() first") from None
            names = os.listdir(self.infer_dir)
            if any(n.startswith((f".{split}.new-", f".{split}.old-")) for n in names):
                raise RunnerError(f"the inference outputs of split '{split}' in {self.infer_dir} are incomplete "
                                  f"(infer() was interrupted while writing them); {again}") from None
            known = f" (splits are {list(self.splits)})" if split not in self.splits else ""
            inferred = sorted(n for n in names if not n.startswith(".")
                              and os.path.isfile(os.path.join(self.infer_dir, n, artifacts.MANIFEST)))
            raise RunnerError(f"split '{split}' was not inferred; inferred splits: {inferred}{known}") from None
        manifest_path = os.path.join(split_dir, artifacts.MANIFEST)
        rows = manifest["rows"]
        expected = self.splits.get(split)
        if expected is None or sorted(rows["positions"]) != sorted(int(p) for p in expected):
            raise RunnerError(f"the inference outputs in {split_dir} are not those of split '{split}': their rows "
                              f"(field 'rows.positions' of {manifest_path}) differ from the split's; {again}")
        source = SampleSource(self.dataset)
        labels = [artifacts.row_label(source.row_id(p)) for p in rows["positions"]]
        if labels != rows["labels"]:
            first = next(i for i, (a, b) in enumerate(zip(labels, rows["labels"])) if a != b)
            raise RunnerError(f"the inference outputs in {split_dir} were computed for other rows: position "
                              f"{rows['positions'][first]} holds row {labels[first]!r} now but "
                              f"{rows['labels'][first]!r} in field 'rows.labels' of {manifest_path} (a changed "
                              f"or reordered DataFrame); {again}")
        checkpoint = os.path.join(self.checkpoint_dir, manifest["checkpoint"]["file"])
        try:
            current = artifacts.sha256_file(checkpoint)
        except FileNotFoundError:
            raise RunnerError(f"the inference outputs in {split_dir} were computed from {checkpoint}, which no "
                              f"longer exists, so they cannot be checked against the model; {again}") from None
        if current != manifest["checkpoint"]["sha256"]:
            raise RunnerError(f"the inference outputs in {split_dir} are stale: {checkpoint} changed since they were "
                              f"written (retrained?); {again}")
        data = getattr(self.dataset, "data", None)
        targets_like = getattr(data, "targets", None) if data is not None else None
        return artifacts.load_split(self.infer_dir, split, list(self.flow.tasks), manifest,
                                    targets_like if isinstance(targets_like, dict) else None)

    # -- tune ------------------------------------------------------------------------------------------------
    def tune(self, loader: str = "valid", metric: str = "f1", min_recall: Optional[float] = None,
             min_samples: int = 30, min_per_class: int = 5) -> dict:
        """Tune thresholds on the stored ``loader`` outputs (ground-truth gated samples only), save them to
        ``tuned.json``, apply them and return ``{task_path: params}``.

        A threshold is only moved with at least ``min_samples`` masked samples and ``min_per_class`` of each
        class; otherwise the task keeps its threshold, a warning names it and ``tuned.json`` says why."""
        for name, value in (("min_samples", min_samples), ("min_per_class", min_per_class)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RunnerError(f"{name} must be an int >= 0, got {value!r}")
        self._use_fitted_targets()
        logits, targets, available, _ = self._stored(loader)
        params, report = tune_flow(self.flow, logits, targets, available, metric=metric, min_recall=min_recall,
                                   min_samples=min_samples, min_per_class=min_per_class)
        report = mark_tuned_points(self.flow, logits, targets, available, report)  # the point on the PR curve
        if self._writes_files():
            atomic_write_json(os.path.join(self.run_dir, "tuned.json"),
                              {"loader": loader, "metric": metric, "min_recall": min_recall,
                               "min_samples": min_samples, "min_per_class": min_per_class, "params": params,
                               "report": report})
        self._apply_params(params)
        return params

    def _apply_params(self, params: dict) -> None:
        by_path = {path: name for name, path in self.flow.task_paths.items()}
        if not isinstance(params, dict):
            raise RunnerError(f"tuned parameters must map task paths to parameters, got {type(params).__name__}")
        unknown = [path for path in params if path not in by_path]
        if unknown:
            raise RunnerError(f"tuned parameters name task(s) {unknown}, which this flow does not have; tasks are "
                              f"{list(by_path)}")
        # All or nothing: a bad entry must not leave the decoders half updated.
        before = {name: task.get_decoder_params() for name, task in self.flow.tasks.items()}
        try:
            for path, task_params in params.items():
                self.flow.tasks[by_path[path]].set_decoder_params(task_params)
        except Exception:
            for name, task_params in before.items():
                self.flow.tasks[name].set_decoder_params(task_params)
            raise

    def load_tuned(self) -> dict:
        """Apply the parameters saved by :meth:`tune` to the flow's decoders and return them."""
        path = os.path.join(self.run_dir, "tuned.json")
        try:
            with open(path, encoding="utf-8") as f:
                params = json.load(f)["params"]
        except FileNotFoundError:
            raise RunnerError(f"no tuned parameters at {path}; run runner.tune() first") from None
        except (ValueError, KeyError, TypeError) as e:
            raise RunnerError(f"tuned parameters file {path} is corrupted ({e}); run runner.tune() again") from None
        check_tuned_params(path, params, self.flow)
        try:
            self._apply_params(params)
        except (RunnerError, TaskError, TypeError, AttributeError) as e:
            raise RunnerError(f"tuned parameters file {path} does not fit this flow: {e}; run runner.tune() "
                              f"again") from None
        return params

    # -- evaluate --------------------------------------------------------------------------------------------
    def evaluate(self, loader: str = "test", gating: str = "gt") -> pd.DataFrame:
        """Per-task metrics on the stored ``loader`` outputs with the tuned thresholds, as a DataFrame with
        ``task_path, metric_name, metric_res, num_samples``; also saved as ``evaluation_<loader>_<gating>.csv``."""
        if gating not in GATINGS:
            raise RunnerError(f"gating must be one of {GATINGS}, got {gating!r}")
        self._use_fitted_targets()
        logits, targets, available, _ = self._stored(loader)
        if os.path.exists(os.path.join(self.run_dir, "tuned.json")):
            self.load_tuned()
        else:
            warnings.warn("no tuned parameters (run runner.tune() first): evaluating with default thresholds",
                          stacklevel=2)
        table = self.flow.get_evaluator()(logits, targets, available, gating=gating)
        if self._writes_files():
            atomic_write_text(os.path.join(self.run_dir, f"evaluation_{loader}_{gating}.csv"),
                              table.to_csv(index=False))
        return table


def _check_flow_file(path: str, saved, run_dir: str) -> None:
    """A flow.json that differs from this flow must still be a flow description before it is quoted back."""
    def bad(field: str, expected: str, got) -> RunnerError:
        shown = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
        return RunnerError(f"{path}: field '{field}' must be {expected}, got {shown}: the run directory {run_dir} "
                           f"is damaged; choose another runner_name or delete it. Nothing was overwritten.")

    if not isinstance(saved, dict):
        raise bad("(top level)", "an object with 'name' and 'tasks'", saved)
    if not isinstance(saved.get("name"), str):
        raise bad("name", "the flow's name (a string)", saved.get("name"))
    if not isinstance(saved.get("tasks"), list):
        raise bad("tasks", "a list of task descriptions", saved.get("tasks"))
    for i, task in enumerate(saved["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("path"), str):
            raise bad(f"tasks[{i}]", "an object with a 'path' string", task)


def default_num_workers(dataset) -> int:
    """DataLoader workers when ``num_workers`` is not given: none when every input column is in memory (a batch
    is an index: workers would only add copies between processes); for columns read per item (image files), one
    per core but one, at most 4."""
    inner = getattr(dataset, "dataset", dataset)
    if not getattr(inner, "reads_per_item", False):
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def _to_device(inputs, device, non_blocking: bool = False):
    if isinstance(inputs, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=non_blocking) if isinstance(inputs, torch.Tensor) else inputs


def _is_ddp(engine) -> bool:
    from catalyst.engines.torch import DistributedDataParallelEngine

    return isinstance(engine, DistributedDataParallelEngine)


def _gather_split(stored, valid, split_indices) -> Dict[str, Dict[str, torch.Tensor]]:
    """Every process's stored rows of a split, padding dropped, in the split's order (as one process stores it)."""
    position_in_split = torch.full((int(max(split_indices)) + 1,), -1, dtype=torch.long)
    position_in_split[torch.as_tensor(split_indices)] = torch.arange(len(split_indices))
    any_task = next(iter(stored.values()))
    key = position_in_split[any_task["index"]]
    fields = {(task, field): value for task, values in stored.items() for field, value in values.items()}
    flat = gather_samples({str(i): value for i, value in enumerate(fields.values())}, key=key, valid=valid)
    gathered = {task: {} for task in stored}
    for i, (task, field) in enumerate(fields):
        gathered[task][field] = flat[str(i)]
    return gathered


def _finish_split(flow, collected, positions) -> Dict[str, Dict[str, torch.Tensor]]:
    """Concatenate a split's batches and derive activations, both masks and per-sample losses."""
    logits = {k: torch.cat(v["logits"]) for k, v in collected.items()}
    targets = {k: torch.cat(v["targets"]) for k, v in collected.items()}
    available = {k: torch.cat(v["available"]) for k, v in collected.items()}
    gt = split_masks(flow, logits, targets, available, "gt")
    n = positions.shape[0]
    reach = flow.graph.masks(decode_condition_sources(flow.graph, logits), None, n)
    stored = {}
    for name, task in flow.tasks.items():
        stored[name] = {
            "logits": logits[name], "activations": task.activation(logits[name]), "targets": targets[name],
            "available": available[name], "mask_gt": gt[name], "mask_decoded": reach[name],
            "per_sample_loss": task.per_sample_loss(logits[name], targets[name], gt[name]), "index": positions,
        }
    return stored
