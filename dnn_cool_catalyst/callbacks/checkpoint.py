"""Best + last checkpoints that are written atomically, load without executing code, and survive a resume."""
from __future__ import annotations

import io
import json
import os
import re
from typing import Any, List, Optional, Tuple

import torch
from catalyst.callbacks.checkpoint import Checkpoint, CheckpointCallback
from catalyst.callbacks.misc import EarlyStoppingCallback
from catalyst.utils import pack_checkpoint

from ..atomic import atomic_copy, atomic_write_bytes, atomic_write_text
from ..errors import CheckpointError  # defined there with every library error; re-exported here
from ..run.checkpoints import is_inside, read_checkpoint, read_storage_index
from ..run.layout import checkpoint_path, storage_index_path

_EPOCH_FILE = re.compile(r"[A-Za-z]+\.(\d{4,})\.pth")


def _replayed(callback: EarlyStoppingCallback, history: List[float]) -> Tuple[Optional[float], int]:
    """``(best score, epochs without improvement)`` of an early-stopping callback that has seen ``history``."""
    best, count = None, 0
    for score in history:
        if best is None or callback.is_better(score, best):
            best, count = score, 0
        else:
            count += 1
    return best, count


def _epoch_of(path: str) -> Optional[int]:
    """The epoch of a per-epoch checkpoint ``<mode>.NNNN.pth``; ``None`` for other names."""
    match = _EPOCH_FILE.fullmatch(os.path.basename(path))
    return int(match.group(1)) if match else None


def _field_callbacks(runner, method: str) -> list:
    """The bound ``method`` of every callback that has one: callbacks with state of their own that the runner
    checkpoints carry (``checkpoint_fields() -> dict`` of plain values) and get back on resume
    (``restore_checkpoint_fields(state)``)."""
    found = (getattr(callback, method, None) for callback in (getattr(runner, "callbacks", None) or {}).values())
    return [bound for bound in found if callable(bound)]


