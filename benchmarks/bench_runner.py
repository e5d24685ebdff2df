"""Epoch time of ``DnnCoolSupervisedRunner.train`` against a hand-written PyTorch loop on the same model, data,
splits and masked loss (train pass with AdamW steps + a no-grad validation pass per epoch).

The runner adds Catalyst's loop, per-task metric statistics, per-task loss logging, TensorBoard/CSV logging,
checkpoints and the scheduler; the figure to read is the ratio, measured in one process.

    python benchmarks/bench_runner.py [--samples 4000] [--epochs 4] [--batch 64]
"""
import argparse
import tempfile
import time

import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model


def setup(samples, batch, seed=0):
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=seed)
    project = Project(df, "number", list(df.columns[1:]), project_dir=tempfile.mkdtemp())
    flow = define_flows(project)
    return project.runner(numbers_model(flow), "bench", batch_size=batch, seed=seed)


def hand_written(runner, epochs):
    model, loss_fn = runner.model, runner.flow.get_loss()
    runner._materialize()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train, valid = runner.split_loader("train", shuffle=True), runner.split_loader("valid")
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in train:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["inputs"]), batch)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for batch in valid:
                loss_fn(model(batch["inputs"]), batch)
    return (time.perf_counter() - start) / epochs


def with_runner(runner, epochs):
    start = time.perf_counter()
    runner.train(num_epochs=epochs, early_stopping_patience=epochs + 1)
    return (time.perf_counter() - start) / epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times = {"hand-written": [], "runner": []}
    for _ in range(args.rounds):  # alternate so machine noise hits both
        times["hand-written"].append(hand_written(setup(args.samples, args.batch), args.epochs))
        times["runner"].append(with_runner(setup(args.samples, args.batch), args.epochs))
    best = {k: min(v) for k, v in times.items()}
    print(f"numbers flow (4 tasks), {args.samples} samples, batch {args.batch}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads; best of {args.rounds} rounds")
    for k, v in best.items():
        print(f"{k:14s}{v * 1e3:9.1f} ms/epoch")
    print(f"ratio runner / hand-written: {best['runner'] / best['hand-written']:.3f}")


if __name__ == "__main__":
    main()
