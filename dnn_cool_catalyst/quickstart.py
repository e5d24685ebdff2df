"""Quickstart, a first look in seconds: the numbers story from a DataFrame with NaN to a tuned, evaluated model.

    python -m dnn_cool_catalyst.quickstart [--samples 2000] [--epochs 15] [--project-dir ./quickstart_project]

Trains with the Catalyst runner, infers every split, tunes the thresholds on validation, prints the test
evaluation table (ground-truth gating and the end-to-end decoded gating) and says where the TensorBoard logs are.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from .jobs import print_test_tables, train_tune_evaluate
from .project import Project
from .run.layout import RunDir
from .synthetic.numbers import define_flows, numbers_frame, numbers_model


def run(samples: int = 2000, epochs: int = 15, project_dir: str = "./quickstart_project", seed: int = 0,
        verbose: bool = False):
    """Returns ``(runner, evaluation DataFrame with gt gating, evaluation with decoded gating)``."""
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=seed)
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    runner = project.runner(model=numbers_model(flow), runner_name=f"numbers_{samples}_seed{seed}",
                            batch_size=64, seed=seed)
    return (runner, *train_tune_evaluate(runner, num_epochs=epochs, lr=3e-3, verbose=verbose))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--project-dir", default="./quickstart_project")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch logs (shown by default only when output is a terminal)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runner, gt, decoded = run(args.samples, args.epochs, args.project_dir, verbose=False if args.quiet else "auto")
    print_test_tables(gt, decoded, ["accuracy", "f1"])
    print(f"\nDone in {time.perf_counter() - start:.0f} s. Run directory: {os.path.abspath(runner.run_dir)}")
    print(f"TensorBoard: tensorboard --logdir {RunDir(os.path.abspath(runner.run_dir)).tensorboard_root}")


if __name__ == "__main__":
    main()
