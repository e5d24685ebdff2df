"""Tracing the deployable module and writing it as a ``torch.export`` program (``.pt2``) or an ONNX graph.

Both go through ``torch.export`` (non-strict: the Python of the model and of the flow runs as written, on fake
tensors), with the batch dimension dynamic. A failure is reported with the innermost submodule that was running
when it happened, so the user knows which layer to change.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Dict, Iterator, List

import torch
from torch import nn

from ..atomic import current_umask
from .errors import ExportError
from .module import DeployableModule, FlatOutputs

FORMATS = ("torch", "onnx")
EXTENSIONS = {"torch": ".pt2", "onnx": ".onnx"}
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


@contextlib.contextmanager
def module_trail(root: nn.Module) -> Iterator[List[str]]:
    """Yields the list of qualified names of the submodules whose forward is running (innermost last); while an
    exception propagates the list keeps the modules it left, so it names where tracing failed."""
    trail: List[str] = []
    names = {id(module): name or type(root).__name__ for name, module in root.named_modules()}
    names[id(root)] = type(root).__name__
    failed = [False]

    def enter(module, args):
        if not failed[0]:
            trail.append(names.get(id(module), type(module).__name__))

    def leave(module, args, output):
        if not failed[0] and trail:
            trail.pop()

    handles = [m.register_forward_pre_hook(enter) for m in root.modules()]
    handles += [m.register_forward_hook(leave) for m in root.modules()]
    # A module that raises never reaches its forward hook; after the first error the trail is frozen.
    try:
        yield trail
    except BaseException:
        failed[0] = True
        raise
    finally:
        for handle in handles:
            handle.remove()


def _failure(fmt: str, trail: List[str], error: BaseException, module: nn.Module) -> ExportError:
    root = type(module).__name__
    if not trail:  # the model returned: the failure is in a task's decode / condition, or before the model
        where = "outside the model's modules (in the input preprocessing, a task's decode or condition)"
    elif trail[-1] == root:
        where = f"in the model's own forward ({root})"
    else:
        try:
            kind = type(module.get_submodule(trail[-1])).__name__
        except AttributeError:
            kind = "?"
        where = f"in submodule '{trail[-1]}' ({kind})"
    summary = " ".join(str(error).split())[:400]
    if fmt == "onnx" and type(error).__name__ != "TorchExportError" and not trail:
        # torch.export traced it (step 1 of torch's ONNX exporter); the ONNX translation failed.
        return ExportError(f"cannot convert the model to ONNX: {type(error).__name__}: {summary}. An operator may "
                           f"have no ONNX translation; format='torch' exports the same model (it traces)")
    return ExportError(f"cannot export the model to format={fmt!r}: torch.export could not trace it {where}: "
                       f"{type(error).__name__}: {summary}. Both formats need a model torch.export can trace: no "
                       f"Python branching on tensor values (use torch.where / torch.cond), no .item() / .tolist() / "
                       f"numpy on tensors")


def _dynamic_batch(columns: List[str]) -> dict:
    """Dynamic shapes of the input columns: one batch dimension shared by all, any size from 1."""
    batch = torch.export.Dim("batch", min=1)
    return {column: {0: batch} for column in columns}


def trace_program(module: DeployableModule, example: Dict[str, torch.Tensor]) -> "torch.export.ExportedProgram":
    """``torch.export`` of ``module`` on ``example`` with a dynamic batch dimension."""
    shapes = _dynamic_batch(list(example))
    trail_list: List[str] = []
    try:
        with module_trail(module.model) as trail_list, torch.no_grad():
            return torch.export.export(module, (example,), dynamic_shapes={"inputs": shapes}, strict=False)
    except ExportError:
        raise
    except Exception as e:  # torch raises many types here (UserError, GuardOnDataDependentSymNode, TypeError...)
        raise _failure("torch", trail_list, e, module.model) from e
    finally:
        _reset_decoders(module)


def _reset_decoders(module: DeployableModule) -> None:
    """Tasks may cache tensors built from their decoding parameters (multilabel thresholds); ones made while
    tracing are fake tensors, so they are rebuilt from the parameters before eager use."""
    for task in module.graph.tasks.values():
        task.set_decoder_params(task.get_decoder_params())


def _temporary(path: str) -> str:
    """An empty hidden file beside ``path`` with its extension (torch.export.save insists on ``.pt2``)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=f".tmp{os.path.splitext(path)[1]}")
    os.close(fd)
    return tmp


def _publish(tmp: str, path: str) -> None:
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


def write_torch(module: DeployableModule, example: Dict[str, torch.Tensor], path: str) -> None:
    """Trace and save with ``torch.export.save``; the file appears complete or not at all."""
    program = trace_program(module, example)
    # torch.export keeps the batch it traced with and saves it: real training rows would ship inside the file.
    program.example_inputs = None
    tmp = _temporary(path)
    try:
        torch.export.save(program, tmp)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_onnx_available() -> None:
    """Raise :class:`ExportError` naming the missing packages of the ``onnx`` extra."""
    import importlib.util

    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"format='onnx' needs the package(s) {missing}: pip install 'dnn_cool_catalyst[onnx]' "
                          f"(or use format='torch', which needs torch alone)")


def write_onnx(module: DeployableModule, example: Dict[str, torch.Tensor], path: str) -> List[str]:
    """Export with torch's dynamo-based ONNX exporter (inputs named after the columns, outputs ``value.<task>``
    and ``applies.<task>``); returns the output names."""
    check_onnx_available()
    flat = FlatOutputs(module, list(example))
    names = flat.output_names()
    shapes = _dynamic_batch(list(example))
    tmp = _temporary(path)
    trail_list: List[str] = []
    try:
        with module_trail(module.model) as trail_list, torch.no_grad(), _quiet_onnx():
            torch.onnx.export(flat, tuple(example.values()), tmp, dynamo=True, input_names=list(example),
                              output_names=names, dynamic_shapes=(tuple(shapes[c] for c in example),),
                              external_data=False, verbose=False)
        _publish(tmp, path)
    except ExportError:
        raise
    except Exception as e:
        raise _failure("onnx", trail_list, e, module.model) from e
    finally:
        _reset_decoders(module)
        if os.path.exists(tmp):
            os.remove(tmp)
    return names


@contextlib.contextmanager
def _quiet_onnx():
    """The ONNX exporter prints progress to stdout and warns about torchvision ops it skips; keep it quiet."""
    import io
    import logging
    import warnings

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
