"""Inference and evaluation throughput, and the disk a run directory takes.

After a short training run, times ``runner.infer()`` (every split: forward, activations, both masks, per-sample
losses, ``.npz`` artifacts, PR curves and explanation logs) followed by ``runner.evaluate()`` on the test split,
against the model's bare forward pass over the same loaders (``model.eval()``, ``no_grad``, nothing stored).
Then reports the size of the run directory by part (checkpoints, inference artifacts, TensorBoard, other).

    python benchmarks/bench_inference.py [--workload cnn|tabular] [--samples 4000] [--rounds 3]
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_overhead import REPO, cnn_runner, tabular_runner  # noqa: E402

sys.path.insert(0, REPO)


def bare_forward(runner) -> float:
    model = runner.model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for split in runner.splits:
            for batch in runner.split_loader(split):
                model(batch["inputs"])
    return time.perf_counter() - start


def infer_and_evaluate(runner) -> float:
    start = time.perf_counter()
    runner.infer()
    runner.evaluate("test")
    return time.perf_counter() - start


def folder_mb(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("cnn", "tabular"), default="cnn")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    build = cnn_runner if args.workload == "cnn" else tabular_runner
    runner = build(tempfile.mkdtemp(), args.samples, 128)
    runner.train(num_epochs=args.epochs)
    bare, full = [], []
    for _ in range(args.rounds):  # alternate so machine noise hits both
        bare.append(bare_forward(runner))
        full.append(infer_and_evaluate(runner))
    n = sum(len(v) for v in runner.splits.values())
    print(f"{args.workload}: {n} samples over {len(runner.splits)} splits, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} alternating rounds")
    print(f"bare forward        {n / min(bare):9.0f} samples/s")
    print(f"infer + evaluate    {n / min(full):9.0f} samples/s")
    print(f"ratio (infer + evaluate time / bare forward time): {min(full) / min(bare):.2f}")
    parts = {name: folder_mb(os.path.join(runner.run_dir, name)) for name in ("checkpoints", "infer", "tensorboard")}
    total = folder_mb(runner.run_dir)
    print("run directory MB: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
          + f", other {total - sum(parts.values()):.1f}, total {total:.1f}")


if __name__ == "__main__":
    main()
