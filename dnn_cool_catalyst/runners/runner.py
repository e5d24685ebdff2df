"""``DnnCoolSupervisedRunner``: Catalyst's SupervisedRunner driven by a flow."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence

import torch
from catalyst import dl
from torch.utils.data import DataLoader

from .. import compat
from ..experiments import cross_validation, dev_subset
from ..export import from_run as export_run
from ..interpretation import examples
from ..interpretation.publishers import Publishers
from ..interpretation.selection import OVERALL
from ..outputs import decoding, inference
from ..outputs import tta as tta_of
from ..parallel import REDUCTION_KEY, ShardedBatchSampler, autocast, autocast_dtype, balanced_forward, to_device
from ..prediction import from_run as prediction_run
from ..run import fitted
from ..run.claim import claim_run_dir
from ..run.layout import RunDir
from ..run.run_config import runner_settings
from ..run.splits import SPLITS
from ..run.tensorboard import tensorboard_run
from ..signatures import forwards_kwargs
from ..tasks.base import TaskError
from ..training import augmentation, compiled_step, lr_finder, recipe
from ..training import train as training
from ..training import stages as staged_training
from ..training.engine import global_rank
from ..training.loggers import FlowTensorboardLogger
from . import device_data as placement
from . import loaders
from .errors import RunnerError

if TYPE_CHECKING:
    import pandas as pd


class DnnCoolSupervisedRunner(dl.SupervisedRunner):
    """Trains, infers, tunes and evaluates a flow-driven model, keeping everything under ``run_dir``
    (:class:`~dnn_cool_catalyst.run.layout.RunDir` names each file; ``runner.run_layout``).

    ``model`` is any nn.Module taking the batch's ``"inputs"`` dict and returning the flow module's output (or a
    dict of logits per task). Ground truth never reaches the model: preconditions are applied in the loss and
    metrics from the batch's labels. ``loss_weights``: ``None`` (every task 1.0), a dict of fixed weights or
    ``"uncertainty"`` (:class:`~dnn_cool_catalyst.measures.losses.FlowLoss`); the loss is ``runner.flow_loss``,
    also the Catalyst criterion (learned weights are optimised and checkpointed).

    The rest, each with its README section: ``engine`` and ``balance_dataparallel_memory`` ("Multi-GPU,
    multi-node and mixed precision"); ``device_data`` and ``num_workers`` ("Data path and device-resident data",
    ``runners/device_data.py``); ``split_fractions``, ``stratify``, ``resplit`` (``run/splits.py``: splits.json
    stores row labels, ``self.splits`` int64 arrays of positions); ``dev=N`` ("Cross-validation and development
    subsets": N seeded rows in ``<run_dir>-dev<N>``); ``box_tasks`` ("Augmentation, test-time augmentation and class
    balancing": which bounded regression tasks are box coordinates that flips move).

    Public methods delegate to the modules that own them (ARCHITECTURE.md): ``training/``, ``outputs/``,
    ``prediction/``, ``export/``, ``interpretation/`` and ``experiments/``.
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
        # Saved with each training in run_config.json (run/run_config.py) for comparing experiments.
        self.run_settings = runner_settings(
            batch_size=batch_size, num_workers=num_workers, seed=seed, split_fractions=split_fractions,
            loss_weights=loss_weights, stratify=stratify, device_data=device_data, engine=engine,
            balance_dataparallel_memory=balance_dataparallel_memory)
        try:  # validated now, not at the first batch; an nn.Module: learned weights train and checkpoint with it
            self.flow_loss = flow.get_loss(loss_weights)
        except TaskError as e:
            raise RunnerError(str(e)) from None
        self._engine_arg = engine
        augmentation.set_box_tasks(self, box_tasks)
        # Under nn.DataParallel, reduce loss and metric statistics on each replica (see parallel/replicas.py).
        self.balance_dataparallel_memory = balance_dataparallel_memory
        # dev=N: N seeded rows in <run_dir>-dev<N>, never the full run's directory (experiments/dev_subset.py).
        self.dev = None if dev is None else dev_subset.check_dev(dev, len(self.dataset))
        if self.dev is not None:
            self.run_dir = self.run_layout.dev(self.dev).path
        self._claim_run_dir()
        self.splits = loaders.assign_splits(self, split_fractions, seed, stratify, resplit)
        self.split_fractions, self.stratify = split_fractions, stratify
        try:  # e.g. regression target scaling, fitted on the training split only and saved with the run
            self.fitted_targets = fitted.load_or_fit(self.run_dir, self.flow, self.dataset, self.splits["train"],
                                                     write=self._writes_files())
        except fitted.FittedStateError as e:
            raise RunnerError(str(e)) from None
        self._fit_model_inputs()

    def _fit_model_inputs(self) -> None:
        loaders.fit_model_inputs(self.model, self.dataset, self.splits["train"])

    def _use_fitted_targets(self) -> None:
        """Put this run's fitted state back on the tasks (another runner may have fitted them on its own split)."""
        fitted.apply_states(self.flow, self.fitted_targets, source=self.run_layout.fitted)

    # -- run directory ---------------------------------------------------------------------------------------
    def _claim_run_dir(self) -> None:
        claim_run_dir(self.run_dir, self.flow)

    def _row_ids(self) -> Sequence:
        return loaders.row_ids(self.dataset)

    def _strata(self, stratify: Optional[str]) -> Optional[list]:
        """Each row's label of the task ``stratify`` (``None`` where unlabelled), to split each class alike."""
        return loaders.strata(self.flow, self.dataset, stratify)

    @property
    def run_layout(self) -> RunDir:
        """The paths of this run directory (run/layout.py), seen from the stage of ``train(stages=...)`` that runs
        now (its checkpoints are the stage's own; training/stages.py)."""
        return RunDir(self.run_dir).stage(None if self._active_stage is None else self._active_stage.name)

    @property
    def tensorboard_root(self) -> str:
        """``<run_dir>/tensorboard``: what ``tensorboard --logdir`` should be given."""
        return self.run_layout.tensorboard_root

    @property
    def tensorboard_run_dir(self) -> str:
        """``<run_dir>/tensorboard/run-<N>``, the folder this runner writes its loaders' summaries under, claimed on
        first use (run/tensorboard.py); the runner's ``tensorboard_dir`` is in it."""
        if getattr(self, "_tensorboard_dir", None) is None:
            self._tensorboard_dir = tensorboard_run(self.tensorboard_root, claim=self._writes_files())
        return self._tensorboard_dir

    @property
    def checkpoint_dir(self) -> str:
        return self.run_layout.checkpoints

    @property
    def tensorboard_layout(self) -> RunDir:
        # This runner's TensorBoard run (run/tensorboard.py) seen from the running stage. Read from the claimed
        # path, which a copy of the runner (cross_validate's folds) keeps.
        return RunDir.of_tensorboard_run(self.tensorboard_run_dir).stage(self.run_layout.stage_name)

    @property
    def tensorboard_dir(self) -> str:
        return self.tensorboard_layout.tensorboard

    @property
    def infer_dir(self) -> str:
        return self.run_layout.infer

    # -- stages: train(stages=...) holds its StagedRun here while it runs (training/stages.py) ---------------
    _staged_run: Optional[staged_training.StagedRun] = None

    @property
    def _active_stage(self) -> Optional[staged_training.Stage]:
        return None if self._staged_run is None else self._staged_run.active

    @property
    def stage_checkpoint_fields(self) -> dict:
        """What each checkpoint of the running stage records about it (read by the checkpoint callback)."""
        return staged_training.checkpoint_fields(self._active_stage)

    # -- data ------------------------------------------------------------------------------------------------
    def split_loader(self, split: str, shuffle: bool = False, batch_size: Optional[int] = None) -> DataLoader:
        """A DataLoader over the split ``split`` (``"train"``, ``"valid"``, ``"test"``), the same loaders ``train``
        and ``infer`` use; see :func:`~dnn_cool_catalyst.runners.loaders.split_loader`."""
        return loaders.split_loader(self, split, shuffle, batch_size)

    def _placed_loader(self, loader, device, rank: int = 0, world: int = 1):  # as this process iterates it
        return loaders.placed_loader(self, loader, device, rank, world)

    def _materialize(self) -> None:
        """Run one small batch through the model so lazy heads get their shapes before an optimizer exists."""
        loaders.materialize(self)

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
        self.loaders = loaders.engine_loaders(self, self.get_loaders())

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
        return global_rank(self._engine_arg) == 0

    def _balanced(self) -> bool:
        model = self.model
        return (self.balance_dataparallel_memory and isinstance(model, torch.nn.DataParallel)
                and len(model.device_ids) > 1)

    def handle_batch(self, batch) -> None:
        # Our DataLoaders are not accelerate-prepared, so they yield CPU tensors; DeviceBatches are already there.
        device = self.engine.device
        if device.type != "cpu" and not isinstance(self.loader, placement.DeviceBatches):
            batch = to_device(batch, device, non_blocking=True)
        batch = augmentation.augmented(self, batch)  # train(augment=...): train loaders only
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
    # **kwargs reach Catalyst's train, except the arguments recipe.fit passes itself
    @forwards_kwargs("catalyst.dl.SupervisedRunner.train",
                     exclude=("model", "criterion", "logdir", "valid_loader", "minimize_valid_metric", "seed"))
    def train(self, *, num_epochs: Optional[int] = None, resume: bool = False, lr: float = 1e-3,
              early_stopping_patience: Optional[int] = None, verbose="auto", valid_metric: str = "loss",
              stages: Optional[Sequence[dict]] = None, augment=None, balance=None, compile=False,
              task_selection="auto", **kwargs) -> "DnnCoolSupervisedRunner":
        """Train with sensible defaults; every default can be replaced with the usual Catalyst argument (``optimizer``,
        ``scheduler``, ``callbacks``, ``loggers``, ``engine``, ``loaders``...). The whole description, with what each
        default is and why: :func:`dnn_cool_catalyst.training.train.train`. In short:

        - ``num_epochs``: the total (also when resuming); default a budget of 4,000 optimizer steps, 10 to 200 epochs;
        - ``resume=True``: continue from ``checkpoints/runner.last.pth`` (optimizer, scheduler, counters, early stop);
        - ``lr``: AdamW's (fused where the parameters allow); ReduceLROnPlateau halves it on a plateau of
          ``valid_metric``: ``"loss"``, ``"loss/<task>"``, ``"<task>/<metric>"`` or ``"task_mean"``;
        - ``early_stopping_patience``: default a twelfth of ``num_epochs`` (5 to 16), held while a task is still at
          its trivial baseline;
        - ``verbose="auto"``: progress bars and a per-epoch table when standard output is a terminal;
        - ``stages``: a list of dicts trained one after the other (:mod:`~dnn_cool_catalyst.training.stages`);
        - ``augment`` / ``balance``: augment training batches per input column / balance the training split's sampling;
        - ``compile=True`` or a mode: the training step as one ``torch.compile`` graph (off by default: it costs more up
          front than a short run takes);
        - ``task_selection``: each task at the epoch of its own lowest validation loss (``"auto"``: for models that
          declare ``select_per_task = True``, as ``tabular_model``'s do).

        The run directory is locked meanwhile (``.lock``); a task with no labelled training row where its condition
        holds is an error before any epoch.
        """
        return training.train(self, num_epochs=num_epochs, resume=resume, lr=lr,
                              early_stopping_patience=early_stopping_patience, verbose=verbose,
                              valid_metric=valid_metric, stages=stages, augment=augment, balance=balance,
                              compile=compile, task_selection=task_selection, **kwargs)

    def _valid_baselines(self) -> dict:  # what early stopping waits for every task to beat
        return recipe.valid_baselines(self)

    # -- features that drive the runner ----------------------------------------------------------------------
    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, smoothing: float = 0.05,
                diverge_factor: float = 4.0, optimizer=None, tensorboard: bool = True,
                device: Optional[str] = None) -> lr_finder.LRFinderResult:
        """Learning-rate range test, ``(history, suggested_lr)`` (:mod:`~dnn_cool_catalyst.training.lr_finder`)."""
        return lr_finder.lr_find(self, start_lr, end_lr, num_steps, smoothing, diverge_factor, optimizer,
                                 tensorboard, device)

    # -- outputs (delegations) --
    # What a trained run produces is built by functions over the runner (training/augmentation.py, outputs/,
    # prediction/from_run.py, export/from_run.py, interpretation/examples.py). The state they keep on it:
    box_tasks = None  # box coordinate tasks, set at construction (training/augmentation.py)
    interpretation_k: int = 5  # best/worst samples per task and kind in TensorBoard; 0 turns the logging off
    interpretation_every: Optional[int] = None  # which validation epochs log them (interpretation/examples.py)
    _augment_plan = None  # while one train(augment=...) runs, as _balance_draw for train(balance=...)
    _balance_draw = None
    _tta_plan = None  # while one infer(tta=...) runs (outputs/tta.py)
    _selected_model = None  # set by load_checkpoint("best") for a run that selected per task
    _publishers: Optional[Publishers] = None

    @property
    def publishers(self) -> Publishers:
        """How input columns are shown (``publishers.col_mapping``) and which boxes are drawn (``.boxes``)."""
        return examples.publishers(self)

    @publishers.setter
    def publishers(self, value: Publishers) -> None:
        self._publishers = value

    def _training_extras(self, augment=None, balance=None):
        return augmentation.training_extras(self, augment, balance)

    def load_checkpoint(self, which: str = "best") -> str:
        """Load ``checkpoints/runner.<which>.pth`` into ``self.model`` and return its path."""
        return inference.load_checkpoint(self, which)

    def inference_model(self) -> torch.nn.Module:
        """The model ``infer``, ``predict`` and ``export`` run (:func:`.inference.inference_model`)."""
        return inference.inference_model(self)

    def infer(self, splits: Iterable[str] = SPLITS, checkpoint: str = "best", verbose: bool = False,
              engine=None, tta=None) -> dict:
        """Store the ``checkpoint`` weights' outputs on every split under ``infer/``; see :func:`.inference.infer`."""
        return inference.infer(self, splits, checkpoint, verbose, engine, tta)

    def _stored(self, split: str):
        return inference.stored_outputs(self, split)

    def stored_tta(self, split: str) -> List[str]:
        """The test-time augmentation views the stored outputs of ``split`` were averaged over (``[]``: none)."""
        return tta_of.stored_tta(self, split)

    def tune(self, loader: str = "valid", metric: str = "accuracy", min_recall: Optional[float] = None,
             min_samples: int = 30, min_per_class: int = 5, alpha: Optional[float] = 0.05) -> dict:
        """Tune thresholds on the stored ``loader`` outputs, save ``tuned.json``; see :func:`.decoding.tune`."""
        return decoding.tune(self, loader, metric, min_recall, min_samples, min_per_class, alpha)

    def _apply_params(self, params: dict) -> None:
        decoding.apply_params(self, params)

    def has_thresholds(self) -> bool:
        """Whether any task has decoding parameters for :meth:`tune` to set (see :func:`.decoding.has_thresholds`)."""
        return decoding.has_thresholds(self)

    def load_tuned(self) -> dict:
        """Apply the parameters saved by :meth:`tune` to the flow's decoders and return them."""
        return decoding.load_tuned(self)

    def load_tuned_if_any(self) -> bool:
        """Apply ``tuned.json`` when the run has one (:meth:`load_tuned`); returns whether it had one."""
        return decoding.load_tuned_if_any(self)

    def evaluate(self, loader: str = "test", gating: str = "gt") -> pd.DataFrame:
        """Per-task metrics of the stored ``loader`` outputs; saved as ``evaluation_<loader>_<gating>.csv``."""
        return decoding.evaluate(self, loader, gating)

    def predict(self, df: pd.DataFrame, checkpoint: str = "best", proba: bool = False,
                batch_size: Optional[int] = None, verbose: bool = False) -> pd.DataFrame:
        """The ``checkpoint``'s predictions for the rows of ``df`` in label space; see :func:`.from_run.predict`."""
        return prediction_run.predict(self, df, checkpoint, proba, batch_size, verbose)

    def export(self, path: Optional[str] = None, format: str = "torch", checkpoint: str = "best",
               overwrite: Optional[bool] = None) -> str:
        """Write the ``checkpoint`` as one deployable artifact, return its path; see :func:`.from_run.export`."""
        return export_run.export(self, path, format, checkpoint, overwrite)

    def worst_examples(self, loader: str = "valid", task: str = OVERALL, n: int = 5) -> pd.DataFrame:
        """The ``n`` samples with the highest loss for ``task``; see :func:`.examples.worst_examples`."""
        return examples.worst_examples(self, loader, task, n)

    def best_examples(self, loader: str = "valid", task: str = OVERALL, n: int = 5) -> pd.DataFrame:
        """Like :meth:`worst_examples`, lowest loss first."""
        return examples.best_examples(self, loader, task, n)

    def explain(self, loader: str, rows: Iterable, render: bool = True) -> Dict:
        """Explanation trees of the stored ``loader`` outputs of ``rows``; see :func:`.examples.explain`."""
        return examples.explain(self, loader, rows, render)

    def log_interpretation(self, splits: Iterable[str], step: int = 0) -> Dict[str, List[str]]:
        """PR curves, best/worst samples and trees of stored splits; see :func:`.examples.log_interpretation`."""
        return examples.log_interpretation(self, splits, step)

    def cross_validate(self, folds: int = 5, stratify: Optional[str] = None, num_epochs: Optional[int] = None,
                       tune_kwargs: Optional[dict] = None, **train_kwargs) -> pd.DataFrame:
        """One model per fold, each evaluated, then their ensemble (:mod:`~dnn_cool_catalyst.experiments`)."""
        return cross_validation.cross_validate(self, folds, stratify, num_epochs, tune_kwargs, **train_kwargs)

    def fold_splits(self, folds: int = 5, stratify: Optional[str] = None) -> List[Dict[str, list]]:
        """The splits :meth:`cross_validate` gives each fold, as DataFrame index labels; writes nothing."""
        return cross_validation.fold_splits(self, folds, stratify)
