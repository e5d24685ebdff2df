"""Stop training on the first non-finite logits or loss, naming the task and the batch.

Why no per-batch check on the host: ``bool(torch.isfinite(x).all())`` forces a device->host sync every step,
which the training loop must not have. Instead each batch folds its finiteness flags into a small on-device
record of the *first* bad batch (step, task, dataset rows) with ``torch.where``; nothing leaves the device until
the record is read, once at loader end (where Catalyst already syncs to turn loader metrics into floats) or every
``check_every`` batches if asked. On the CPU, where reading a value costs no sync, a finite batch is recognised from
one sum and skips the record. A bad loader therefore raises before its epoch ends, so no checkpoint of the
broken weights is ever written; the message still points at the first batch that went wrong.
"""
from __future__ import annotations

import math

from typing import List, Optional

import torch
from catalyst.core.callback import Callback, CallbackOrder

from ..errors import NonFiniteError  # defined there with every library error; re-exported here
from ..graph.batch import output_logits
from ..parallel.replicas import REDUCTION_KEY

LOSS_SLOT = "the total loss"
#: Where a compiled training step (training/compiled_step.py) leaves the sum of every logit plus the loss, computed
#: inside its graph: NaN or inf when a logit or the loss is (or, harmlessly, when finite values add up past 3e38).
STEP_LOGITS_SUM_KEY = "logits_sum"


