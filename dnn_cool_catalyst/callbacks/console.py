"""What ``runner.train`` shows on the console: progress bars and one compact summary table per epoch.

``verbose="auto"`` (the default) shows them when standard output is a terminal and nothing otherwise (tests, CI,
logs redirected to a file); ``True``/``False`` force either way.
"""
from __future__ import annotations

import sys
import time

from catalyst.callbacks.misc import TqdmCallback
from catalyst.core.callback import Callback, CallbackOrder

from ..console_summary import format_epoch_summary, headline_metrics, loader_metrics
from ..errors import RunnerError


def resolve_verbose(verbose) -> bool:
    """``"auto"`` -> whether ``sys.stdout`` is a terminal; ``True``/``False`` as given.

    >>> resolve_verbose(True), resolve_verbose(False)
    (True, False)
    """
    if verbose == "auto":
        isatty = getattr(sys.stdout, "isatty", None)
        return bool(isatty()) if callable(isatty) else False
    if isinstance(verbose, bool):
        return verbose
    raise RunnerError(f"verbose must be True, False or 'auto' (progress on a terminal only), got {verbose!r}")


class ProgressBarCallback(TqdmCallback):
    """Catalyst's progress bar, reading the batch metrics without their autograd graph.

    Catalyst's own bar calls ``float()`` on the batch loss, which still requires grad (the backward callback
    needs it), and torch warns "Converting a tensor with requires_grad=True to a scalar" on every verbose run.
    """

    def on_batch_end(self, runner) -> None:
        if runner.engine.process_index > 0:
            return
        values = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in runner.batch_metrics.items()}
        self.tqdm.set_postfix(**{k: f"{v:.4g}" for k, v in sorted(values.items())})
        self.tqdm.update()


class EpochSummaryCallback(Callback):
    """Prints :func:`~dnn_cool_catalyst.console_summary.format_epoch_summary` at each epoch end (main process).

    Order ``External``, so every metric, the model selection score and the checkpoint are done; listed after
    them it is the last thing an epoch does.
    """

    def __init__(self, flow, stream=None):
        super().__init__(order=CallbackOrder.External)
        self.tasks = headline_metrics(flow)
        self.stream = stream
        self._started = None

    def on_epoch_start(self, runner) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, runner) -> None:
        if runner.engine.process_index > 0:
            return
        elapsed = time.perf_counter() - self._started if self._started is not None else None
        note = f"({elapsed:.1f} s)" if elapsed is not None else ""
        text = format_epoch_summary(runner.epoch_step, runner.num_epochs, loader_metrics(runner.epoch_metrics),
                                    self.tasks, note=note)
        print(text, file=self.stream or sys.stdout, flush=True)
