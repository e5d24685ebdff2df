"""Training overhead: epoch time of ``runner.train`` against the limit and against a hand-written loop over our
DataLoader.

Three sides, same model, data, splits, batch size, masked multi-task loss (``flow.get_loss()``), AdamW steps and a
no-grad validation pass per epoch:

- ``limit``: a hand-written loop over the split's tensors resident on the device (decoded once: floats), batches
  taken by index (a random permutation per epoch). No data path at all: what a training step costs.
- ``hand``: a hand-written loop over the runner's own DataLoaders (``runner.split_loader``), batches copied to the
  device. It shares our data path and hides its costs, hence the limit.
- ``runner``: ``runner.train`` (its data path as ``device_data="auto"`` places it; Catalyst's loop, per-task metric
  statistics and loss logging, TensorBoard/CSV logs, checkpoints, the scheduler, early stopping).

``data ms`` is the data-only epoch of each side: its train + valid batches fetched (and on the device), nothing
else (for the runner: the loaders as it places them).

Workloads:
- ``tabular``: an MLP over 16 numeric columns with a 6-task conditional flow (binary, ``~``, classification,
  bounded regression, regression), 20,000 rows, batch 128. Target: runner / limit <= 1.3 on the CPU.
- ``cnn``: the security demo's CNN on its synthetic 64x64 scenes (``dnn_cool_catalyst.synthetic``), 10,000 scenes,
  batch 64 (``--batch`` to change). GPU targets: runner / limit <= 1.5 at batch 64, <= 1.3 at batch 1024.

Every measurement runs in a fresh child process (so peak memory is its own) and the sides alternate over
``--rounds``; the best epoch time of each side is kept. Figures: wall and CPU ms/epoch, data-only ms/epoch,
samples/s, peak RSS, and the ratios. ``--device`` defaults to the CPU, plus CUDA when present.

``--paired`` adds a fourth measurement: in one process, each of the runner's epochs preceded by one limit epoch
(a copy of the model), and the median of the per-epoch ratios; this machine's speed drifts by 25% over seconds,
which moves the ratio of two processes' best times by as much as the overhead being measured.

    python benchmarks/bench_overhead.py [--workload tabular cnn] [--device cpu cuda] [--epochs 2] [--rounds 2]
                                        [--paired]
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


def tabular_project(run_dir: str, df: pd.DataFrame):
    """The tabular workload's project and 6-task flow over ``df`` (a :func:`tabular_frame`)."""
    from dnn_cool_catalyst import Converters, Project

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

    return project


def tabular_runner(run_dir: str, samples: int, batch: int):
    from dnn_cool_catalyst.tabular import tabular_model

    project = tabular_project(run_dir, tabular_frame(samples))
    return project.runner(tabular_model(project, hidden=128), "bench", batch_size=batch, seed=0)


def cnn_runner(run_dir: str, samples: int, batch: int):
    from dnn_cool_catalyst.synthetic.security import security_project
    from dnn_cool_catalyst.synthetic.security_model import security_model

    project = security_project(run_dir, n_samples=samples, seed=0)
    return project.runner(security_model(project.get_full_flow()), "bench", batch_size=batch, seed=0)


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def _steps(model, loss_fn, optimizer, train, valid, epochs: int):
    """The hand-written loop: ``train`` / ``valid`` are zero-argument callables yielding device batches.
    Returns (wall, CPU) seconds per epoch."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(epochs):
        model.train()
        for batch in train():
            optimizer.zero_grad()
            loss = loss_fn(model(batch["inputs"]), batch)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for batch in valid():
                loss_fn(model(batch["inputs"]), batch)
    _sync(next(model.parameters()).device)
    return (time.perf_counter() - start) / epochs, (_cpu_seconds() - cpu) / epochs


def _data_only(train, valid, device, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for make in (train, valid):
            for _batch in make():
                pass
    _sync(device)
    return (time.perf_counter() - start) / epochs


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def resident_split(runner, split: str, device) -> dict:
    """The split's rows as one batch dict of decoded tensors on ``device``."""
    from dnn_cool_catalyst.data.columns import take

    dataset = runner.dataset
    rows = torch.as_tensor(runner.splits[split], dtype=torch.long)
    data = dataset.data
    return _to({"inputs": {n: take(data.inputs[n], rows) for n in dataset.input_names},
                "targets": {n: data.targets[n].index_select(0, rows) for n in dataset.task_names},
                "available": {n: data.available[n].index_select(0, rows) for n in dataset.task_names},
                "index": rows, "valid": torch.ones(len(rows), dtype=torch.bool)}, device)


