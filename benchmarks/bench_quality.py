"""Quality on real data: the library's test metrics per task next to scikit-learn's on the same rows.

Tables (``benchmarks/quality_tables.py``): loans, penguins, labour (participation; hours and wage given it),
affairs; each with a conditional task. The library trains with its defaults (``tabular_model``,
``runner.train()``), and is scored at its default decision rule (threshold 0.5, argmax: what scikit-learn's
``predict`` does; no ``tune()``). Per table and seed it runs a single run and, unless ``--no-ensemble``, the
5-fold ensemble of ``runner.cross_validate(folds=5)`` (thresholds kept at 0.5 there too). For every task,
scikit-learn fits LogisticRegression and HistGradientBoostingClassifier (binary / category) or Ridge and
HistGradientBoostingRegressor (regression) on the run's own train+valid rows and scores them on its test rows; a
conditional task is fitted and scored only where its label exists and its condition holds on the labels (the
library's ground-truth mask). The better baseline is the reference.

Targets: every task within 0.02 accuracy / 5% MAE of the best baseline on every seed (single run); the fold
ensemble beats the best baseline on at least half of all tasks. The summary also applies the per-seed rule to
each scikit-learn model on its own (LogisticRegression / Ridge, HistGradientBoosting): how often the worse of the
two is within tolerance of the better says how much of a miss is the noise of small test sets.

    python benchmarks/bench_quality.py [--tables loans,penguins,labour,affairs] [--seeds 0,1,2] [--no-ensemble]
                                       [--fast] [--rows N] [--train '{"lr": 3e-3}'] [--hidden N]

``--fast``: seed 0, single runs, loans at 1,000 rows (a few minutes on one CPU core).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quality_tables import load_table, make_project, tables  # noqa: E402

ACCURACY_SLACK = 0.02
MAE_SLACK = 0.05
FOLDS = 5
#: tune() moves a threshold only with at least this many samples: never, so the ensemble keeps 0.5 like the runs.
NO_TUNING = {"min_samples": 10 ** 9}


def baselines(kind: str, table, seed: int):
    """``{name: estimator}`` for ``kind`` "classification" or "regression", with the usual preprocessing."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    numeric, text = table.numeric_inputs, table.text_inputs
    linear_pre = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("text", OneHotEncoder(handle_unknown="ignore"), text)])
    tree_pre = ColumnTransformer([
        ("numeric", "passthrough", numeric),
        ("text", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), text)])
    text_ids = list(range(len(numeric), len(numeric) + len(text)))
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
    from dnn_cool_catalyst.measures.evaluation import split_masks
    from dnn_cool_catalyst.tasks.base import sample_mask

    names = list(flow.tasks)
    masks = split_masks(flow, None, {n: data.targets[n] for n in names}, {n: data.available[n] for n in names})
    return {name: sample_mask(mask).numpy() for name, mask in masks.items()}


def baseline_scores(table, df: pd.DataFrame, project, splits: dict, seed: int) -> dict:
    """``{task_path: (kind, metric, test rows, {baseline: score})}`` on ``splits`` (dataset positions)."""
    from sklearn.metrics import accuracy_score, mean_absolute_error

    flow = project.get_full_flow()
    masks = ground_truth_masks(flow, project.data)
    frame = df.loc[pd.Index(project.data.row_ids)]
    fit_rows, test_rows = np.zeros(len(frame), dtype=bool), np.zeros(len(frame), dtype=bool)
    fit_rows[list(splits["train"]) + list(splits["valid"])] = True
    test_rows[list(splits["test"])] = True
    scores = {}
    for name, path in flow.task_paths.items():
        kind = "regression" if flow.tasks[name].type_name == "regression" else "classification"
        fit, test = fit_rows & masks[name], test_rows & masks[name]
        x_fit, y_fit = frame.loc[fit, table.inputs], frame.loc[fit, name]
        x_test, y_test = frame.loc[test, table.inputs], frame.loc[test, name]
        if kind == "classification":  # compare labels as text: 36 and "36" are one class
            y_fit, y_test = y_fit.astype(str), y_test.astype(str)
        by_model = {}
        for model_name, model in baselines(kind, table, seed).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted = model.fit(x_fit, y_fit).predict(x_test)
            by_model[model_name] = (mean_absolute_error(y_test, predicted) if kind == "regression"
                                    else accuracy_score(y_test, predicted))
        scores[path] = (kind, "mae" if kind == "regression" else "accuracy", int(test.sum()), by_model)
    return scores


