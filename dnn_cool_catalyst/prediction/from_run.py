"""``runner.predict(df)``: a checkpoint's decoded predictions for new rows, in label space.

New rows are converted with the project's fitted converters (vocabularies, medians: the state saved in
``converters.json``, never refitted on the new rows), run through the model in batches, decoded with the tuned
thresholds (``tuned.json``) and the run's fitted regression scaling, gated on the decoded predictions and mapped
back to label values by :func:`dnn_cool_catalyst.prediction.predictions_frame`.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional

import pandas as pd
import torch

from ..data.columns import take
from ..data.converters import refuse_dates
from ..data.finite import require_finite_float32
from ..errors import RunnerError
from ..graph.batch import output_logits
from ..kept_batches import keep
from ..parallel import to_device
from ..messages import warn_user
from ..outputs import inference
from .frame import predictions_frame

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def predict(runner: "DnnCoolSupervisedRunner", df: pd.DataFrame, checkpoint: str = "best", proba: bool = False,
            batch_size: Optional[int] = None, verbose: bool = False) -> pd.DataFrame:
    """Predictions of the ``checkpoint`` weights for the rows of ``df``, as a DataFrame indexed like ``df``.

    ``df`` needs the project's input columns (label columns are not needed and ignored if present); they are
    converted with the stored converter state: a category not seen in training maps to the unknown code
    with a warning, a missing column or a value of the wrong type is an error naming the column. One column
    per task with the decoded prediction in label space, typed as the label column (pandas nullable dtypes),
    ``pd.NA`` where the task does not apply under decoded gating; ``proba=True`` adds ``proba_<task>`` (binary: P(positive)) and ``proba_<task>[<label>]``
    (per class of a classification / multilabel task) columns, see :mod:`dnn_cool_catalyst.prediction`.
    Thresholds are the tuned ones when ``runner.tune()`` has run (else 0.5, with a warning). Rows go
    through the model ``batch_size`` at a time (default: the runner's), with a progress bar if ``verbose``.
    Like ``runner.infer()``, it loads the checkpoint's weights into ``runner.model``.
    """
    if not isinstance(df, pd.DataFrame):
        raise RunnerError(f"predict() takes a pandas DataFrame of new rows, got {type(df).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise RunnerError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(checkpoint, str):
        raise RunnerError(f"checkpoint must be a checkpoint name such as 'best' or 'last', got {checkpoint!r}")
    path = runner.run_layout.checkpoint(checkpoint)
    if not os.path.exists(path):  # before converting anything; load_checkpoint repeats the full checks
        raise RunnerError(f"no checkpoint {path} to predict with; train first (runner.train())")
    inputs = prediction_inputs(runner, df)
    runner._use_fitted_targets()
    if not runner.load_tuned_if_any() and runner.has_thresholds() and not getattr(
            runner, "_warned_untuned_predict", False):
        runner._warned_untuned_predict = True
        warn_user("no tuned parameters (run runner.tune() first): predicting with the default decoding "
                  "thresholds (0.5)")
    runner.load_checkpoint(checkpoint)
    logits = _predict_logits(runner, inputs, len(df), batch_size or runner.loader_batch, verbose)
    return predictions_frame(runner.flow, logits, index=df.index, proba=proba)


def prediction_inputs(runner: "DnnCoolSupervisedRunner", df: pd.DataFrame) -> Dict[str, object]:
    """The model's input columns converted from ``df`` with the project's fitted converters."""
    data = getattr(runner.dataset, "data", None)
    converters = getattr(data, "converters", None)
    names: Optional[List[str]] = getattr(runner.dataset, "input_names", None)
    if not isinstance(converters, dict) or names is None:
        raise RunnerError("predict() converts new rows with the project's converters, but this runner's dataset "
                          "is not a project dataset (project.runner(...) / flow.get_dataset() make one); run "
                          "the model on your own converted inputs instead")
    if len(df) == 0:
        raise RunnerError("predict() got a DataFrame with no rows")
    if df.columns.duplicated().any():
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise RunnerError(f"the DataFrame given to predict() has duplicate column names: {duplicated}")
    missing = [name for name in names if name not in df.columns]
    if missing:
        raise RunnerError(f"the DataFrame given to predict() lacks input column(s) {missing}; the model reads "
                          f"{names}, and the DataFrame has {[str(c) for c in df.columns]}")
    inputs = {}
    for name in names:
        series = df[name]
        refuse_dates(series, name, "input")
        converter = converters.get(name)
        if converter is None or not hasattr(converter, "build_column"):
            raise RunnerError(f"input column '{name}' has no fitted converter in this project")
        column = converter.build_column(series, name)  # ConverterError (a ValueError) names the column
        if len(column) != len(df):
            raise RunnerError(f"input column '{name}': its converter returned {len(column)} rows for {len(df)}")
        require_finite_float32(column, series, name, "input")
        inputs[name] = column
    return inputs

@torch.no_grad()
def _predict_logits(runner: "DnnCoolSupervisedRunner", inputs: Dict[str, object], n: int, batch_size: int,
                    verbose: bool) -> Dict[str, torch.Tensor]:
    device = inference.inference_device(runner)
    model = runner.inference_model()  # each task at its own best epoch where the run selected per task
    was_training = model.training
    model.to(device).eval()
    starts = range(0, n, batch_size)
    if verbose:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="predict", total=len(starts))
    collected: Dict[str, List[torch.Tensor]] = {name: [] for name in runner.flow.graph.tasks}
    try:
        for start in starts:
            positions = torch.arange(start, min(start + batch_size, n))
            batch = {name: take(column, positions) for name, column in inputs.items()}
            logits = output_logits(runner.flow.graph, model(to_device(batch, device)), len(positions))
            for name in collected:
                keep(collected[name], logits[name].float().cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in collected.items()}
