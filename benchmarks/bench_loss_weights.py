"""Loss balancing: fixed weights 1.0 (the default) against learned uncertainty weights (Kendall et al. 2018).

    python benchmarks/bench_loss_weights.py [--seeds 3] [--epochs 40] [--datasets numbers penguins]

Two data sets, defaults otherwise (tabular_model, AdamW, early stopping on the validation loss):
- the numbers quickstart (4 binary tasks with preconditions), test accuracy per task;
- palmerpenguins (real measurements): species (category), sex (binary, only where recorded), body mass and
  flipper length in raw units (regression, standardised by the runner), inputs bill length/depth and the year.
Prints the mean over seeds of each test metric for both settings.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings

import pandas as pd
import torch

from dnn_cool_catalyst import Converters, Project
from dnn_cool_catalyst.jobs import train_tune_evaluate
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
from dnn_cool_catalyst.tabular import tabular_model


def penguins_project(project_dir):
    from palmerpenguins import load_penguins

    df = load_penguins().dropna(subset=["bill_length_mm", "bill_depth_mm"]).reset_index(drop=True)
    frame = pd.DataFrame({
        "bill_length_mm": df.bill_length_mm.astype("float32"), "bill_depth_mm": df.bill_depth_mm.astype("float32"),
        "year": (df.year - 2008).astype("float32"),
        "species": df.species.astype("category").cat.codes.astype(float),
        "is_male": df.sex.map({"male": 1.0, "female": 0.0}),
        "body_mass_g": df.body_mass_g, "flipper_length_mm": df.flipper_length_mm})
    converters = Converters()
    converters.type.type_mapping.update({"species": "category", "is_male": "binary", "body_mass_g": "regression",
                                         "flipper_length_mm": "regression"})
    project = Project(frame, ["bill_length_mm", "bill_depth_mm", "year"],
                      ["species", "is_male", "body_mass_g", "flipper_length_mm"], converters=converters,
                      project_dir=project_dir)

    @project.add_flow
    def penguins(flow, x, out):
        out += flow.species(x.features)
        out += flow.is_male(x.features)
        out += flow.body_mass_g(x.features)
        out += flow.flipper_length_mm(x.features)
        return out

    return project


def run(dataset: str, weights, seed: int, epochs: int) -> pd.Series:
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        if dataset == "numbers":
            df = numbers_frame(2000, seed=seed)
            project = Project(df, "number", list(df.columns[1:]), project_dir=tmp)
            model = numbers_model(define_flows(project))
            runner = project.runner(model, "run", batch_size=64, seed=seed, loss_weights=weights)
            metrics, lr = ["accuracy"], 3e-3
        else:
            project = penguins_project(tmp)
            runner = project.runner(tabular_model(project, hidden=64), "run", batch_size=32, seed=seed,
                                    loss_weights=weights)
            metrics, lr = ["accuracy", "mae"], 3e-3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table, _ = train_tune_evaluate(runner, num_epochs=epochs, lr=lr, early_stopping_patience=8)
    table = table[table.metric_name.isin(metrics)]
    return pd.Series(table.metric_res.values, index=table.task_path + "/" + table.metric_name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--datasets", nargs="+", default=["numbers", "penguins"], choices=["numbers", "penguins"])
    args = parser.parse_args(argv)
    for dataset in args.datasets:
        columns = {}
        for label, weights in (("fixed 1.0 (default)", None), ("uncertainty", "uncertainty")):
            runs = [run(dataset, weights, seed, args.epochs) for seed in range(args.seeds)]
            columns[label] = pd.concat(runs, axis=1).mean(axis=1)
        print(f"\n{dataset}: test metrics, mean of {args.seeds} seeds")
        print(pd.DataFrame(columns).to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