def library_score(evaluation: pd.DataFrame, path: str, metric: str, rows: int) -> float:
    mine = evaluation[(evaluation.task_path == path) & (evaluation.metric_name == metric)].iloc[0]
    if int(mine.num_samples) != rows:
        raise SystemExit(f"{path}: the library scored {int(mine.num_samples)} test rows, the baselines {rows}: "
                         f"not the same rows")
    return float(mine.metric_res)


def model_for(project, seed: int, hidden):
    import torch

    from dnn_cool_catalyst.tabular import tabular_model

    torch.manual_seed(seed)
    return tabular_model(project) if hidden is None else tabular_model(project, hidden=hidden)


def run_table(table, seed: int, rows, ensemble: bool, train_kwargs: dict, hidden) -> pd.DataFrame:
    """One table, one seed: the single run, optionally the fold ensemble, and the baselines, per task."""
    df = load_table(table, seed, rows)
    with tempfile.TemporaryDirectory() as folder:
        project = make_project(table, df, folder)
        started = time.time()
        runner = project.runner(model=model_for(project, seed, hidden), runner_name="single", seed=seed)
        runner.train(verbose=False, **train_kwargs)
        epochs = int(runner.epoch_step)
        runner.infer(splits=["test"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tuned parameters": threshold 0.5 on purpose
            single = runner.evaluate()
        single_seconds = time.time() - started
        scores = baseline_scores(table, df, project, runner.splits, seed)
        fold_table, ensemble_seconds = None, float("nan")
        if ensemble:
            started = time.time()
            cv = project.runner(model=model_for(project, seed, hidden), runner_name="cv", seed=seed)
            if cv.splits["test"] != runner.splits["test"]:
                raise SystemExit(f"{table.name} seed {seed}: the fold group's test split differs from the run's")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cv.cross_validate(folds=FOLDS, tune_kwargs=NO_TUNING, verbose=False, **train_kwargs)
            fold_table = pd.read_csv(os.path.join(cv.run_dir, "evaluation_test_gt.csv"))
            ensemble_seconds = time.time() - started
    rows_out = []
    for path, (kind, metric, test_rows, by_model) in scores.items():
        best = (min if kind == "regression" else max)(by_model, key=by_model.get)
        reference = by_model[best]
        ours = library_score(single, path, metric, test_rows)
        ens = library_score(fold_table, path, metric, test_rows) if fold_table is not None else float("nan")
        within, beats = is_within(kind, ours, reference), (ens < reference if kind == "regression"
                                                           else ens > reference)
        linear, boosting = (by_model[name] for name in sorted(by_model, key=lambda n: "Hist" in n))
        rows_out.append({"table": table.name, "seed": seed, "task": path, "metric": metric, "test rows": test_rows,
                         "ours": ours, "ensemble": ens, "best baseline": reference, "baseline": best,
                         "within": bool(within), "ens beats": bool(beats) if fold_table is not None else None,
                         # the same rule applied to each scikit-learn model: how hard the per-seed target is
                         "linear within": bool(is_within(kind, linear, reference)),
                         "boosting within": bool(is_within(kind, boosting, reference)),
                         "epochs": epochs, "single s": single_seconds, "ensemble s": ensemble_seconds})
    return pd.DataFrame(rows_out)


def is_within(kind: str, score: float, reference: float) -> bool:
    """The per-seed target: accuracy at most 0.02 below the reference, MAE at most 5% above it."""
    if kind == "regression":
        return score <= reference * (1 + MAE_SLACK)
    return score >= reference - ACCURACY_SLACK


def summary(results: pd.DataFrame, ensemble: bool) -> str:
    per_task = results.groupby(["table", "task"], sort=False)
    lines = []
    for column, who in [("within", "single run"), ("linear within", "LogisticRegression / Ridge alone"),
                        ("boosting within", "HistGradientBoosting alone")]:
        if column not in results:  # CSVs written before these columns existed
            continue
        within = results[column].astype(str).str.lower() == "true"
        every_seed = int(within.groupby([results["table"], results["task"]], sort=False).all().sum())
        lines.append(f"{who} within tolerance of the better baseline: {int(within.sum())}/{len(results)} "
                     f"task-seeds; on every seed: {every_seed}/{per_task.ngroups} tasks")
    if ensemble:  # over the seeds that ran the ensemble
        ens = results[results["ens beats"].notna()]
        beats = ens["ens beats"].astype(str).str.lower() == "true"  # bools, or their text from a CSV
        by_task = beats.groupby([ens["table"], ens["task"]], sort=False).mean()
        lines.append(f"fold ensemble beats the best baseline: {int(beats.sum())}/{len(ens)} task-seeds (target: at "
                     f"least half); on every seed it ran: {int((by_task == 1).sum())}/{len(by_task)} tasks")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(tables()))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", type=int, default=None, help="rows per table (default: each table's own)")
    parser.add_argument("--no-ensemble", action="store_true")
    parser.add_argument("--fast", action="store_true", help="seed 0, single runs, loans at 1,000 rows")
    parser.add_argument("--train", default="{}", help="JSON keyword arguments for train() (default: none)")
    parser.add_argument("--hidden", type=int, default=None, help="tabular_model width (default: its default)")
    parser.add_argument("--csv", default=None, help="also write the per task-seed rows here")
    parser.add_argument("--summarize", nargs="+", default=None, metavar="CSV",
                        help="print the tables and the summary of earlier --csv files (runs split over processes)")
    args = parser.parse_args(argv)
    if args.summarize:
        results = pd.concat([pd.read_csv(path) for path in args.summarize], ignore_index=True)
        results = results.drop_duplicates(["table", "seed", "task"], keep="first")  # a seed run twice: first wins
        print_results(results, ensemble=bool(results["ens beats"].notna().any()))
        return

    known = tables()
    names = args.tables.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; known: {list(known)}")
    seeds = [0] if args.fast else [int(s) for s in args.seeds.split(",")]
    ensemble = not (args.no_ensemble or args.fast)
    train_kwargs = json.loads(args.train)
    parts = []
    for name in names:
        rows = args.rows if args.rows is not None else (1000 if args.fast and name == "loans" else None)
        for seed in seeds:
            part = run_table(known[name], seed, rows, ensemble, train_kwargs, args.hidden)
            parts.append(part)
            with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
                print(part.drop(columns=["table"] + ([] if ensemble else ["ensemble", "ens beats", "ensemble s"]))
                      .to_string(index=False), flush=True)
    results = pd.concat(parts, ignore_index=True)
    if args.csv:
        results.to_csv(args.csv, index=False)
    print(f"\ntrain kwargs {train_kwargs or 'defaults'}, hidden {args.hidden or 'default'}")
    print(summary(results, ensemble))


def print_results(results: pd.DataFrame, ensemble: bool) -> None:
    """Per table: task, seed, ours / ensemble / best baseline; then the summary."""
    shown = ["seed", "task", "metric", "test rows", "ours"] + (["ensemble"] if ensemble else []) + [
        "best baseline", "baseline", "within"] + (["ens beats"] if ensemble else []) + ["epochs", "single s"]
    for name, part in results.groupby("table", sort=False):
        print(f"\n{name}")
        with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
            print(part.sort_values(["task", "seed"], kind="stable")[shown].to_string(index=False))
    print(f"\ntargets: accuracy within {ACCURACY_SLACK} of the better baseline, MAE within {MAE_SLACK:.0%}")
    print(summary(results, ensemble))


if __name__ == "__main__":
    main()
