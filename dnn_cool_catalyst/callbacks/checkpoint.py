"""Best + last checkpoints that survive a resume."""
from __future__ import annotations

import json
import os

from catalyst.callbacks.checkpoint import Checkpoint, CheckpointCallback


class ResumableCheckpointCallback(CheckpointCallback):
    """Catalyst's ``CheckpointCallback`` in ``runner`` mode that, when resuming, also restores which epoch was
    best so far (Catalyst forgets it and would crown the first resumed epoch). Resume state is read with
    ``torch.load(weights_only=True)``: our checkpoints hold only tensors and numbers."""

    def on_experiment_start(self, runner) -> None:
        super().on_experiment_start(runner)
        storage_path = os.path.join(self.logdir, f"{self.mode}.storage.json")
        if self._resume_runner is None or not os.path.exists(storage_path):
            return
        with open(storage_path, encoding="utf-8") as f:
            saved = json.load(f)
        self._storage = [Checkpoint(obj=None, logpath=item["logpath"], metric=item["metric"])
                         for item in saved.get("storage", []) if os.path.exists(item["logpath"])]
