"""``runner.train(stages=[...])``: several trainings in a row on one model, each with its own settings.

Catalyst 22.4 has no stages any more: each stage here is one Catalyst run (one ``_train`` call) with

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
"stage1.best"`` for its best). Layout: ``checkpoints/<stage>/runner.{last,best,NNNN}.pth`` (each checkpoint also
holds ``stage_index`` and ``stage_name``), ``tensorboard/<stage>/<loader>/`` (each stage its own TensorBoard
run, epochs counted from 1 in each), and ``checkpoints/stages.json`` (the stage names and which are complete).
When the last stage ends, its best and last checkpoints are copied to ``checkpoints/runner.best.pth`` /
``runner.last.pth``: the run's best model is the best epoch *of the last stage* (earlier stages optimise other
objectives or freeze parts of the model, so their scores do not compare).

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
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..atomic import atomic_copy, atomic_write_json
from ..callbacks.checkpoint import CheckpointError, read_checkpoint
from ..messages import short_repr
from ..tasks.base import TaskError
from ..errors import RunnerError
from ..safe_read import read_json
from ..messages import warn_user

STAGE_KEYS = ("name", "num_epochs", "lr", "optimizer", "scheduler", "loss_weights", "freeze", "initial_weights",
              "strict", "early_stopping_patience", "valid_metric")
#: Settings a stage may override; the rest of its keys are handled by the stage driver itself.
_TRAIN_SETTINGS = ("lr", "optimizer", "scheduler", "early_stopping_patience", "valid_metric")
PLAN_FILE = "stages.json"
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
    after, in :meth:`StagesMixin._check_stages_against_model`.

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
    from ..callbacks.selection import ValidMetricError, resolve_valid_metric
    from .schedules import build_optimizer, build_scheduler

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


class StagesMixin:
    """``train(stages=...)`` for the runner (see the module docstring)."""

    _active_stage: Optional[Stage] = None

    def _stage_subdir(self, root: str) -> str:
        """``root/<stage name>`` while a stage runs, else ``root``."""
        return os.path.join(root, self._active_stage.name) if self._active_stage is not None else root

    @property
    def stage_checkpoint_fields(self) -> dict:
        """What each checkpoint of the running stage records about it (read by the checkpoint callback)."""
        stage = self._active_stage
        return {} if stage is None else {"stage_index": stage.index, "stage_name": stage.name}

    def _plan_path(self) -> str:
        return os.path.join(self.run_dir, "checkpoints", PLAN_FILE)

    def _check_not_staged(self, resume: bool) -> None:
        """A staged run resumes with its stages: without them the top-level checkpoint's epoch and optimizer
        would be taken for a single-stage run's. A fresh single-stage training forgets the stages."""
        if not os.path.exists(self._plan_path()):
            return
        if resume:
            raise RunnerError(f"resume=True without stages, but this run was trained in stages "
                              f"({self._plan_path()}); resume with the same stages=[...]")
        if self._writes_files():
            os.remove(self._plan_path())

    # -- checks before anything trains -----------------------------------------------------------------------
    def _check_stages_against_model(self, stages: List[Stage], settings: dict) -> None:
        names = [n for n, _ in self.model.named_parameters()]
        tops = sorted({n.split(".")[0] for n in names})
        earlier: List[str] = []
        for stage in stages:
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
            _check_specs(stage, {**settings, **stage.settings}, self.flow)
            if stage.initial_weights is not None and not self._stage_reference(stage.initial_weights, earlier):
                stage.initial_state = self._checked_initial_state(stage)
            earlier.append(stage.name)

    def _stage_loss(self, stage: Stage):
        if stage.loss_weights is _UNSET:
            return self.flow_loss
        try:
            return self.flow.get_loss(stage.loss_weights)
        except TaskError as e:
            raise RunnerError(f"stage '{stage.name}': {e}") from None

    def _stage_reference(self, text: str, earlier: Sequence[str]) -> Optional[str]:
        """The checkpoint path ``"<earlier stage>.best|last"`` names, or None when ``text`` is not such a name."""
        stage, _, which = text.rpartition(".")
        if stage in earlier and which in ("best", "last") and os.sep not in text:
            return os.path.join(self.run_dir, "checkpoints", stage, f"runner.{which}.pth")
        return None

    def _checked_initial_state(self, stage: Stage, path: Optional[str] = None) -> dict:
        """The weights of ``stage.initial_weights`` (or ``path``), checked against the model."""
        path = path or stage.initial_weights
        where = f"stage '{stage.name}': initial_weights {path}"
        try:
            state = model_state_of(read_checkpoint(path))
        except CheckpointError as e:
            raise RunnerError(f"stage '{stage.name}': initial_weights: {e}") from None
        own = self.model.state_dict()
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

    # -- the driver ------------------------------------------------------------------------------------------
    def _train_stages(self, stages, *, num_epochs, resume: bool, **settings):
        if num_epochs is not None:
            raise RunnerError("num_epochs and stages given together: with stages, give num_epochs in each stage")
        for key in ("optimizer", "scheduler"):
            value = settings.get(key)
            if value is not None and not isinstance(value, (str, dict)):
                raise RunnerError(f"with stages, {key} must be a spec (a name or a dict with 'name', see "
                                  f"training/schedules.py): each stage builds its own, got a {type(value).__name__}")
        parsed = parse_stages(stages)
        self._use_fitted_targets()
        self._materialize()  # lazy heads get their parameters before prefixes and files are checked
        self._check_stages_against_model(parsed, settings)
        completed = self._read_plan(parsed) if resume else []
        if resume and not os.path.exists(self._plan_path()):
            warn_user(f"resume=True but {self._plan_path()} does not exist: training the stages from scratch")
        self._write_plan(parsed, completed)
        previous: Optional[Stage] = None
        for stage in parsed:
            if stage.name not in completed:
                self._run_stage(stage, previous, resume, settings)
                completed.append(stage.name)
                self._write_plan(parsed, completed)
            previous = stage
        if self._writes_files():
            final = os.path.join(self.run_dir, "checkpoints", parsed[-1].name)
            for which in ("best", "last"):
                source = os.path.join(final, f"runner.{which}.pth")
                if os.path.exists(source):
                    atomic_copy(source, os.path.join(self.run_dir, "checkpoints", f"runner.{which}.pth"))
        return self

    def _run_stage(self, stage: Stage, previous: Optional[Stage], resume: bool, settings: dict) -> None:
        self._active_stage = stage  # checkpoint_dir and tensorboard_dir point into the stage's own subdirectory
        within = resume and os.path.exists(os.path.join(self.checkpoint_dir, "runner.last.pth"))
        saved_flags = {name: p.requires_grad for name, p in self.model.named_parameters()}
        saved_loss = self.flow_loss
        try:
            self.flow_loss = self._stage_loss(stage)
            if not within:
                self._load_stage_start(stage, previous)
            for name, p in self.model.named_parameters():
                if any(name == prefix or name.startswith(prefix + ".") for prefix in stage.freeze):
                    p.requires_grad_(False)
            kwargs = {**settings, **stage.settings}
            if isinstance(kwargs.get("loggers"), dict):  # Catalyst adds its CSV logger into the dict it is given
                kwargs["loggers"] = dict(kwargs["loggers"])
            self._train(num_epochs=stage.num_epochs, resume=within, **kwargs)
        finally:
            for name, p in self.model.named_parameters():
                p.requires_grad_(saved_flags.get(name, p.requires_grad))
            self.flow_loss = saved_loss
            self._active_stage = None

    def _load_stage_start(self, stage: Stage, previous: Optional[Stage]) -> None:
        """The weights a fresh stage starts from: the previous stage's last epoch (read back from its checkpoint,
        which also holds them when this process did not train it: a resume, or DDP workers), then the stage's
        ``initial_weights``."""
        if previous is not None:
            last = os.path.join(self.run_dir, "checkpoints", previous.name, "runner.last.pth")
            if os.path.exists(last):
                try:
                    state = read_checkpoint(last)
                except CheckpointError as e:
                    raise RunnerError(str(e)) from None
                self.model.load_state_dict(model_state_of(state))
                criterion = state.get("criterion_state_dict")
                if isinstance(criterion, dict) and set(criterion) == set(self.flow_loss.state_dict()):
                    self.flow_loss.load_state_dict(criterion)
        if stage.initial_weights is None:
            return
        if stage.initial_state is None:  # "<earlier stage>.best|last": written since the checks
            path = self._stage_reference(stage.initial_weights, [s for s in self._plan_names if s != stage.name])
            stage.initial_state = self._checked_initial_state(stage, path)
        self.model.load_state_dict(stage.initial_state, strict=False)
        stage.initial_state = None  # a resumed process reads it again; no copy of the weights kept meanwhile

    # -- stages.json -----------------------------------------------------------------------------------------
    def _read_plan(self, stages: List[Stage]) -> List[str]:
        path = self._plan_path()
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
        wanted = [s.name for s in stages]
        if names != wanted:
            raise RunnerError(f"resume=True with stages {wanted}, but this run was trained with stages {names} "
                              f"({path}); resume with the same stage names in the same order")
        return [n for n in completed if n in wanted]

    def _write_plan(self, stages: List[Stage], completed: List[str]) -> None:
        self._plan_names = [s.name for s in stages]
        if self._writes_files():
            os.makedirs(os.path.dirname(self._plan_path()), exist_ok=True)
            atomic_write_json(self._plan_path(), {"stages": self._plan_names, "completed": list(completed)})
