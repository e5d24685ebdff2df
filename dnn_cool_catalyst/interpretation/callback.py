"""The best and worst samples of each loader pass, per task, in TensorBoard."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from catalyst.core.callback import Callback, CallbackOrder

from ..parallel.distributed import world
from ..parallel.precision import autocast, autocast_dtype
from ..parallel.replicas import REDUCTION_KEY
from .publishers import Publishers
from .sample_views import sample_views
from .samples import SampleSource
from .selection import LossCollector, Losses
from .tensorboard import losses_by_position, open_writer, picked_positions, publish_extremes, select_extremes


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


def _to(value, device):
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    return value


class InterpretationCallback(Callback):
    """Collects per-sample losses with dataset indices on the ``loaders`` it is active for (sequential ones:
    validation) and logs the ``k`` best and worst samples per task and overall to ``<logdir>/<loader>/`` (see
    :func:`~dnn_cool_catalyst.interpretation.publish_extremes` for the tags: one group per task), at the epoch as
    step. Tasks with no valid sample in the whole loader are skipped.

    When: ``every=None`` (default) publishes the epochs where the validation ``metric_key`` (a loader metric,
    e.g. ``"loss"``) improved on the best so far (``minimize`` says which way), plus the last epoch; ``every=n``
    publishes every n-th epoch plus the last. Frames are most of a run's TensorBoard size, so publishing every
    epoch would be costly; for the same reason only the ``frame_kinds`` (default: the worst samples) get images,
    the best ones a table (``runner.infer()`` logs both kinds as images).

    ``publishers`` chooses how each input column is shown (images, text, feature values) and which box overlays
    are drawn; ``logdir`` defaults to the runner's ``run_layout.tensorboard_root``. The step only appends device tensors;
    the host sees them at loader end, when the picked samples also go through the model once more for their
    targets and predictions (captions). ``selection`` holds the last loader's picks: ``{task_name | "overall":
    {"best"|"worst": [(index, row_id, loss)]}}``; ``published`` the epochs written.
    """

    def __init__(self, flow, k: int = 5, loaders: Sequence[str] = ("valid",), logdir: Optional[str] = None,
                 publishers: Optional[Publishers] = None, output_key: str = "outputs", every: Optional[int] = None,
                 metric_key: str = "loss", minimize: bool = True, frame_kinds: Sequence[str] = ("worst",)):
        super().__init__(order=CallbackOrder.Metric)
        if int(k) < 1:
            raise ValueError(f"InterpretationCallback: k must be a positive number of samples, got {k!r}")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"InterpretationCallback: every must be None (when the validation metric improves) "
                             f"or a positive number of epochs, got {every!r}")
        self.flow, self.k, self.loaders, self.logdir = flow, int(k), tuple(loaders), logdir
        self.publishers = publishers or Publishers()
        self.output_key = output_key
        self.every, self.metric_key, self.minimize = every, metric_key, bool(minimize)
        self.frame_kinds = tuple(frame_kinds)
        self.collector = LossCollector(flow.graph)
        self.selection: Dict[str, dict] = {}
        self.published: list = []
        self._active = False
        self._writers = {}
        self._pending = {}  # loader -> (epoch, selection, views) not written yet
        self._best = None

    def on_experiment_start(self, runner) -> None:
        self._pending, self._best, self.published = {}, None, []

    def on_loader_start(self, runner) -> None:
        self._active = runner.loader_key in self.loaders
        if self._active and self.logdir is None and getattr(runner, "run_layout", None) is None:
            raise ValueError("InterpretationCallback: pass logdir= (the TensorBoard directory) when the runner has "
                             "no run directory (run_layout)")
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
        views = self._views(runner, source, losses)
        # Kept until the epoch ends: whether this epoch is published depends on its validation metric.
        self._pending[runner.loader_key] = (runner.epoch_step, self.selection, views, source)

    def _views(self, runner, source: SampleSource, losses) -> dict:
        """Targets and predictions of the picked samples: one forward pass of just those (eval mode, no grad, the
        engine's precision: the predictions validation saw)."""
        positions = picked_positions(self.selection)
        if not positions:
            return {}
        model = getattr(runner.model, "module", runner.model)  # a DDP wrapper would wait for the other processes
        device = next(iter(model.parameters()), torch.zeros(0)).device
        batch = source.batch(positions)
        was_training = model.training
        model.eval()
        try:
            engine = getattr(runner, "engine", None)
            with torch.no_grad(), autocast(device.type, autocast_dtype(engine) if engine is not None else None):
                outputs = model(_to(batch["inputs"], device))
        finally:
            model.train(was_training)
        views = sample_views(self.flow.graph, outputs, batch["targets"], batch["available"], positions)
        for position, task_losses in losses_by_position(losses, positions).items():
            views[position].losses = task_losses
        return views

    def _due(self, runner) -> bool:
        if self.every is not None:
            return runner.epoch_step % self.every == 0
        metrics = runner.epoch_metrics.get(self.loaders[0], {}) if runner.epoch_metrics else {}
        if self.metric_key not in metrics:
            raise ValueError(f"InterpretationCallback: validation metric '{self.metric_key}' was not logged by "
                             f"loader '{self.loaders[0]}' (it has {sorted(metrics)}); pass metric_key= one of them "
                             f"or every=<epochs>")
        value = float(metrics[self.metric_key])
        improved = self._best is None or (value < self._best if self.minimize else value > self._best)
        if improved:
            self._best = value
        return improved

    def on_epoch_end(self, runner) -> None:
        if self._pending and self._due(runner):
            self._publish(runner)

    def _publish(self, runner) -> None:
        logdir = self.logdir or runner.run_layout.tensorboard_root
        for loader, (epoch, selection, views, source) in self._pending.items():
            writer = self._writers.get(loader)
            if writer is None:
                writer = self._writers[loader] = open_writer(logdir, loader)
            publish_extremes(writer, selection, source, self.publishers.for_columns(source.types),
                             self.flow.task_paths, step=epoch, views=views, boxes=self.publishers.boxes,
                             frame_kinds=self.frame_kinds)
            writer.flush()
            if epoch not in self.published:
                self.published.append(epoch)
        self._pending = {}

    def on_experiment_end(self, runner) -> None:
        if self._pending:  # the last epoch (also when early stopping ended the run) is always shown
            self._publish(runner)
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