class ResumableCheckpointCallback(CheckpointCallback):
    """Catalyst's ``CheckpointCallback`` made safe for crashes and resumes:

    - every file (``<mode>.last.pth``, ``<mode>.NNNN.pth``, ``<mode>.best.pth``, ``<mode>.storage.json``) is
      written to a temporary name and renamed, so a kill mid-write leaves the previous file intact; only the main
      process writes;
    - checkpoints are read back with ``torch.load(weights_only=True)``;
    - on resume it restores which epoch was best so far (Catalyst forgets it and would crown the first resumed
      epoch) and the early-stopping counter: each checkpoint carries the monitored score of every epoch so far
      (``valid_history``), replayed into the matching :class:`EarlyStoppingCallback`;
    - each checkpoint also records whether early stopping ends the run at that epoch (``early_stopped``): resuming
      a run that stopped early trains no further epoch, as the uninterrupted run did not;
    - callbacks with state of their own add it to each checkpoint and get it back on resume (``checkpoint_fields``
      / ``restore_checkpoint_fields``: each task's best epoch, callbacks/task_checkpoints.py);
    - an epoch's files are written in the order ``<mode>.NNNN.pth``, ``<mode>.storage.json``, ``<mode>.best.pth``
      and ``<mode>.last.pth`` last: ``last`` commits the epoch. A process killed before it resumes from the epoch
      before and redoes this one; index entries of such an uncommitted epoch are dropped on resume.
    """

    def on_experiment_start(self, runner) -> None:
        if self._resume_runner is not None and not is_inside(self._resume_runner, self.logdir):
            raise CheckpointError(f"checkpoint {self._resume_runner} leads outside {self.logdir} (a symlink?); "
                                  f"a resume reads only the run directory's own files")
        self._history = []
        self._replay_pending = False
        super().on_experiment_start(runner)  # calls self._load, which fills the history on resume
        storage_path = storage_index_path(self.logdir, self.mode)
        if self._resume_runner is None or not os.path.exists(storage_path):
            return
        # Entries of epochs after the resumed one were written by an epoch killed before runner.last.pth committed
        # it: that epoch runs again and adds its entry again.
        self._storage = [Checkpoint(obj=None, logpath=path, metric=metric)
                         for path, metric in read_storage_index(storage_path, self.logdir)
                         if _epoch_of(path) is None or _epoch_of(path) <= runner.epoch_step]

    # -- writing ---------------------------------------------------------------------------------------------
    def _encode(self, runner, obj: Any) -> bytes:
        """The checkpoint as ``torch.save`` bytes, serialised once per epoch for every file that holds it (and in
        memory first, so a pickling error never touches the disk)."""
        if self.mode == "model" and isinstance(obj, torch.nn.Module):
            state = runner.engine.unwrap_model(obj).state_dict()
        elif self.mode == "model":
            state = pack_checkpoint(model=obj)
        else:
            state = pack_checkpoint(**obj)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def _write(self, runner, data: bytes, logpath: str) -> str:
        runner.engine.wait_for_everyone()
        if runner.engine.is_main_process:  # every DDP rank holds the same state; one writer avoids a race
            atomic_write_bytes(logpath, data)
        return logpath

    def _save(self, runner, obj: Any, logprefix: str) -> str:
        return self._write(runner, self._encode(runner, obj), f"{logprefix}.pth")

    def _handle_epoch(self, runner, score: float, copy_best: bool = False) -> None:
        self._history.append(float(score))
        if self.mode == "model":
            obj = runner.model
        else:
            obj = dict(model=runner.model, criterion=runner.criterion, optimizer=runner.optimizer,
                       scheduler=runner.scheduler, epoch_step=runner.epoch_step, batch_step=runner.batch_step,
                       sample_step=runner.sample_step, valid_history=list(self._history),
                       early_stopped=self._stops_early(runner))
            # Which stage of train(stages=...) this epoch belongs to (training/stages.py): plain values.
            obj.update(getattr(runner, "stage_checkpoint_fields", None) or {})
            for fields in _field_callbacks(runner, "checkpoint_fields"):  # e.g. each task's best epoch
                obj.update(fields())
        data = self._encode(runner, obj)
        logpath = self._write(runner, data, checkpoint_path(self.logdir, runner.epoch_step, self.mode))
        self._storage.append(Checkpoint(obj=obj, logpath=logpath, metric=score))
        self._storage = sorted(self._storage, key=lambda x: x.metric, reverse=not self._minimize)
        if len(self._storage) > self.topk:
            dropped = self._storage.pop(-1)
            if runner.engine.is_main_process and os.path.isfile(dropped.logpath):
                try:
                    os.remove(dropped.logpath)
                except OSError:
                    pass
        if runner.engine.is_main_process:
            # Plain json.dumps, as Catalyst does: a NaN score (guard disabled) must not make the save fail.
            # Paths relative to the checkpoint directory: a copied run directory refers to its own files.
            atomic_write_text(storage_index_path(self.logdir, self.mode), json.dumps({
                "topk": self.topk, "loader_key": self.loader_key, "metric_key": self.metric_key,
                "minimize": self._minimize,
                "storage": [{"logpath": os.path.relpath(x.logpath, self.logdir), "metric": x.metric}
                            for x in self._storage]}, indent=2))
        if copy_best:
            runner.engine.wait_for_everyone()
            if runner.engine.is_main_process:
                # The best epoch's own file, not the live model (which holds the last epoch's weights).
                atomic_copy(self._storage[0].logpath, checkpoint_path(self.logdir, "best", self.mode))
        if self.save_last:  # last: it commits the epoch (see the class docstring)
            self._write(runner, data, checkpoint_path(self.logdir, "last", self.mode))

    def _early_stopping(self, runner) -> Optional[EarlyStoppingCallback]:
        """The early-stopping callback that watches what this callback selects on, if there is one."""
        for callback in runner.callbacks.values():
            if (isinstance(callback, EarlyStoppingCallback) and callback.loader_key == self.loader_key
                    and callback.metric_key == self.metric_key):
                return callback
        return None

    def _stops_early(self, runner) -> bool:
        """Whether early stopping ends the run after this epoch: its decision, made from the same scores, before
        it runs (it comes after the checkpoint in the callback order)."""
        callback = self._early_stopping(runner)
        if callback is None:
            return False
        epochs_without_improvement = _replayed(callback, self._history)[1]
        stops_after = getattr(callback, "stops_after", None)  # a callback with a rule of its own (held stopping)
        if stops_after is not None:
            return stops_after(epochs_without_improvement, runner.epoch_metrics.get(callback.loader_key, {}))
        return epochs_without_improvement >= callback.patience

    def on_epoch_end_best(self, runner) -> None:
        score = runner.epoch_metrics[self.loader_key][self.metric_key] if self.loader_key is not None \
            else runner.epoch_metrics[self.metric_key]
        self._handle_epoch(runner=runner, score=score, copy_best=self.save_best)

    # -- reading ---------------------------------------------------------------------------------------------
    def _load(self, runner, resume_logpath: Any = None, resume_model: str = None, resume_runner: str = None):
        import catalyst.callbacks.checkpoint as catalyst_checkpoint  # compat patches unpack_checkpoint there

        unpack = catalyst_checkpoint.unpack_checkpoint
        if resume_logpath is not None:
            runner.engine.wait_for_everyone()
            state = read_checkpoint(resume_logpath)
            if self.mode == "model" and "model_state_dict" not in state:
                runner.engine.unwrap_model(runner.model).load_state_dict(state)
            else:
                unpack(checkpoint=state, model=runner.model)
        if resume_runner is not None:
            runner.engine.wait_for_everyone()
            state = read_checkpoint(resume_runner)
            try:
                unpack(checkpoint=state, model=runner.model, criterion=runner.criterion, optimizer=runner.optimizer,
                       scheduler=runner.scheduler)
                runner.epoch_step = state["epoch_step"]
                runner.batch_step = state["batch_step"]
                runner.sample_step = state["sample_step"]
            except (KeyError, RuntimeError, ValueError) as e:
                detail = " ".join(line.strip() for line in str(e).splitlines()[:3]) or repr(e)
                raise CheckpointError(f"checkpoint {resume_runner} does not fit this run (another model, optimizer "
                                      f"or scheduler?): {detail}") from None
            for restore in _field_callbacks(runner, "restore_checkpoint_fields"):
                restore(state)
            self._history = [float(v) for v in state.get("valid_history", [])]
            self._replay_pending = bool(self._history)
            if state.get("early_stopped") is True:  # the run had ended: no epoch follows (see the docstring)
                runner.need_early_stop = True
        if resume_model is not None:
            runner.engine.wait_for_everyone()
            runner.engine.unwrap_model(runner.model).load_state_dict(read_checkpoint(resume_model))

    def on_epoch_start(self, runner) -> None:
        # Replayed here, not at experiment start: EarlyStoppingCallback (a later callback order) resets its best
        # score in its own on_experiment_start, after ours has run.
        if not self._replay_pending:
            return
        self._replay_pending = False
        callback = self._early_stopping(runner)
        if callback is not None:
            callback.best_score, callback.num_no_improvement_epochs = _replayed(callback, self._history)

    def on_experiment_end(self, runner) -> None:
        # Catalyst prints its "Top models" list unconditionally; a quiet run stays quiet.
        if getattr(runner, "_verbose", True):
            super().on_experiment_end(runner)
        elif self.load_best_on_end:
            self._load(runner=runner, resume_logpath=self._storage[0].logpath)
