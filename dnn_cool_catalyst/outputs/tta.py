"""Test-time augmentation, the inference side of ``infer(tta=...)``; functions over a runner.

Test-time augmentation (``tta=["hflip", ...]``) averages the activations of the original batch and of each
transformed view (box coordinates mirrored back first: the runner's ``box_tasks``, see
:mod:`dnn_cool_catalyst.training.augmentation`), stores the averages as a normal ``infer()`` does (logits are the
averaged activations mapped back by each task's ``inverse_activation``) and records the views in every split's
manifest (``"tta"``; :func:`stored_tta`). The plan of one ``infer()`` lives on the runner while that call runs
(``runner._tta_plan``; None otherwise).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Dict, List

import torch

from ..augment import AugmentationError, TTAPlan, batch_generator
from ..errors import RunnerError
from ..graph.batch import output_logits
from ..messages import warn_user
from ..run import artifacts
from ..safe_read import read_json
from ..tasks.base import without_inverse_activation

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


@contextlib.contextmanager
def tta_context(runner: "DnnCoolSupervisedRunner", tta):
    """Validate ``tta`` against the flow and hold it for one ``infer()``."""
    plan = None
    if tta is not None:
        try:
            plan = TTAPlan(tta, runner.flow, runner.dataset, runner.box_tasks)
        except AugmentationError as e:
            raise RunnerError(str(e)) from None
        missing = without_inverse_activation(runner.flow.tasks)
        if missing:
            raise RunnerError(f"infer(tta=...): task(s) {missing} do not implement inverse_activation, so "
                              f"their averaged activations cannot be stored; infer without tta")
    runner._tta_plan = plan
    try:
        yield
    finally:
        runner._tta_plan = None


def tta_manifest(runner: "DnnCoolSupervisedRunner") -> dict:
    """What the manifest of a split inferred now records about test-time augmentation."""
    return {"tta": runner._tta_plan.describe() if runner._tta_plan is not None else []}


def batch_logits(runner: "DnnCoolSupervisedRunner", model, inputs: dict, batch_size: int) -> Dict[str, torch.Tensor]:
    """The model's logits per task for one inference batch; with ``tta``, the logits of the averaged
    activations over the views."""
    graph = runner.flow.graph
    plan = runner._tta_plan
    if plan is None:
        return output_logits(graph, model(inputs), batch_size)
    device = next(iter(inputs.values())).device
    generator = batch_generator(device, runner.split_seed, 0x77A)
    total, views = None, 0
    for view, flips in plan.views(inputs, generator):
        logits = output_logits(graph, model(view), batch_size)
        acts = {name: runner.flow.tasks[name].activation(value.float()) for name, value in logits.items()}
        acts = plan.unflip(acts, flips)
        total = acts if total is None else {name: total[name] + acts[name] for name in total}
        views += 1
    return {name: runner.flow.tasks[name].inverse_activation(value / views) for name, value in total.items()}


def warn_tta_mismatch(runner: "DnnCoolSupervisedRunner", split: str) -> None:
    """Warn when the thresholds in ``tuned.json`` were tuned on outputs averaged over other views than the
    stored outputs of ``split`` (averaged probabilities are calibrated differently)."""
    try:
        tuned = read_json(runner.run_layout.tuned).get("tta", [])
    except (OSError, ValueError, AttributeError):
        return  # load_tuned reports a damaged file itself
    stored = runner.stored_tta(split)
    if tuned != stored:
        warn_user(f"the thresholds in tuned.json were tuned on outputs inferred with tta={tuned}, but the "
                  f"'{split}' outputs were inferred with tta={stored}: infer both with the same tta")


def stored_tta(runner: "DnnCoolSupervisedRunner", split: str) -> List[str]:
    """The test-time augmentation views the stored outputs of ``split`` were averaged over (``[]``: none)."""
    try:
        manifest = artifacts.read_manifest(runner.infer_dir, split, list(runner.flow.tasks),
                                           len(runner.splits.get(split, ())))
    except FileNotFoundError:
        raise RunnerError(f"split '{split}' was not inferred ({runner.run_layout.infer_split(split)}); run "
                          f"runner.infer() first") from None
    except artifacts.ArtifactError as e:
        raise RunnerError(str(e)) from None
    return list(manifest.get("tta", []))
