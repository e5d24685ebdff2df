"""The steps the runnable jobs (``quickstart``, ``demo``) share: the full train-to-evaluation sequence and the
printed test tables."""
from __future__ import annotations

from typing import Sequence, Tuple

import pandas as pd


def train_tune_evaluate(runner, **train_kwargs) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Train, infer the validation split, tune thresholds on it, infer every split (so every split's stored
    decoded masks and TensorBoard summaries use the tuned thresholds; the same passes as inferring everything
    and then the test split again) and evaluate the test split: ``(gt gating table, decoded gating table)``."""
    runner.train(**train_kwargs)
    runner.infer(splits=["valid"])
    runner.tune()
    runner.infer()
    return runner.evaluate(gating="gt"), runner.evaluate(gating="decoded")


def print_test_tables(gt: pd.DataFrame, decoded: pd.DataFrame, metrics: Sequence[str]) -> None:
    """Both test tables, restricted to ``metrics``."""
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        for title, table in (("ground-truth gating", gt), ("decoded gating (end to end)", decoded)):
            print(f"\nTest split, {title}:")
            print(table[table.metric_name.isin(metrics)].to_string(index=False))
