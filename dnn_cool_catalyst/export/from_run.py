"""``runner.export()``: the run's model as one deployable artifact (see ``dnn_cool_catalyst/export``); functions
over a runner."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from ..errors import RunnerError
from ..messages import warn_user
from ..run.claim import refuse_run_file
from ..run.layout import EXPORT_DIR
from .build import check_format, check_target, export_model, make_parent
from .errors import ExportError
from .writers import EXTENSIONS, check_onnx_available

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def export(runner: "DnnCoolSupervisedRunner", path: Optional[str] = None, format: str = "torch",
           checkpoint: str = "best", overwrite: Optional[bool] = None) -> str:
    """Write the ``checkpoint`` weights with the tuned thresholds (``tuned.json``; the tasks' current ones,
    0.5 by default, when the run was not tuned), the regression scaling and the decoded gating as one
    artifact, plus ``<path>.json`` describing its inputs and outputs. Returns the artifact's path.

    ``format="torch"``: a ``torch.export`` program (``.pt2``) that ``torch.export.load(path).module()`` runs
    without this library; ``format="onnx"``: an ONNX graph (``.onnx``; needs the ``onnx`` extra). The
    artifact takes a dict (ONNX: named inputs) of one tensor per input column, batch first, and returns per
    task its decoded value and an ``applies`` mask. ``path`` defaults to ``<run_dir>/export/model.pt2`` (or
    ``.onnx``), a folder of the run's own that a later export replaces; a ``path`` you give may be in a
    directory that does not exist yet (it is made), and an existing file there is replaced only with
    ``overwrite=True`` (``overwrite=False`` keeps the default path's files too). Everything is checked before
    the model is traced, and the files appear complete or not at all. As ``runner.infer()`` does, this loads the
    checkpoint into ``runner.model``; the traced model is a CPU copy."""
    fmt = check_format(format)
    if fmt == "onnx":
        check_onnx_available()
    if path is None:  # the run's own export: re-exporting after retraining replaces it, as infer() does
        path = runner.run_layout.exported_model(EXTENSIONS[fmt])
        overwrite = True if overwrite is None else overwrite
    path = check_target(path, fmt, bool(overwrite))
    refuse_run_file(path, "path", error=ExportError, allowed=(EXPORT_DIR,))  # not a run's own files
    runner._use_fitted_targets()
    checkpoint_path = runner.load_checkpoint(checkpoint)  # RunnerError naming the file when there is none
    tuned = runner.load_tuned_if_any()
    # In a fresh process the thresholds are the defaults (0.5); the JSON records which thresholds went in.
    if not tuned and runner.has_thresholds():
        warn_user("no tuned parameters (run runner.tune() first): exporting with the tasks' current "
                  "thresholds")
    batch = _export_example(runner)
    make_parent(path)
    data = getattr(runner.dataset, "data", None)
    converters = getattr(data, "converters", None) if data is not None else None
    export_model(runner.inference_model(), runner.flow, batch["inputs"], path, fmt, converters=converters,
                 checkpoint=os.path.basename(checkpoint_path), tuned=tuned)
    return path


def _export_example(runner: "DnnCoolSupervisedRunner") -> dict:
    """A small batch of the run's own inputs, to trace the model on."""
    for split in ("train", "valid", "test"):
        if len(runner.splits.get(split, ())):
            return next(iter(runner.split_loader(split, batch_size=min(8, len(runner.splits[split])))))
    raise RunnerError("the run has no samples to trace the model on")