def limit_batches(split: dict, batch_size: int, shuffle: bool):
    """Batches of a resident split by index: what a hand-written loop without a data path does."""
    def pick(tree, index):
        return {k: pick(v, index) for k, v in tree.items()} if isinstance(tree, dict) else tree.index_select(0, index)

    n, device = split["index"].shape[0], split["index"].device

    def batches():
        order = torch.randperm(n, device=device) if shuffle else torch.arange(n, device=device)
        for start in range(0, n, batch_size):
            yield pick(split, order[start:start + batch_size])
    return batches


def limit_side(runner, epochs: int, device, batch_size: int):
    model = runner.model.to(device)
    runner._materialize()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = limit_batches(resident_split(runner, "train", device), batch_size, shuffle=True)
    valid = limit_batches(resident_split(runner, "valid", device), batch_size, shuffle=False)
    data = _data_only(train, valid, device, epochs)
    return (*_steps(model, runner.flow.get_loss(), optimizer, train, valid, epochs), data)


def hand_side(runner, epochs: int, device, batch_size: int):
    model = runner.model.to(device)
    runner._materialize()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_loader, valid_loader = runner.split_loader("train", shuffle=True), runner.split_loader("valid")

    def train():
        return (_to(b, device) for b in train_loader)

    def valid():
        return (_to(b, device) for b in valid_loader)
    data = _data_only(train, valid, device, epochs)
    return (*_steps(model, runner.flow.get_loss(), optimizer, train, valid, epochs), data)


def runner_side(runner, epochs: int, device, batch_size: int, interpretation_k: int = 5):
    from dnn_cool_catalyst.training.engine import default_engine

    runner.interpretation_k = interpretation_k  # 0: no best/worst samples published per validation pass
    placed = {split: runner._placed_loader(runner.split_loader(split, shuffle=split == "train"), device)
              or runner.split_loader(split, shuffle=split == "train") for split in ("train", "valid")}
    data = _data_only(lambda: (_to(b, device) for b in placed["train"]),
                      lambda: (_to(b, device) for b in placed["valid"]), device, epochs)
    start, cpu = time.perf_counter(), _cpu_seconds()
    runner.train(num_epochs=epochs, early_stopping_patience=epochs + 1, engine=default_engine(device))
    _sync(device)
    return (time.perf_counter() - start) / epochs, (_cpu_seconds() - cpu) / epochs, data


