"""``train(compile=...)``: the model, the flow's heads and the masked loss compiled as one program.

What is compiled is one function of a batch: the model's forward (which holds the flow module and its heads), the
ground-truth masks (label availability ∧ the conditions read from the labels), every task's masked mean loss and
their weighted sum (fixed or learned weights). ``torch.compile`` traces it into one graph and AOTAutograd derives
the backward graph from it, so ``loss.backward()`` (Catalyst's BackwardCallback) runs compiled code too.

The step leaves in the batch exactly what the eager path's callbacks leave there, so nothing downstream changes:
``outputs`` (the model's output), the ground-truth masks (read by the metrics), the per-task losses, valid counts
and the total (read by :class:`~dnn_cool_catalyst.callbacks.FlowCriterionCallback` instead of computing them), and
on validation passes the element losses the best/worst samples read. Two small tensors spare the callbacks their
per-batch work outside the graph: the criterion's row of loader sums and the NaN guard's sum of every logit.

Shapes: every tensor of the batch is marked dynamic in its first dimension (``maybe_mark_dynamic``), so the last,
shorter batch of a loader reuses the graph instead of compiling another one. Training (grad, ``model.train()``) and
validation (no grad, ``model.eval()``) are two graphs; a batch of one sample (sizes 0 and 1 are always
specialised) or a second run with another model adds one each. Nothing in the step reads a tensor's value on the
host (no ``.item()``, no Python branch on a tensor): the flow's conditions are ``torch.where`` masks.

Failures: if the step cannot be compiled (an operation the compiler does not support, no C++ compiler for the CPU
backend...), the same batch is run eagerly; when that succeeds the run goes on eagerly with one warning naming the
reason, and a real error of the model is raised as eager mode would raise it. A failure while compiling the
backward graph (at the first ``backward()``) is not caught here.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from ..callbacks.criterion import STEP_LOSS_ROW_KEY, STEP_TERMS_KEY
from ..callbacks.nan_guard import STEP_LOGITS_SUM_KEY
from ..graph.batch import ELEMENT_LOSSES_KEY, GROUND_TRUTH_MASKS_KEY, ground_truth_masks, output_logits
from ..measures.losses import FlowLoss
from ..messages import warn_user
from ..parallel import autocast
from ..errors import RunnerError

#: What ``compile`` accepts besides ``True`` (= ``"default"``) and ``False``: ``torch.compile``'s modes.
#: ``"reduce-overhead"`` adds CUDA graphs on a GPU; ``"max-autotune"`` searches kernels (minutes to compile).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: ``torch.compile``'s backend. ``"inductor"`` generates fused kernels (C++ on the CPU); the tests switch to
#: ``"aot_eager"`` (the same graphs, forward and backward, run by eager kernels: no code generation, seconds).
BACKEND = "inductor"


def check_compile(value) -> Optional[str]:
    """The ``torch.compile`` mode ``compile=value`` asks for, ``None`` for no compilation.

    >>> check_compile(True), check_compile(False), check_compile("max-autotune")
    ('default', None, 'max-autotune')
    >>> check_compile("fast")
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.RunnerError: compile must be True, False or one of torch.compile's modes \
('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'), got 'fast'
    """
    if value is False or value is None:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise RunnerError(f"compile must be True, False or one of torch.compile's modes {COMPILE_MODES}, got {value!r}")


def eager_reason(model, loss_fn, balanced: bool, world: int) -> Optional[str]:
    """Why this run's step cannot be compiled as one program (it then runs eagerly), or None."""
    if world > 1 or isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return ("DDP trains each process's slice eagerly (the loss is combined with the other processes' label "
                "counts outside the step)")
    if balanced or isinstance(model, torch.nn.DataParallel):
        return "nn.DataParallel replicas run in threads, which torch.compile does not trace"
    if not isinstance(loss_fn, FlowLoss):
        return f"the criterion is a {type(loss_fn).__name__}, not the flow's FlowLoss"
    return None


def _mark_batch_dynamic(tree) -> None:
    """Mark the first dimension of every tensor in ``tree`` as dynamic (the batch size: one graph for full and
    last partial batches). "maybe": a model that needs a fixed size gets a static graph instead of an error."""
    if isinstance(tree, torch.Tensor):
        if tree.dim() > 0:
            torch._dynamo.maybe_mark_dynamic(tree, 0)
    elif isinstance(tree, dict):
        for value in tree.values():
            _mark_batch_dynamic(value)


