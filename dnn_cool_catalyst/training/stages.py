"""``runner.train(stages=[...])``: several trainings in a row on one model, each with its own settings.

Catalyst 22.4 has no stages any more: each stage here is one Catalyst run (one :func:`.recipe.fit` call) with

- its own ``num_epochs`` (required), ``lr``, ``optimizer`` and ``scheduler`` specs (see :mod:`.schedules`; a
  fresh optimizer per stage, over the parameters that stage trains), ``early_stopping_patience`` and
  ``valid_metric``; the arguments given to ``train`` next to ``stages`` are the defaults of every stage;
- ``loss_weights`` for that stage only (as the runner's ``loss_weights``; without it the runner's loss);
- ``freeze``: module-name prefixes (``["trunk"]`` freezes ``trunk.0.weight`` ...) whose parameters get
  ``requires_grad=False`` and stay out of the optimizer during the stage; restored afterwards. Buffers (BatchNorm
  running statistics) are not parameters: they still update in training mode;
- ``initial_weights``: weights loaded when the stage starts, a checkpoint file (one of our ``runner.*.pth`` or a
  plain ``state_dict``), or ``"<earlier stage>.best"`` / ``"<earlier stage>.last"``; ``strict`` (default True)
  refuses a file with missing or unexpected keys, ``strict: false`` loads the keys it has.

A stage starts from the weights the previous stage ended with (its last epoch; ``initial_weights:
"stage1.best"`` for its best). Each stage has its own checkpoints (each also holding ``stage_index`` and
``stage_name``) and its own TensorBoard loaders, epochs counted from 1 in each; ``stages.json`` records the stage
names and which are complete (the folders and files: run/layout.py, ``RunDir.stage``). When the last stage ends,
its best and last checkpoints are copied to the run's own ``runner.best.pth`` / ``runner.last.pth``: the run's
best model is the best epoch *of the last stage* (earlier stages optimise other objectives or freeze parts of
the model, so their scores do not compare).

``resume=True`` skips the completed stages and continues the interrupted one from its own last checkpoint, with
that stage's optimizer, scheduler and epoch counter (``num_epochs`` of a stage is its total); a stage not yet
started starts from the previous stage's last checkpoint.

``loggers=`` given to ``train`` are shared by every stage (Catalyst closes them at each stage's end; they reopen
new files, so stages are not told apart there): the default TensorBoard logger is the per-stage one above.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch

from ..atomic import atomic_copy, atomic_write_json
from ..run.checkpoints import CheckpointError, read_checkpoint
from ..callbacks.selection import ValidMetricError, resolve_valid_metric
from ..callbacks.task_checkpoints import remove_task_selection
from ..messages import short_repr
from ..tasks.base import TaskError
from ..errors import RunnerError
from ..safe_read import read_json
from ..messages import warn_user
from . import recipe
from .schedules import build_optimizer, build_scheduler

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner

STAGE_KEYS = ("name", "num_epochs", "lr", "optimizer", "scheduler", "loss_weights", "freeze", "initial_weights",
              "strict", "early_stopping_patience", "valid_metric")
#: Settings a stage may override; the rest of its keys are handled by the stage driver itself.
_TRAIN_SETTINGS = ("lr", "optimizer", "scheduler", "early_stopping_patience", "valid_metric")
_NAME = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: "$" would let a trailing newline through
_UNSET = object()


@dataclass
class Stage:
    """One parsed stage: its position, name, epochs, the train settings it overrides and what it does to the model
    when it starts."""
    index: int
    name: str
    num_epochs: int
    settings: Dict[str, Any]
    loss_weights: Any = _UNSET
    freeze: List[str] = field(default_factory=list)
    initial_weights: Optional[str] = None
    strict: bool = True
    initial_state: Optional[dict] = None  # read and checked before the first stage runs


def _listed(keys: Sequence[str], limit: int = 10) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def parse_stages(stages) -> List[Stage]:
    """Check the shape of every stage (types, names, keys) and return them parsed; model-dependent checks come
    after, in :meth:`StagedRun._check_against_model`.

    >>> [(s.name, s.num_epochs, s.freeze) for s in parse_stages([{"num_epochs": 1, "freeze": ["trunk"]},
    ...                                                           {"name": "all", "num_epochs": 2}])]
    [('stage1', 1, ['trunk']), ('all', 2, [])]
    """
    if isinstance(stages, (str, bytes, dict)) or not isinstance(stages, Sequence) or not stages:
        raise RunnerError(f"stages must be a non-empty list of dicts (one per stage), got {short_repr(stages)}")
    parsed, names = [], set()
    for i, spec in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(spec, dict):
            raise RunnerError(f"{where} must be a dict with 'num_epochs' and optional {list(STAGE_KEYS)}, got "
                              f"{short_repr(spec)}")
        unknown = [k for k in spec if k not in STAGE_KEYS]
        if unknown:
            raise RunnerError(f"{where} has unknown key(s) {unknown}; a stage takes {list(STAGE_KEYS)}")
        name = spec.get("name", f"stage{i + 1}")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RunnerError(f"{where}.name must be letters, digits, '_' or '-' (it names the stage's checkpoint "
                              f"and TensorBoard directories), got {short_repr(name)}")
        if name in names:
            raise RunnerError(f"{where}.name {name!r} is used by an earlier stage; stage names must be unique")
        names.add(name)
        epochs = spec.get("num_epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise RunnerError(f"{where} ('{name}'): num_epochs must be a positive int, got {short_repr(epochs)}")
        freeze = spec.get("freeze") or []
        if isinstance(freeze, str):
            freeze = [freeze]
        if not isinstance(freeze, (list, tuple)) or not all(isinstance(p, str) and p for p in freeze):
            raise RunnerError(f"{where} ('{name}'): freeze must be a list of module-name prefixes such as "
                              f"['trunk'], got {short_repr(spec.get('freeze'))}")
        initial = spec.get("initial_weights")
        if initial is not None and not isinstance(initial, (str, os.PathLike)):
            raise RunnerError(f"{where} ('{name}'): initial_weights must be a checkpoint path or "
                              f"'<earlier stage>.best|last', got {short_repr(initial)}")
        strict = spec.get("strict", True)
        if not isinstance(strict, bool):
            raise RunnerError(f"{where} ('{name}'): strict must be true or false, got {short_repr(strict)}")
        parsed.append(Stage(index=i, name=name, num_epochs=epochs,
                            settings={k: spec[k] for k in _TRAIN_SETTINGS if k in spec},
                            loss_weights=spec.get("loss_weights", _UNSET), freeze=list(freeze),
                            initial_weights=None if initial is None else os.fspath(initial), strict=strict))
    return parsed


def model_state_of(state: dict) -> dict:
    """The model weights in a checkpoint: ``model_state_dict`` of a runner checkpoint, else the dict itself."""
    inner = state.get("model_state_dict", state)
    return inner if isinstance(inner, dict) else {}


def _check_specs(stage: Stage, settings: dict, flow) -> None:
    """Build the stage's optimizer and scheduler specs on a stand-in parameter, and resolve its valid_metric, so
    a typo in the last stage fails before the first one trains."""
    try:
        resolve_valid_metric(flow, settings.get("valid_metric", "loss"))
    except ValidMetricError as e:
        raise RunnerError(f"stage '{stage.name}': {e}") from None
    lr = settings.get("lr", 1e-3)
    try:
        optimizer = build_optimizer(settings.get("optimizer"), [torch.nn.Parameter(torch.zeros(1))], lr)
        scheduler = settings.get("scheduler", "default")
        if scheduler != "default":
            build_scheduler(scheduler, optimizer, lr=lr, steps_per_epoch=1, num_epochs=stage.num_epochs,
                            minimize=True)
    except RunnerError as e:
        raise RunnerError(f"stage '{stage.name}': {e}") from None


def checkpoint_fields(stage: Optional[Stage]) -> dict:
    """What each checkpoint of the running ``stage`` records about it (read by the checkpoint callback)."""
    return {} if stage is None else {"stage_index": stage.index, "stage_name": stage.name}


def check_not_staged(runner: "DnnCoolSupervisedRunner", resume: bool) -> None:
    """A staged run resumes with its stages: without them the top-level checkpoint's epoch and optimizer
    would be taken for a single-stage run's. A fresh single-stage training forgets the stages."""
    path = runner.run_layout.stages_json
    if not os.path.exists(path):
        return
    if resume:
        raise RunnerError(f"resume=True without stages, but this run was trained in stages "
                          f"({path}); resume with the same stages=[...]")
    if runner._writes_files():
        os.remove(path)


