"""Each task's best weights on disk (``train(task_selection=True)``): the epoch where the task's own validation loss
was lowest, so inference can run every task at its best (:class:`~dnn_cool_catalyst.graph.selected.TaskSelectedModel`).

Files in the run's checkpoint folder:

- ``runner.task.NNNN.pth``: the model's ``state_dict`` after epoch NNNN, written when NNNN is some task's best so
  far;
- ``runner.tasks.json``: ``{"tasks": {task name: file}, "losses": {task name: validation loss}}``.

Crash safety, with the checkpoint callback's order of writes (``runner.last.pth`` commits an epoch): the per-task
bests are part of every epoch checkpoint (:meth:`TaskCheckpointCallback.checkpoint_fields`), so a resumed run goes
on from the same bests; ``runner.tasks.json`` is rewritten only once an epoch is committed (at the next epoch's
start and at the end of training), and only then are files no task uses any more deleted. Every file that
``runner.tasks.json`` names exists. The runner removes an earlier selection (:func:`remove_task_selection`) before
any training that does not resume one: its weights are not that run's.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
from typing import Dict, Optional, Tuple

import torch
from catalyst.core import Callback, CallbackOrder

from ..atomic import atomic_write_bytes, atomic_write_text
from ..run.layout import TASKS_FILE, task_file, task_selection_path, task_weights_path  # noqa: F401 (TASKS_FILE re-exported)

_TASK_FILE = re.compile(r"runner\.task\.\d{4,}\.pth")  # fullmatch: what task_file names


def read_task_selection(checkpoint_dir: str) -> Optional[Dict[str, str]]:
    """``{task name: path of its weights}`` from ``runner.tasks.json``, or None where there is none. A file that
    names something other than this folder's own task weights is refused (ValueError)."""
    path = task_selection_path(checkpoint_dir)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tasks = json.load(f).get("tasks")
    if not isinstance(tasks, dict) or not all(isinstance(v, str) and _TASK_FILE.fullmatch(v) for v in tasks.values()):
        raise ValueError(f"{path} does not name this folder's task weights (runner.task.NNNN.pth per task)")
    return {name: task_weights_path(checkpoint_dir, file) for name, file in tasks.items()}


def remove_task_selection(checkpoint_dir: str) -> None:
    """Delete ``runner.tasks.json`` (first: it must never name a missing file) and every kept task weight file."""
    if not os.path.isdir(checkpoint_dir):
        return
    json_path = task_selection_path(checkpoint_dir)
    if os.path.exists(json_path):
        os.remove(json_path)
    for name in os.listdir(checkpoint_dir):
        if _TASK_FILE.fullmatch(name):
            os.remove(task_weights_path(checkpoint_dir, name))


class TaskCheckpointCallback(Callback):
    """Keeps the weights of each task's best validation epoch (lowest ``loss/<task path>`` on ``loader_key``).

    Listed before the checkpoint callback (same order): the checkpoint it writes at the epoch's end carries this
    callback's bests, and a resumed run gets them back through :meth:`restore_checkpoint_fields`.
    """

    def __init__(self, flow, logdir: str, loader_key: str = "valid"):
        super().__init__(order=CallbackOrder.Checkpoint)
        self.paths = dict(flow.task_paths)  # task name -> path (the key of its loss)
        self.logdir, self.loader_key = logdir, loader_key
        self.best: Dict[str, Tuple[float, int]] = {}  # task name -> (validation loss, epoch)

    # -- state carried by the epoch checkpoints (callbacks/checkpoint.py asks for it) -----------------------------
    def checkpoint_fields(self) -> dict:
        return {"task_selection": {name: [loss, epoch] for name, (loss, epoch) in self.best.items()}}

    def restore_checkpoint_fields(self, state: dict) -> None:
        saved = state.get("task_selection") or {}
        self.best = {name: (float(value[0]), int(value[1])) for name, value in saved.items() if name in self.paths}

    # -- lifecycle --------------------------------------------------------------------------------------------
    def on_epoch_start(self, runner) -> None:
        self._publish(runner)  # the previous epoch is committed by now

    def on_epoch_end(self, runner) -> None:
        metrics = runner.epoch_metrics.get(self.loader_key, {})
        epoch = int(runner.epoch_step)
        improved = False
        for name, path in self.paths.items():
            loss = metrics.get(f"loss/{path}")
            if loss is None or not math.isfinite(float(loss)):
                continue  # no labelled validation sample for the task: it keeps the run's best checkpoint
            if name not in self.best or float(loss) < self.best[name][0]:
                self.best[name] = (float(loss), epoch)
                improved = True
        if improved and runner.engine.is_main_process:
            buffer = io.BytesIO()
            torch.save(runner.engine.unwrap_model(runner.model).state_dict(), buffer)
            atomic_write_bytes(task_weights_path(self.logdir, task_file(epoch)), buffer.getvalue())

    def on_experiment_end(self, runner) -> None:
        self._publish(runner)

    def _publish(self, runner) -> None:
        """Write ``runner.tasks.json`` for the committed bests, then delete the weights no task uses."""
        if not runner.engine.is_main_process or not self.best:
            return
        files = {name: task_file(epoch) for name, (_, epoch) in self.best.items()}
        atomic_write_text(task_selection_path(self.logdir), json.dumps(
            {"tasks": files, "losses": {name: loss for name, (loss, _) in self.best.items()}}, indent=2))
        used = set(files.values())
        for name in os.listdir(self.logdir):
            if _TASK_FILE.fullmatch(name) and name not in used:
                os.remove(task_weights_path(self.logdir, name))
