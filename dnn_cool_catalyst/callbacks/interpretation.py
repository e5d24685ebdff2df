"""The best and worst samples of each loader pass, per task, in TensorBoard."""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
import torch.distributed as dist
from catalyst.core.callback import Callback, CallbackOrder

from ..interpretation.publishers import Publishers
from ..interpretation.samples import SampleSource
from ..interpretation.selection import LossCollector, Losses
from ..interpretation.tensorboard import open_writer, publish_extremes, select_extremes
from ..parallel.distributed import world
from ..parallel.replicas import REDUCTION_KEY


def _gather(losses: Losses) -> Optional[Losses]:
    """Under torch.distributed every process saw a shard: merge them on rank 0 (once per loader), None
    elsewhere."""
    rank, world_size = world()
    if world_size == 1:
        return losses
    shards = [None] * world_size
    dist.all_gather_object(shards, losses)
    if rank != 0:
        return None
    keys = {key for shard in shards for key in shard}
    return {key: tuple(np.concatenate([s[key][i] for s in shards if key in s]) for i in (0, 1)) for key in keys}


class InterpretationCallback(Callback):
    """Collects per-sample losses with dataset indices on the ``loaders`` it is active for (sequential ones:
    validation) and, at loader end, logs the ``k`` best and worst samples per task and overall to
    ``<logdir>/<loader>/`` (see :func:`~dnn_cool_catalyst.interpretation.publish_extremes` for the tags), at the
    epoch as step. Tasks with no valid sample in the whole loader are skipped.

    ``publishers`` chooses how each input column is shown (images, text, feature values); ``logdir`` defaults to
    ``<runner.run_dir>/tensorboard``. The step only appends device tensors; the host sees them at loader end.
    ``selection`` holds the last loader's picks: ``{task_name | "overall": {"best"|"worst": [(index, row_id,
    loss)]}}``.
    """

    def __init__(self, flow, k: int = 5, loaders: Sequence[str] = ("valid",), logdir: Optional[str] = None,
                 publishers: Optional[Publishers] = None, output_key: str = "outputs"):
        super().__init__(order=CallbackOrder.Metric)
        if int(k) < 1:
            raise ValueError(f"InterpretationCallback: k must be a positive number of samples, got {k!r}")
        self.flow, self.k, self.loaders, self.logdir = flow, int(k), tuple(loaders), logdir
        self.publishers = publishers or Publishers()
        self.output_key = output_key
        self.collector = LossCollector(flow.graph)
        self.selection: Dict[str, dict] = {}
        self._active = False
        self._writers = {}

    def on_loader_start(self, runner) -> None:
        self._active = runner.loader_key in self.loaders
        if self._active and self.logdir is None and getattr(runner, "run_dir", None) is None:
            raise ValueError("InterpretationCallback: pass logdir= (the TensorBoard directory) when the runner has "
                             "no run_dir")
        if self._active:
            self.collector.reset()

    def on_batch_end(self, runner) -> None:
        if not self._active:
            return
        reduction = runner.batch.get(REDUCTION_KEY)
        if self.output_key not in runner.batch and reduction is not None:
            # Balanced DataParallel: the replicas already computed the per-sample losses; no logits were gathered.
            self.collector.add(reduction.per_sample, reduction.per_sample_valid, reduction.index)
        else:
            self.collector.update(runner.batch[self.output_key], runner.batch)

    def on_loader_end(self, runner) -> None:
        if not self._active:
            return
        losses = _gather(self.collector.finish())
        self.collector.reset()
        if losses is None:
            return
        source = SampleSource(runner.loader.dataset)
        self.selection = select_extremes(losses, self.k, source)
        logdir = self.logdir or os.path.join(runner.run_dir, "tensorboard")
        writer = self._writers.get(runner.loader_key)
        if writer is None:
            writer = self._writers[runner.loader_key] = open_writer(logdir, runner.loader_key)
        publish_extremes(writer, self.selection, source, self.publishers.for_columns(source.types),
                         self.flow.task_paths, step=runner.epoch_step)
        writer.flush()

    def on_experiment_end(self, runner) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