def flow_step(model, loss_fn: FlowLoss, device_type: str, dtype, inputs, targets, available):
    """One step: ``(outputs, masks, per_task, counts, total, elements, loss_row, logits_sum)``; what
    ``torch.compile`` traces.

    ``loss_row`` and ``logits_sum`` are what the criterion and the NaN guard would otherwise compute per batch
    outside the step, with a dozen small operations and host reads each (measured: about a third of the per-batch
    work left outside the compiled step); inside the graph they are fused into its last kernels.

    The model and the loss are arguments, not attributes of a step object: dynamo's guards then check their
    structure, not their identity, so every fold of ``cross_validate`` (a new model of the same architecture)
    reuses the graphs the first fold compiled instead of compiling them again (and instead of running into
    dynamo's limit of 8 recompilations per function, past which it would fall back to eager mode)."""
    with autocast(device_type, dtype):  # the model's forward only, as in the eager step
        outputs = model(inputs)
    labels = {"targets": targets, "available": available}
    masks = ground_truth_masks(loss_fn.graph, labels)
    # Element losses only on validation passes (for the best/worst samples), as the eager criterion does.
    elements = None if torch.is_grad_enabled() else {}
    per_task, counts = loss_fn.terms(outputs, labels, masks=masks, elements=elements)
    total = loss_fn.combine(per_task, counts)
    names = list(per_task)
    n = next(iter(available.values())).shape[0]
    # The criterion's row, in its order and float64 (the values it builds from the same float32 numbers).
    loss_row = torch.stack([per_task[k].detach().to(torch.float64) for k in names]
                           + [counts[k].to(torch.float64) for k in names]
                           + [(total.detach() * n).to(torch.float64)])
    # The NaN guard's test: NaN or inf iff some logit (or the loss) is, as its own sum outside the step.
    logits = output_logits(loss_fn.graph, outputs, n).values()
    logits_sum = sum(v.detach().sum(dtype=torch.float32) for v in logits) + total.detach()
    return outputs, masks, per_task, counts, total, elements, loss_row, logits_sum


class CompiledStep:
    """``step(batch)`` → the batch entries the training callbacks read (see the module docstring).

    ``model`` and ``loss_fn`` are the runner's; ``device_type``/``dtype`` its autocast (applied to the model's
    forward only, as in the eager step); ``mode`` a ``torch.compile`` mode (:func:`check_compile`)."""

    def __init__(self, model: torch.nn.Module, loss_fn: FlowLoss, mode: str, device_type: str = "cpu",
                 dtype: Optional[torch.dtype] = None, backend: Optional[str] = None):
        self.model, self.loss_fn, self.mode = model, loss_fn, mode
        self.device_type, self.dtype = device_type, dtype
        self.backend = backend or BACKEND
        # "default" is spelled as no mode: some backends (aot_eager) refuse any mode argument.
        options = {} if mode == "default" else {"mode": mode}
        self._compiled = torch.compile(flow_step, backend=self.backend, **options)
        self.eager_since: Optional[str] = None  # why the step fell back to eager mode, once it has

    def _step(self, inputs, targets, available):
        """The step in eager mode."""
        return flow_step(self.model, self.loss_fn, self.device_type, self.dtype, inputs, targets, available)

    def __call__(self, batch: dict) -> dict:
        """``batch`` with ``outputs``, the masks, the loss terms and (validation) the element losses added."""
        inputs, targets, available = batch["inputs"], batch["targets"], batch["available"]
        if self.eager_since is None:
            for tree in (inputs, targets, available):
                _mark_batch_dynamic(tree)
            try:
                result = self._compiled(self.model, self.loss_fn, self.device_type, self.dtype, inputs, targets,
                                        available)
            except Exception as error:  # noqa: BLE001 - any compiler failure; a model error re-raises below
                result = self._step(inputs, targets, available)  # the model's own errors surface here, as eager
                self.eager_since = _first_line(error)
                asked = True if self.mode == "default" else self.mode
                warn_user(f"train(compile={asked!r}): the training step could not be compiled ({self.eager_since}); "
                          f"this run goes on in eager mode")
        else:
            result = self._step(inputs, targets, available)
        outputs, masks, per_task, counts, total, elements, loss_row, logits_sum = result
        graph = self.loss_fn.graph
        extra = {"outputs": outputs, GROUND_TRUTH_MASKS_KEY: (graph, masks),
                 STEP_TERMS_KEY: (self.loss_fn, per_task, counts, total), STEP_LOSS_ROW_KEY: loss_row,
                 STEP_LOGITS_SUM_KEY: logits_sum}
        if elements is not None:
            extra[ELEMENT_LOSSES_KEY] = (graph, elements)
        return {**batch, **extra}


def _first_line(error: BaseException) -> str:
    """The error's type and first line; for a wrapper (dynamo's BackendCompilerFailed and the like) the innermost
    error's, which is the one that says why."""
    seen = {id(error)}
    while True:
        inner = getattr(error, "inner_exception", None) or error.__cause__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def step_for(runner) -> Optional[CompiledStep]:
    """The compiled step of ``runner``'s current run (``runner._compile_mode`` set by ``train``), built at its first
    batch (the engine has placed the model then) and kept while the model, loss and precision stay; None: eager,
    with one warning when ``compile`` was asked for but this run cannot honour it."""
    mode = getattr(runner, "_compile_mode", None)
    if mode is None:
        return None
    from ..parallel import autocast_dtype
    from ..parallel.distributed import world_size

    model, loss_fn = runner.model, runner.criterion
    device_type, dtype = runner.engine.device.type, autocast_dtype(runner.engine)
    cached = getattr(runner, "_compiled", None)
    if cached is not None and cached[0] is model and cached[1] is loss_fn and cached[2] == (mode, device_type, dtype):
        return cached[3]
    reason = eager_reason(model, loss_fn, runner._balanced(), world_size())
    if reason is not None:
        warn_user(f"train(compile={mode!r}): {reason}; this run trains in eager mode")
        step = None
    else:
        step = CompiledStep(model, loss_fn, mode, device_type, dtype)
    runner._compiled = (model, loss_fn, (mode, device_type, dtype), step)
    return step


@contextlib.contextmanager
def compiling(runner, mode: Optional[str]):
    """``runner``'s handle_batch compiles its step in ``mode`` (None: eager) for the duration of one ``train``."""
    runner._compile_mode = mode
    try:
        yield
    finally:
        runner._compile_mode = None
