"""Training overhead: epoch time of ``runner.train`` against a hand-written PyTorch loop doing the same work.

Both sides use the same model, data, splits, batch size, masked multi-task loss (``flow.get_loss()``), AdamW
steps and a no-grad validation pass per epoch. The runner adds Catalyst's loop, per-task metric statistics,
per-task loss logging, TensorBoard/CSV logs, checkpoints, the scheduler and early stopping.

Workloads:
- ``tabular``: an MLP over 16 numeric columns with a 6-task conditional flow (binary, ``~``, classification,
  bounded regression, regression), 20,000 rows. Target ratio <= 1.25.
- ``cnn``: the security demo's CNN on its synthetic 64x64 scenes (``dnn_cool_catalyst.synthetic``), 10,000 scenes and
  batch 64 as in the demo. Target <= 1.05.

Every measurement runs in a fresh child process (so peak memory is its own) and the two sides alternate over
``--rounds``; the best epoch time of each side is kept. Figures: wall and CPU ms/epoch, samples/s, peak RSS, and
the ratios of both (CPU time is the steadier one on a shared machine: other tenants stretch wall time only).

    python benchmarks/bench_overhead.py [--workload tabular cnn] [--epochs 2] [--rounds 2]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

WORKLOADS = {"tabular": {"samples": 20000, "batch": 128}, "cnn": {"samples": 10000, "batch": 64}}


def tabular_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    df = pd.DataFrame({f"f{i}": x[:, i] for i in range(16)})
    a, b, c = x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 0.3
    df["active"] = a.astype(float)
    df["premium"] = np.where(a, b, np.nan)
    df["churned"] = np.where(~a, c, np.nan)
    df["segment"] = np.where(a & b, np.digitize(x[:, 4], [-1, 0, 1]), np.nan)
    df["score"] = np.where(a & b, 1 / (1 + np.exp(-x[:, 5])), np.nan)
    df["spend"] = np.where(~a & c, 3 * x[:, 6] + x[:, 7], np.nan)
    return df


def tabular_runner(run_dir: str, samples: int, batch: int):
    from dnn_cool_catalyst import Converters, Project
    from dnn_cool_catalyst.tabular import tabular_model

    df = tabular_frame(samples)
    converters = Converters()
    converters.type.type_mapping.update(active="binary", premium="binary", churned="binary", segment="category",
                                        score="continuous", spend="regression")
    outputs = ["active", "premium", "churned", "segment", "score", "spend"]
    project = Project(df, [f"f{i}" for i in range(16)], outputs, converters=converters, project_dir=run_dir)

    @project.add_flow
    def customers(flow, x, out):
        out += flow.active(x.features)
        out += flow.premium(x.features) | out.active
        out += flow.churned(x.features) | ~out.active
        out += flow.segment(x.features) | out.premium
        out += flow.score(x.features) | out.premium
        out += flow.spend(x.features) | out.churned
        return out

    return project.runner(tabular_model(project, hidden=128), "bench", batch_size=batch, seed=0)


def cnn_runner(run_dir: str, samples: int, batch: int):
    from dnn_cool_catalyst.synthetic.security import security_project
    from dnn_cool_catalyst.synthetic.security_model import security_model

    project = security_project(run_dir, n_samples=samples, seed=0)
    return project.runner(security_model(project.get_full_flow()), "bench", batch_size=batch, seed=0)


def hand_written(runner, epochs: int) -> float:
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


def with_runner(runner, epochs: int, interpretation_k: int = 5) -> float:
    runner.interpretation_k = interpretation_k  # 0: no best/worst samples published per validation pass
    start = time.perf_counter()
    runner.train(num_epochs=epochs, early_stopping_patience=epochs + 1)
    return (time.perf_counter() - start) / epochs


def child(workload: str, side: str, epochs: int, interpretation_k: int) -> None:
    torch.manual_seed(0)
    spec = WORKLOADS[workload]
    build = tabular_runner if workload == "tabular" else cnn_runner
    runner = build(tempfile.mkdtemp(), spec["samples"], spec["batch"])
    # The first optimizer built in a process imports torch._dynamo (seconds): pay it before either clock starts.
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    cpu_before = _cpu_seconds()
    seconds = with_runner(runner, epochs, interpretation_k) if side == "runner" else hand_written(runner, epochs)
    cpu = (_cpu_seconds() - cpu_before) / epochs  # includes setup inside train(); robust to other tenants
    seen = len(runner.splits["train"]) + len(runner.splits["valid"])
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "samples_per_s": seen / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interpretation-k", type=int, default=5,
                        help="the runner's best/worst samples per task and validation pass (0: off)")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.epochs, args.interpretation_k)
    print(f"{torch.get_num_threads()} torch threads, {args.epochs} epochs, best of {args.rounds} alternating rounds, "
          f"interpretation_k={args.interpretation_k}")
    print(f"{'workload':>8s} | {'side':>6s} | {'ms/epoch':>9s} | {'CPU ms/epoch':>12s} | {'samples/s':>9s} | "
          f"{'peak RSS MB':>11s}")
    for workload in args.workload:
        best = {}
        for _ in range(args.rounds):
            for side in ("hand", "runner"):
                done = subprocess.run([sys.executable, __file__, "--child", workload, side, "--epochs",
                                       str(args.epochs), "--interpretation-k", str(args.interpretation_k)],
                                      capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if side not in best or result["seconds"] < best[side]["seconds"]:
                    best[side] = result
        for side, r in best.items():
            print(f"{workload:>8s} | {side:>6s} | {r['seconds'] * 1e3:9.1f} | {r['cpu_seconds'] * 1e3:12.1f} | "
                  f"{r['samples_per_s']:9.0f} | {r['peak_rss_mb']:11.0f}")
        print(f"{workload:>8s} | ratio runner / hand-written: wall {best['runner']['seconds'] / best['hand']['seconds']:.3f}"
              f", CPU {best['runner']['cpu_seconds'] / best['hand']['cpu_seconds']:.3f}")


if __name__ == "__main__":
    main()