def paired_side(runner, epochs: int, device, batch_size: int, interpretation_k: int = 5, on_epoch_closed=None,
                **train_kwargs):
    """``runner.train`` whose every epoch is preceded by one limit epoch in the same process (a copy of the model
    with its own AdamW): on a machine whose speed drifts over seconds, adjacent epochs see the same speed, so
    their ratio is steadier than the ratio of two processes' best times. Returns the per-epoch (limit, runner)
    wall seconds; the runner's epoch runs from its start to the next epoch's start (every callback included).
    ``on_epoch_closed()`` is called as each runner epoch is timed; ``train_kwargs`` go to ``runner.train``."""
    import copy

    from catalyst import dl

    from dnn_cool_catalyst.training.engine import default_engine

    runner.interpretation_k = interpretation_k
    runner._materialize()
    model = copy.deepcopy(runner.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = limit_batches(resident_split(runner, "train", device), batch_size, shuffle=True)
    valid = limit_batches(resident_split(runner, "valid", device), batch_size, shuffle=False)
    loss_fn = runner.flow.get_loss()
    pairs = []

    class PairedLimit(dl.Callback):
        def __init__(self):
            super().__init__(order=dl.CallbackOrder.Internal)  # before every other callback's epoch start
            self.started = None

        def _close(self):
            if self.started is not None:
                pairs[-1] = (pairs[-1][0], time.perf_counter() - self.started)
                if on_epoch_closed is not None:
                    on_epoch_closed()

        def on_epoch_start(self, _):
            _sync(device)
            self._close()
            state = torch.get_rng_state()  # the runner's random stream stays its own
            pairs.append((_steps(model, loss_fn, optimizer, train, valid, 1)[0], None))
            torch.set_rng_state(state)
            self.started = time.perf_counter()

        def on_experiment_end(self, _):
            _sync(device)
            self._close()

    runner.train(num_epochs=epochs, early_stopping_patience=epochs + 1, engine=default_engine(device),
                 callbacks={"paired_limit": PairedLimit()}, **train_kwargs)
    return pairs


SIDES = {"limit": limit_side, "hand": hand_side, "runner": runner_side}


def child(workload: str, side: str, device: str, epochs: int, interpretation_k: int, batch: int,
          samples: int = 0) -> None:
    torch.manual_seed(0)
    spec = WORKLOADS[workload]
    build = tabular_runner if workload == "tabular" else cnn_runner
    runner = build(tempfile.mkdtemp(), samples or spec["samples"], batch)
    # The first optimizer built in a process imports torch._dynamo (seconds): pay it before either clock starts.
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    kwargs = {"interpretation_k": interpretation_k} if side in ("runner", "paired") else {}
    if side == "paired":
        print(json.dumps({"pairs": paired_side(runner, epochs, torch.device(device), batch, **kwargs)}))
        return
    # CPU time of the training alone (the runner's includes the set-up inside train()): robust to other tenants.
    seconds, cpu, data_seconds = SIDES[side](runner, epochs, torch.device(device), batch, **kwargs)
    seen = len(runner.splits["train"]) + len(runner.splits["valid"])
    print(json.dumps({"seconds": seconds, "data_seconds": data_seconds, "cpu_seconds": cpu,
                      "samples_per_s": seen / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_child(workload: str, side: str, device: str, args, batch: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", workload, side, device, "--epochs", str(args.epochs),
                           "--interpretation-k", str(args.interpretation_k), "--batch", str(batch),
                           "--samples", str(args.samples or 0)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{workload}/{side}/{device} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--device", nargs="+", default=None, choices=["cpu", "cuda"],
                        help="default: cpu, and cuda when a GPU is present")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the workload's)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=None,
                        help="rows (tabular) or frames (cnn) instead of the workload's (growth: 10^4 .. 10^6)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interpretation-k", type=int, default=5,
                        help="the runner's best/worst samples per task and validation pass (0: off)")
    parser.add_argument("--paired", action="store_true",
                        help="also time limit and runner epochs alternately in one process (a steadier ratio on a "
                             "machine whose speed drifts)")
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "SIDE", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload = args.child[0]
        return child(*args.child, args.epochs, args.interpretation_k, args.batch or WORKLOADS[workload]["batch"],
                     args.samples or 0)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if args.samples and "tabular" in args.workload:  # what the peak RSS grows against
        raw = tabular_frame(args.samples).memory_usage(deep=True, index=False).sum() / 2 ** 20
        print(f"tabular: {args.samples} rows, the DataFrame's columns {raw:.1f} MB")
    print(f"{torch.get_num_threads()} torch threads, {args.epochs} epochs, best of {args.rounds} alternating rounds, "
          f"interpretation_k={args.interpretation_k}")
    print(f"{'workload':>8s} | {'device':>6s} | {'batch':>5s} | {'side':>6s} | {'ms/epoch':>9s} | {'data ms':>8s} | "
          f"{'CPU ms/epoch':>12s} | {'samples/s':>9s} | {'peak RSS MB':>11s}")
    for device in devices:
        for workload in args.workload:
            batch = args.batch or WORKLOADS[workload]["batch"]
            best = {}
            for _ in range(args.rounds):
                for side in SIDES:
                    result = _run_child(workload, side, device, args, batch)
                    if side not in best or result["seconds"] < best[side]["seconds"]:
                        best[side] = result
            for side, r in best.items():
                print(f"{workload:>8s} | {device:>6s} | {batch:5d} | {side:>6s} | {r['seconds'] * 1e3:9.1f} | "
                      f"{r['data_seconds'] * 1e3:8.1f} | {r['cpu_seconds'] * 1e3:12.1f} | {r['samples_per_s']:9.0f} | "
                      f"{r['peak_rss_mb']:11.0f}")
            limit, hand, runner = best["limit"], best["hand"], best["runner"]
            print(f"{workload:>8s} | {device:>6s} | ratio runner / limit: wall "
                  f"{runner['seconds'] / limit['seconds']:.3f}, CPU {runner['cpu_seconds'] / limit['cpu_seconds']:.3f}"
                  f"; runner / hand: wall {runner['seconds'] / hand['seconds']:.3f}; hand / limit: wall "
                  f"{hand['seconds'] / limit['seconds']:.3f}")
            if args.paired:
                ratios = []
                for _ in range(args.rounds):
                    result = _run_child(workload, "paired", device, args, batch)
                    ratios += [r / lim for lim, r in result["pairs"]]
                ratios.sort()
                print(f"{workload:>8s} | {device:>6s} | paired in one process, runner / limit per epoch: median "
                      f"{ratios[len(ratios) // 2]:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}, "
                      f"{len(ratios)} epochs)")


if __name__ == "__main__":
    main()
