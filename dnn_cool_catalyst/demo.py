"""The main job: the home-security story, from synthetic camera frames to a tuned, evaluated, explained model.

    python -m dnn_cool_catalyst.demo [--samples 10000] [--epochs 6] [--project-dir ./security_project] [--quiet]

Draws the synthetic scenes (:mod:`dnn_cool_catalyst.synthetic.security`), trains the reference CNN
(:mod:`dnn_cool_catalyst.synthetic.security_model`) with the Catalyst runner, infers every split, tunes the
thresholds on validation, evaluates the test split with ground-truth gating (each task where its labels say it
applies) and decoded gating (end to end: each task where the model's own predictions say it applies), prints both
tables and says where the TensorBoard logs are.

Progress bars and the per-epoch table appear when standard output is a terminal (``--quiet`` turns them off).
The validation loss of an early epoch can spike and recover (seen once: 0.58 -> 6.07 -> recovered at epoch 3):
validation runs in eval mode, where the trunk's BatchNorm running statistics trail the fast-moving early weights
(measured at epoch 2: valid loss 0.326 in eval mode vs 0.168 with batch statistics); the best checkpoint never
comes from such an epoch. See the README's "The security demo".
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from .interpretation import BoxOverlay
from .jobs import print_test_tables, train_tune_evaluate
from .run.layout import RunDir
from .synthetic.security import BODY_BOX, FACE_BOX, security_project
from .synthetic.security_model import security_model

#: Box losses are MSEs of fractions of the image (~1e-3 once learnt): weighted up so they are not drowned by
#: the classification losses.
BOX_LOSS_WEIGHT = 10.0
SHOWN_METRICS = ("accuracy", "f1", "mae", "mae_units")


def run(n_samples: int = 10000, epochs: int = 6, project_dir: str = "./security_project", seed: int = 0,
        verbose: bool = False, batch_size: int = 64, lr: float = 3e-3):
    """Train, infer, tune and evaluate; returns ``(runner, test evaluation with gt gating, with decoded
    gating)``. The run directory is ``<project_dir>/security_<n_samples>_seed<seed>``."""
    torch.manual_seed(seed)
    project = security_project(project_dir, n_samples=n_samples, seed=seed)
    flow = project.get_full_flow()
    weights = {name: BOX_LOSS_WEIGHT for name in FACE_BOX + BODY_BOX}
    runner = project.runner(model=security_model(flow), runner_name=f"security_{n_samples}_seed{seed}",
                            batch_size=batch_size, seed=seed, loss_weights=weights)
    # The box tasks drawn on the best/worst frames in TensorBoard (target green, prediction red).
    runner.publishers.boxes += [BoxOverlay("face", FACE_BOX), BoxOverlay("body", BODY_BOX)]
    return (runner, *train_tune_evaluate(runner, num_epochs=epochs, lr=lr, verbose=verbose))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10000, help="number of synthetic scenes (default 10000)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--project-dir", default="./security_project")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch logs (shown by default only when output is a terminal)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice for this machine)")
    args = parser.parse_args(argv)
    if args.threads is not None:  # e.g. --threads 2 on a shared 2-core machine, where more threads only contend
        if args.threads < 1:
            parser.error(f"--threads must be a positive int, got {args.threads}")
        torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    runner, gt, decoded = run(args.samples, args.epochs, args.project_dir, seed=args.seed, verbose=False if args.quiet else "auto")
    print_test_tables(gt, decoded, SHOWN_METRICS)
    run_dir = os.path.abspath(runner.run_dir)
    print(f"\nDone in {time.perf_counter() - start:.0f} s wall, {_cpu_seconds() - cpu_start:.0f} s CPU. "
          f"Run directory: {run_dir}")
    print(f"Evaluation tables: {RunDir(run_dir).evaluation('test', 'gt')}, "
          f"{RunDir(run_dir).evaluation('test', 'decoded')}")
    print(f"TensorBoard (per-task metrics and losses, best/worst images, explanation trees, PR curves): "
          f"tensorboard --logdir {RunDir(run_dir).tensorboard_root}")


if __name__ == "__main__":
    main()
