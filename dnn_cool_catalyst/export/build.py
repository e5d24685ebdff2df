"""Building an export from a trained model, its flow and one converted batch: checks, trace, write, verify."""
from __future__ import annotations

import copy
import os
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from ..atomic import atomic_write_json
from ..tasks.base import TaskError
from .errors import ExportError
from .module import DeployableModule
from .signature import imputed_columns, input_spec, output_spec, raw_example, signature
from .writers import EXTENSIONS, FORMATS, check_onnx_available, write_onnx, write_torch


def check_format(fmt) -> str:
    """``fmt`` if it is a known format, else :class:`ExportError` listing them."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def sidecar_path(path: str) -> str:
    """The JSON file beside an artifact: ``model.pt2`` -> ``model.pt2.json``."""
    return f"{path}.json"


def check_target(path, fmt: str, overwrite: bool) -> str:
    """The artifact path, checked before any work: the format's extension, a parent that is (or can be made) a
    directory, and no existing artifact or JSON unless ``overwrite=True``. Missing directories are made by
    :func:`make_parent`, once the rest of the export has been checked too."""
    if not isinstance(path, (str, os.PathLike)):
        raise ExportError(f"path must be a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.endswith(EXTENSIONS[fmt]):
        raise ExportError(f"path {path!r}: format={fmt!r} writes a '{EXTENSIONS[fmt]}' file; name it so (e.g. "
                          f"'model{EXTENSIONS[fmt]}')")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):  # the closest folder that exists must be one
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ExportError(f"path {path!r}: {existing!r} is a file, not a directory")
    for target in (path, sidecar_path(path)):
        if os.path.isdir(target):
            raise ExportError(f"path {target!r} is a directory; give a file name")
        if os.path.lexists(target) and not overwrite:
            raise ExportError(f"{target!r} already exists; pass overwrite=True to replace it")
    return path


def make_parent(path: str) -> None:
    """Create the artifact's directory (and the missing ones above it), as ``mkdir -p``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def two_rows(inputs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An example batch of at least two rows: with one, tracing would fix the batch size to 1."""
    n = next(iter(inputs.values())).shape[0]
    if n >= 2:
        return dict(inputs)
    return {k: torch.cat([v] * 2) for k, v in inputs.items()}


def deployable_copy(model: nn.Module) -> nn.Module:
    """A CPU, eval-mode copy of the (unwrapped) model: exporting leaves the runner's model as it was."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return copy.deepcopy(model).cpu().eval()


def export_model(model: nn.Module, flow, batch_inputs: Mapping[str, torch.Tensor], path: str, fmt: str,
                 converters: Optional[Mapping[str, object]] = None, checkpoint: str = "",
                 tuned: bool = False) -> dict:
    """Export ``model`` (already holding the weights to ship) for ``flow`` to ``path`` and write the JSON beside
    it; returns that JSON document. ``batch_inputs`` is one converted batch (the model's inputs, as the dataset
    gives them); ``converters`` the project's input converters by column (for the median fill and vocabularies);
    ``checkpoint`` and ``tuned`` (whether the decoding parameters were tuned) are recorded in the JSON.
    ``path`` must have been checked with :func:`check_target`."""
    check_format(fmt)
    if fmt == "onnx":
        check_onnx_available()
    converters = dict(converters or {})
    columns = list(batch_inputs)
    imputed = imputed_columns(converters, columns)
    example = two_rows(raw_example({k: v.cpu() for k, v in batch_inputs.items()}, imputed))
    module = DeployableModule(deployable_copy(model), flow.graph, imputed).eval()
    try:
        with torch.no_grad():
            expected = module(example)
    except (TaskError, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise ExportError(f"the model does not run on a batch of the run's inputs ({type(e).__name__}: {e}); "
                          f"nothing was exported") from e
    inputs = [input_spec(c, example[c], converters.get(c), imputed) for c in columns]
    outputs = {name: output_spec(flow.graph, name, value) for name, value in expected["values"].items()}
    onnx_names = None
    if fmt == "torch":
        write_torch(module, example, path)
        _verify_torch(path, example, expected)
    else:
        onnx_names = write_onnx(module, example, path)
    doc = signature(flow.graph, fmt, os.path.basename(path), inputs, outputs, checkpoint, tuned, onnx_names)
    try:
        atomic_write_json(sidecar_path(path), doc)
    except BaseException:
        os.remove(path)  # an artifact without its JSON cannot be decoded: neither is left
        raise
    return doc


def _verify_torch(path: str, example: Mapping[str, torch.Tensor], expected: dict) -> None:
    """Load the written program and compare it with the eager module on the example batch."""
    got = torch.export.load(path).module()(dict(example))
    for kind in ("values", "applies"):
        for name, want in expected[kind].items():
            have = got[kind][name]
            same = torch.equal(have, want) if kind == "applies" else torch.allclose(have, want, atol=1e-5)
            if not same:
                os.remove(path)
                raise ExportError(f"the exported program disagrees with the model on task '{name}' ({kind}) for "
                                  f"the example batch; nothing was exported. The model may behave differently "
                                  f"when traced (e.g. Python branching on tensor values)")