def train_stages(runner: "DnnCoolSupervisedRunner", stages, *, num_epochs, resume: bool, **settings):
    """``runner.train(stages=...)`` (see the module docstring); ``settings`` are the defaults of every stage."""
    if num_epochs is not None:
        raise RunnerError("num_epochs and stages given together: with stages, give num_epochs in each stage")
    for key in ("optimizer", "scheduler"):
        value = settings.get(key)
        if value is not None and not isinstance(value, (str, dict)):
            raise RunnerError(f"with stages, {key} must be a spec (a name or a dict with 'name', see "
                              f"training/schedules.py): each stage builds its own, got a {type(value).__name__}")
    parsed = parse_stages(stages)
    if runner._writes_files():  # the staged run's best is copied here at its end; an earlier selection is not its own
        remove_task_selection(runner.checkpoint_dir)
    StagedRun(runner, parsed, settings).run(resume)
    return runner


class StagedRun:
    """One ``train(stages=...)``: its parsed stages, the plan in ``stages.json`` and the stage running now
    (``active``). The runner holds it by name while it runs (``runner._staged_run``) so that ``checkpoint_dir``,
    ``tensorboard_dir`` and the checkpoints' stage fields follow ``active``. A stage's loss is passed to its fit
    (``runner.flow_loss`` stays the runner's own); its frozen parameters are restored when it ends."""

    def __init__(self, runner: "DnnCoolSupervisedRunner", stages: List[Stage], settings: dict):
        self.runner, self.stages, self.settings = runner, stages, settings
        self.names = [s.name for s in stages]
        self.active: Optional[Stage] = None
        self.plan_path = runner.run_layout.stages_json

    def run(self, resume: bool) -> None:
        runner, parsed = self.runner, self.stages
        runner._use_fitted_targets()
        runner._materialize()  # lazy heads get their parameters before prefixes and files are checked
        self._check_against_model()
        completed = self._read_plan() if resume else []
        if resume and not os.path.exists(self.plan_path):
            warn_user(f"resume=True but {self.plan_path} does not exist: training the stages from scratch")
        self._write_plan(completed)
        previous: Optional[Stage] = None
        runner._staged_run = self
        try:
            for stage in parsed:
                if stage.name not in completed:
                    self._run_stage(stage, previous, resume)
                    completed.append(stage.name)
                    self._write_plan(completed)
                previous = stage
        finally:
            runner._staged_run = None
        if runner._writes_files():
            run = runner.run_layout.stage(None)
            for which in ("best", "last"):
                source = run.stage(parsed[-1].name).checkpoint(which)
                if os.path.exists(source):
                    atomic_copy(source, run.checkpoint(which))

    # -- checks before anything trains -----------------------------------------------------------------------
    def _check_against_model(self) -> None:
        names = [n for n, _ in self.runner.model.named_parameters()]
        tops = sorted({n.split(".")[0] for n in names})
        earlier: List[str] = []
        for stage in self.stages:
            where = f"stage '{stage.name}'"
            frozen = set()
            for prefix in stage.freeze:
                matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
                if not matched:
                    raise RunnerError(f"{where}: freeze prefix {prefix!r} matches no parameter of the model; "
                                      f"top-level modules with parameters are {tops}")
                frozen.update(matched)
            if names and len(frozen) == len(names) and not list(self._stage_loss(stage).parameters()):
                raise RunnerError(f"{where}: freeze={stage.freeze} freezes every parameter; nothing would train")
            self._stage_loss(stage)  # validates loss_weights now
            _check_specs(stage, {**self.settings, **stage.settings}, self.runner.flow)
            if stage.initial_weights is not None and not self._stage_reference(stage.initial_weights, earlier):
                stage.initial_state = self._checked_initial_state(stage)
            earlier.append(stage.name)

    def _stage_loss(self, stage: Stage):
        if stage.loss_weights is _UNSET:
            return self.runner.flow_loss
        try:
            return self.runner.flow.get_loss(stage.loss_weights)
        except TaskError as e:
            raise RunnerError(f"stage '{stage.name}': {e}") from None

    def _stage_reference(self, text: str, earlier: Sequence[str]) -> Optional[str]:
        """The checkpoint path ``"<earlier stage>.best|last"`` names, or None when ``text`` is not such a name."""
        stage, _, which = text.rpartition(".")
        if stage in earlier and which in ("best", "last") and os.sep not in text:
            return self.runner.run_layout.stage(stage).checkpoint(which)
        return None

    def _checked_initial_state(self, stage: Stage, path: Optional[str] = None) -> dict:
        """The weights of ``stage.initial_weights`` (or ``path``), checked against the model."""
        path = path or stage.initial_weights
        where = f"stage '{stage.name}': initial_weights {path}"
        try:
            state = model_state_of(read_checkpoint(path))
        except CheckpointError as e:
            raise RunnerError(f"stage '{stage.name}': initial_weights: {e}") from None
        own = self.runner.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if stage.strict and (missing or unexpected):
            raise RunnerError(f"{where} does not fit this model (another model's checkpoint?): missing keys "
                              f"[{_listed(missing)}], unexpected keys [{_listed(unexpected)}]; pass strict: false "
                              f"to load only the matching keys")
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)]
        if shapes:
            raise RunnerError(f"{where}: shapes differ from this model's (file vs model): {_listed(shapes, 5)}")
        if not any(k in own for k in state):
            raise RunnerError(f"{where} shares no parameter name with this model; nothing would be loaded")
        return {k: v for k, v in state.items() if k in own}

    # -- one stage -------------------------------------------------------------------------------------------
    def _run_stage(self, stage: Stage, previous: Optional[Stage], resume: bool) -> None:
        runner, model = self.runner, self.runner.model
        self.active = stage  # checkpoint_dir and tensorboard_dir point into the stage's own subdirectory
        within = resume and os.path.exists(runner.run_layout.checkpoint("last"))
        saved_flags = {name: p.requires_grad for name, p in model.named_parameters()}
        try:
            loss = self._stage_loss(stage)
            if not within:
                self._load_stage_start(stage, previous, loss)
            for name, p in model.named_parameters():
                if any(name == prefix or name.startswith(prefix + ".") for prefix in stage.freeze):
                    p.requires_grad_(False)
            kwargs = {**self.settings, **stage.settings}
            if isinstance(kwargs.get("loggers"), dict):  # Catalyst adds its CSV logger into the dict it is given
                kwargs["loggers"] = dict(kwargs["loggers"])
            recipe.fit(runner, num_epochs=stage.num_epochs, resume=within, loss=loss, **kwargs)
        finally:
            for name, p in model.named_parameters():
                p.requires_grad_(saved_flags.get(name, p.requires_grad))
            self.active = None

    def _load_stage_start(self, stage: Stage, previous: Optional[Stage], loss) -> None:
        """The weights a fresh stage starts from: the previous stage's last epoch (read back from its checkpoint,
        which also holds them when this process did not train it: a resume, or DDP workers), then the stage's
        ``initial_weights``. ``loss``: the stage's, which takes the previous stage's learned weights if it has
        the same ones."""
        model = self.runner.model
        if previous is not None:
            last = self.runner.run_layout.stage(previous.name).checkpoint("last")
            if os.path.exists(last):
                try:
                    state = read_checkpoint(last)
                except CheckpointError as e:
                    raise RunnerError(str(e)) from None
                model.load_state_dict(model_state_of(state))
                criterion = state.get("criterion_state_dict")
                if isinstance(criterion, dict) and set(criterion) == set(loss.state_dict()):
                    loss.load_state_dict(criterion)
        if stage.initial_weights is None:
            return
        if stage.initial_state is None:  # "<earlier stage>.best|last": written since the checks
            path = self._stage_reference(stage.initial_weights, [s for s in self.names if s != stage.name])
            stage.initial_state = self._checked_initial_state(stage, path)
        model.load_state_dict(stage.initial_state, strict=False)
        stage.initial_state = None  # a resumed process reads it again; no copy of the weights kept meanwhile

    # -- stages.json -----------------------------------------------------------------------------------------
    def _read_plan(self) -> List[str]:
        path = self.plan_path
        if not os.path.exists(path):
            return []
        try:
            plan = read_json(path)
            names, completed = list(plan["stages"]), list(plan["completed"])
            if not all(isinstance(n, str) for n in names + completed):
                raise TypeError("stage names must be strings")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunnerError(f"{path} is damaged ({e}); delete it and the stage checkpoints to train anew") \
                from None
        if names != self.names:
            raise RunnerError(f"resume=True with stages {self.names}, but this run was trained with stages {names} "
                              f"({path}); resume with the same stage names in the same order")
        return [n for n in completed if n in self.names]

    def _write_plan(self, completed: List[str]) -> None:
        if self.runner._writes_files():
            os.makedirs(os.path.dirname(self.plan_path), exist_ok=True)
            atomic_write_json(self.plan_path, {"stages": list(self.names), "completed": list(completed)})
