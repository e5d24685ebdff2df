"""Quickstart: the numbers story, from a DataFrame with NaN to per-task metrics.

    python -m dnn_cool_catalyst.quickstart [--samples 2000] [--epochs 15] [--project-dir ./quickstart_project]
"""
from __future__ import annotations

import argparse
import tempfile

import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from .project import Project
from .synthetic.numbers import define_flows, numbers_frame, numbers_model


def run(samples: int = 2000, epochs: int = 15, project_dir: str | None = None, seed: int = 0) -> pd.DataFrame:
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=seed)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]),
                      project_dir=project_dir or tempfile.mkdtemp(prefix="dnn_cool_quickstart_"))
    flow = define_flows(project)
    model = numbers_model(flow)

    dataset = flow.get_dataset()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(0.8 * len(order))
    train = DataLoader(Subset(dataset, order[:cut]), batch_size=64, shuffle=True)
    test = DataLoader(Subset(dataset, order[cut:]), batch_size=256)

    loss_fn = flow.get_loss()
    model(next(iter(train))["inputs"])  # materialise the lazy heads before building the optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in train:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["inputs"]), batch)
            loss.backward()
            optimizer.step()
            total += loss.item()
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(train):.4f}")

    model.eval()
    metrics = flow.get_metrics()
    with torch.no_grad():
        for batch in test:
            metrics.update(model(batch["inputs"]), batch)
    rows = [{"task_path": path, "metric_name": name, "metric_res": value,
             "num_samples": metrics.metrics[task].num_samples}
            for task, path in flow.task_paths.items() for name, value in metrics.compute()[path].items()]
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--project-dir", default=None)
    args = parser.parse_args(argv)
    table = run(args.samples, args.epochs, args.project_dir)
    with pd.option_context("display.width", 120):
        print(table[table.metric_name.isin(["accuracy", "f1"])].to_string(index=False))


if __name__ == "__main__":
    main()
