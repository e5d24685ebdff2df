"""``tune()``, the tuned decoding parameters read back from ``tuned.json``, and ``evaluate()``; functions over a
runner."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import pandas as pd

from ..atomic import atomic_write_json, atomic_write_text
from ..errors import RunnerError
from ..measures.evaluation import GATINGS, tune_flow
from ..interpretation.pr_curves import mark_tuned_points
from ..messages import warn_user
from ..run.tuned import check_tuned_params
from ..safe_read import read_json
from ..spreadsheet import spreadsheet_safe
from ..tasks.base import TaskError
from . import inference
from . import tta as tta_of

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def tune(runner: "DnnCoolSupervisedRunner", loader: str = "valid", metric: str = "accuracy",
         min_recall: Optional[float] = None, min_samples: int = 30, min_per_class: int = 5,
         alpha: Optional[float] = 0.05) -> dict:
    """Tune thresholds on the stored ``loader`` outputs (ground-truth gated samples only), save them to
    ``tuned.json``, apply them and return ``{task_path: params}``.

    A threshold is only moved with at least ``min_samples`` masked samples and ``min_per_class`` of each
    class; otherwise the task keeps its threshold, a warning names it and ``tuned.json`` says why. It moves to
    the middle of the best interval of thresholds on ``loader`` (never onto a sample's activation), and only
    when the gain there is significant: exact one-sided binomial test at level ``alpha`` on the samples whose
    decision changes (McNemar's test for accuracy; ``alpha=None`` always moves). Else it keeps its current
    threshold and ``tuned.json`` says why (``kept``, ``reason``, ``p_value``); see
    :func:`dnn_cool_catalyst.tuning.thresholds.best_threshold`.

    The default ``metric`` is accuracy, the headline metric of :func:`evaluate`, so that tuning does not make
    it worse. F1 (the former default) moved thresholds towards the positive class, below the majority-class
    accuracy on real tables. Measured test accuracy per task, at 0.5 / former default (F1, threshold on a
    sample's activation) / this default (``benchmarks/bench_tuning_generalise.py``):

    - loans example (10,000 rows, 10 epochs): application_type 0.8887 / 0.8707 / 0.8887, term 0.6933 /
      0.6613 / 0.6933 (both kept 0.5: no gain beyond noise);
    - security demo (3,000 scenes, 3 epochs): camera_blocked 1.0 / 0.9885 / 1.0, person_present 1.0 / 0.9956 /
      1.0, door_open and door_locked 1.0 for all three; facial_characteristics (multilabel, per class)
      0.7851 / 0.8333 / 0.8353;
    - synthetic logistic scores, validation sets of 50-300 samples, 400 seeds: mean change against 0.5
      -0.0124 (worse on 55.5% of seeds) / +0.0033 (worse on 4.8%, by more than 0.01 on 1.2%); without the
      noise guard (``alpha=None``) +0.0020 but worse on 49.8%.

    ``"f1"``, ``"youden"`` and ``"precision_at_recall"`` (with ``min_recall``) remain available, with the same
    noise guard (each metric's own break-even share, see :mod:`dnn_cool_catalyst.tuning.guard`)."""
    check_tune_limits(min_samples, min_per_class)
    if not runner.has_thresholds():
        warn_user(f"tune(): nothing to tune, no task of this flow has a decision threshold (binary and "
                  f"multilabel tasks do; tasks here: {list(runner.flow.task_paths.values())}); the decoding "
                  f"stays as it is")
    runner._use_fitted_targets()
    logits, targets, available, _ = inference.stored_outputs(runner, loader)
    return tune_outputs(runner, loader, logits, targets, available, metric, min_recall, min_samples,
                        min_per_class, tta=runner.stored_tta(loader), alpha=alpha)


def has_thresholds(runner: "DnnCoolSupervisedRunner") -> bool:
    """Whether any task has decoding parameters for :func:`tune` to set (binary and multilabel thresholds;
    regression and argmax classification have none)."""
    return any(task.get_decoder_params() for task in runner.flow.tasks.values())


def tune_outputs(runner: "DnnCoolSupervisedRunner", loader: str, logits, targets, available, metric: str,
                 min_recall: Optional[float], min_samples: int, min_per_class: int, tta=(),
                 alpha: Optional[float] = 0.05) -> dict:
    """Tune on the given outputs (named ``loader`` in ``tuned.json``, inferred with the test-time
    augmentation views ``tta``), save, apply and return the params."""
    params, report = tune_flow(runner.flow, logits, targets, available, metric=metric, min_recall=min_recall,
                               min_samples=min_samples, min_per_class=min_per_class, alpha=alpha)
    report = mark_tuned_points(runner.flow, logits, targets, available, report)  # the point on the PR curve
    if runner._writes_files():
        atomic_write_json(runner.run_layout.tuned,
                          {"loader": loader, "metric": metric, "min_recall": min_recall,
                           "min_samples": min_samples, "min_per_class": min_per_class, "alpha": alpha,
                           "params": params, "report": report, "tta": list(tta)})
    apply_params(runner, params)
    return params


def apply_params(runner: "DnnCoolSupervisedRunner", params: dict) -> None:
    """Set the flow's decoders to ``params`` (``{task_path: params}``), all or none."""
    by_path = {path: name for name, path in runner.flow.task_paths.items()}
    if not isinstance(params, dict):
        raise RunnerError(f"tuned parameters must map task paths to parameters, got {type(params).__name__}")
    unknown = [path for path in params if path not in by_path]
    if unknown:
        raise RunnerError(f"tuned parameters name task(s) {unknown}, which this flow does not have; tasks are "
                          f"{list(by_path)}")
    # All or nothing: a bad entry must not leave the decoders half updated.
    before = {name: task.get_decoder_params() for name, task in runner.flow.tasks.items()}
    try:
        for path, task_params in params.items():
            runner.flow.tasks[by_path[path]].set_decoder_params(task_params)
    except Exception:
        for name, task_params in before.items():
            runner.flow.tasks[name].set_decoder_params(task_params)
        raise


def load_tuned(runner: "DnnCoolSupervisedRunner") -> dict:
    """Apply the parameters saved by :func:`tune` to the flow's decoders and return them."""
    path = runner.run_layout.tuned
    try:
        params = read_json(path)["params"]
    except FileNotFoundError:
        raise RunnerError(f"no tuned parameters at {path}; run runner.tune() first") from None
    except (ValueError, KeyError, TypeError) as e:
        raise RunnerError(f"tuned parameters file {path} is corrupted ({e}); run runner.tune() again") from None
    check_tuned_params(path, params, runner.flow)
    try:
        apply_params(runner, params)
    except (RunnerError, TaskError, TypeError, AttributeError) as e:
        raise RunnerError(f"tuned parameters file {path} does not fit this flow: {e}; run runner.tune() "
                          f"again") from None
    return params


def load_tuned_if_any(runner: "DnnCoolSupervisedRunner") -> bool:
    """Apply ``tuned.json`` when the run has one (:func:`load_tuned`); returns whether it had one. What every
    reader of the model's decisions (infer, predict, explain, export, evaluate) does first."""
    if not os.path.exists(runner.run_layout.tuned):
        return False
    runner.load_tuned()
    return True


# -- evaluate ------------------------------------------------------------------------------------------------
def evaluate(runner: "DnnCoolSupervisedRunner", loader: str = "test", gating: str = "gt") -> pd.DataFrame:
    """Per-task metrics on the stored ``loader`` outputs with the tuned thresholds, as a DataFrame with
    ``task_path, metric_name, metric_res, num_samples``; also saved as ``evaluation_<loader>_<gating>.csv``."""
    if gating not in GATINGS:
        raise RunnerError(f"gating must be one of {GATINGS}, got {gating!r}")
    runner._use_fitted_targets()
    logits, targets, available, _ = inference.stored_outputs(runner, loader)
    if runner.load_tuned_if_any():
        tta_of.warn_tta_mismatch(runner, loader)
    elif runner.has_thresholds():
        warn_user("no tuned parameters (run runner.tune() first): evaluating with default thresholds")
    return evaluate_outputs(runner, loader, gating, logits, targets, available)


def evaluate_outputs(runner: "DnnCoolSupervisedRunner", loader: str, gating: str, logits, targets,
                     available) -> pd.DataFrame:
    """The evaluation table of the given outputs with the decoders as they are, saved as
    ``evaluation_<loader>_<gating>.csv``."""
    table = runner.flow.get_evaluator()(logits, targets, available, gating=gating)
    if runner._writes_files():
        atomic_write_text(runner.run_layout.evaluation(loader, gating),
                          spreadsheet_safe(table).to_csv(index=False))
    return table


def check_tune_limits(min_samples, min_per_class) -> None:
    """:func:`tune`'s sample limits must be ints >= 0."""
    for name, value in (("min_samples", min_samples), ("min_per_class", min_per_class)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RunnerError(f"{name} must be an int >= 0, got {value!r}")