class NanGuardCallback(Callback):
    """Checks every task's logits and the batch loss (``runner.batch_metrics[loss_key]``) on every loader.

    ``check_every=None`` reads the record at loader end only (one sync per loader); ``check_every=N`` also every N
    batches, stopping sooner at the cost of one sync per N batches.
    """

    #: On the CPU, reading a value waits for nothing: each batch is checked with one host read and only a bad one
    #: (nearly none) goes into the record. False keeps the device path (the tests use it as a stand-in device).
    read_on_cpu = True

    def __init__(self, flow, output_key: str = "outputs", loss_key: str = "loss", check_every: Optional[int] = None):
        # After the criterion has put the loss in batch_metrics, before backward and the optimizer step.
        super().__init__(order=CallbackOrder.MetricAggregation)
        if check_every is not None and check_every < 1:
            raise ValueError(f"check_every must be a positive number of batches or None, got {check_every!r}")
        self.flow, self.output_key, self.loss_key, self.check_every = flow, output_key, loss_key, check_every
        self.slots: List[str] = list(flow.task_paths.values()) + [LOSS_SLOT]
        self._reset()

    def _reset(self) -> None:
        self._step = self._slot = self._rows = None

    def on_loader_start(self, runner) -> None:
        self._reset()

    def on_batch_end(self, runner) -> None:
        index = runner.batch["index"]
        n = int(index.shape[0])  # a shape, not a value: no sync
        outputs = runner.batch.get(self.output_key)
        reduction = runner.batch.get(REDUCTION_KEY)
        loss = runner.batch_metrics.get(self.loss_key)
        if outputs is None and reduction is None and not isinstance(loss, torch.Tensor):
            return
        sample_bad = self._sample_flags(outputs, reduction, loss, n, runner.batch.get(STEP_LOGITS_SUM_KEY))
        if sample_bad is not None:
            self._record(runner, index, n, sample_bad, loss)
        if self.check_every is not None and runner.loader_batch_step % self.check_every == 0:
            self._raise_if_bad(runner)

    def _sample_flags(self, outputs, reduction, loss, n: int, logits_sum=None) -> Optional[torch.Tensor]:
        """Per sample and task: are its logits NaN or inf? ``(N, T)`` bool on the device; None when the batch is
        known to be finite without recording it (CPU tensors, see ``read_on_cpu``; ``logits_sum``: the sum below,
        from the compiled step)."""
        if outputs is None and reduction is not None:
            # Balanced DataParallel: no gathered logits, but each replica flagged its tasks; the rows of the
            # whole batch are the suspects.
            flags = torch.stack([reduction.nonfinite[name] for name in self.flow.tasks])
            return flags[None, :].expand(n, -1)
        if outputs is None:  # only the loss is visible; it stands for every task
            return torch.zeros(n, len(self.slots) - 1, dtype=torch.bool, device=loss.device)
        # A sum is NaN or inf when one of its terms is (or, harmlessly, when finite logits add up past 3e38):
        # one reduction per task instead of a finiteness test per element and task.
        if self.read_on_cpu and logits_sum is not None and logits_sum.device.type == "cpu" \
                and math.isfinite(float(logits_sum)):
            return None
        with torch.no_grad():  # no autograd bookkeeping for the views and the concatenation
            flat = [v.reshape(n, -1) for v in output_logits(self.flow.graph, outputs, n).values()]
            if self.read_on_cpu and flat[0].device.type == "cpu":
                total = float(torch.cat(flat, 1).sum(dtype=torch.float32))
                if math.isfinite(total + float(loss.sum()) if isinstance(loss, torch.Tensor) else total):
                    return None
            return ~torch.isfinite(torch.stack([v.sum(1, dtype=torch.float32) for v in flat], dim=1))

    def _record(self, runner, index, n: int, sample_bad: torch.Tensor, loss) -> None:
        """Fold this batch's flags into the on-device record of the first bad batch (no host read)."""
        device = sample_bad.device
        loss_bad = (~torch.isfinite(loss).all()).to(device) if isinstance(loss, torch.Tensor) \
            else torch.zeros((), dtype=torch.bool, device=device)
        bad = torch.cat([sample_bad.any(0), loss_bad[None]])
        if self._step is None:
            self._step = torch.full((), -1, dtype=torch.long, device=device)
            self._slot = torch.full((), -1, dtype=torch.long, device=device)
            self._rows = torch.full((max(runner.loader_batch_size, n),), -1, dtype=torch.long, device=device)
        first = (self._step < 0) & bad.any()
        self._slot = torch.where(first, torch.argmax(bad.to(torch.uint8)), self._slot)
        self._step = torch.where(first, torch.full_like(self._step, runner.loader_batch_step), self._step)
        # The offending samples; when only the loss is bad, every sample of the batch is a suspect.
        suspects = sample_bad.any(1) | (loss_bad & ~sample_bad.any())
        rows = torch.full_like(self._rows, -1)
        rows[:n] = torch.where(suspects, index.to(device), -1)
        self._rows = torch.where(first, rows, self._rows)

    def on_loader_end(self, runner) -> None:
        self._raise_if_bad(runner)

    def _raise_if_bad(self, runner) -> None:
        if self._step is None:
            return
        step = int(self._step)  # the only host read: at loader end or every check_every batches
        if step < 0:
            return
        slot = self.slots[int(self._slot)]
        rows = [int(r) for r in self._rows.cpu() if r >= 0]
        what = (f"{LOSS_SLOT} is NaN or inf while every task's logits are finite (a loss weight or a custom task's "
                f"loss?)" if slot == LOSS_SLOT else f"task '{slot}' produced NaN or inf logits")
        raise NonFiniteError(
            f"{what} in loader '{runner.loader_key}', epoch {runner.epoch_step}, batch {step} of "
            f"{runner.loader_batch_len}, samples at dataset positions {_short(rows)}{_row_labels(runner, rows)}; "
            f"training stopped before this epoch was checkpointed. Check those inputs, lower the learning rate or "
            f"clip gradients.")


def _short(items, limit: int = 10) -> str:
    return str(items) if len(items) <= limit else str(items[:limit])[:-1] + f", ... ({len(items) - limit} more)]"


def _row_labels(runner, rows) -> str:
    # Positions index the converted data; the DataFrame's own index labels are what a user can look up.
    row_id = getattr(getattr(runner, "dataset", None), "row_id", None)
    if row_id is None:
        return ""
    try:
        return f" (DataFrame index {_short([row_id(r) for r in rows])})"
    except (IndexError, KeyError, TypeError):
        return ""
