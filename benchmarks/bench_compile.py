"""``train(compile=True)`` against the hand-written eager loop, and the per-batch work left outside the compiled step.

Workloads and the limit come from ``benchmarks/bench_overhead.py`` (imported, not copied): the 6-task conditional
tabular flow (MLP over 16 numeric columns; binary, ``~``, classification, bounded regression, regression; 20,000
rows, batch 128) and the security demo's CNN (10,000 synthetic 64x64 scenes, batch 64). The **limit** is
bench_overhead's hand-written eager loop: the split's tensors held in memory, batches taken by index, the same
model (a copy of the runner's initial weights), the flow's masked loss, AdamW, a no-grad validation pass per epoch.

Everything runs in one process, per workload: a runner trained eagerly, then a fresh runner (same initial weights)
trained with ``compile=True``, each of their epochs preceded by one limit epoch (this machine's speed drifts by 25%
over seconds; adjacent epochs see the same speed). Reported per side: the first epoch (for ``compile=True`` it holds
the compilation: ``compile s`` is that epoch minus the median later epoch), the median of the later epochs, and the
median per-epoch ratio runner / limit over the later epochs. Targets (issue 28): compiled runner <= 0.85x the
limit, eager runner <= 1.3x.

``--profile`` (default on) also times, per epoch, the per-batch work the runner does outside the step (the
callbacks' ``on_batch_end``: loss bookkeeping, metric statistics, NaN guard, best/worst samples) and prints ms per
epoch for each, eager and compiled.

The real run (about 15 minutes on a 2-core CPU; nothing else running):

    OMP_NUM_THREADS=2 python benchmarks/bench_compile.py --workload tabular cnn --epochs 8

Smoke check (a minute or two; figures meaningless):

    python benchmarks/bench_compile.py --workload tabular --epochs 2 --samples 2000
"""
import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_overhead import WORKLOADS, cnn_runner, paired_side, tabular_runner  # noqa: E402

#: The callbacks whose per-batch work stays outside the compiled step (import path, class name, label).
PROFILED = (("dnn_cool_catalyst.callbacks.criterion", "FlowCriterionCallback", "loss bookkeeping"),
            ("dnn_cool_catalyst.callbacks.metrics", "FlowMetricsCallback", "metric statistics"),
            ("dnn_cool_catalyst.callbacks.nan_guard", "NanGuardCallback", "NaN guard"),
            ("dnn_cool_catalyst.interpretation.callback", "InterpretationCallback", "best/worst samples"))


class CallbackTimer:
    """Wraps the ``on_batch_end`` of the classes in :data:`PROFILED` (class-level, this process only) and sums
    their wall time per epoch."""

    def __init__(self):
        import importlib

        self.current = defaultdict(float)
        self.epochs = []
        self.originals = []
        for module, name, label in PROFILED:
            cls = getattr(importlib.import_module(module), name)
            self.originals.append((cls, cls.on_batch_end))
            cls.on_batch_end = self._timed(cls.on_batch_end, label)

    def restore(self):
        """Put the callbacks' own on_batch_end back."""
        for cls, method in self.originals:
            cls.on_batch_end = method

    def _timed(self, method, label):
        def timed(callback, runner):
            start = time.perf_counter()
            try:
                return method(callback, runner)
            finally:
                self.current[label] += time.perf_counter() - start
        return timed

    def close_epoch(self):
        self.epochs.append(dict(self.current))
        self.current.clear()


def build(workload: str, samples: int, batch: int):
    torch.manual_seed(0)
    return (tabular_runner if workload == "tabular" else cnn_runner)(tempfile.mkdtemp(), samples, batch)


def paired_train(runner, initial_state, epochs: int, batch: int, compile: bool, timer=None):
    """``runner.train(compile=compile)`` from ``initial_state``, each epoch preceded by one limit epoch
    (``bench_overhead.paired_side``: a copy of the model with the same initial weights and its own AdamW). Returns
    ``[(limit s, runner s), ...]`` per epoch."""
    runner._materialize()
    runner.model.load_state_dict(initial_state)
    return paired_side(runner, epochs, torch.device("cpu"), batch,
                       on_epoch_closed=timer.close_epoch if timer is not None else None,
                       compile=compile, verbose=False)


def summarise(pairs) -> dict:
    later = pairs[1:] or pairs
    return {"first_epoch_s": pairs[0][1], "first_limit_s": pairs[0][0],
            "epoch_s": statistics.median(r for _, r in later), "limit_s": statistics.median(lim for lim, _ in later),
            "ratio": statistics.median(r / lim for lim, r in later),
            "ratio_min": min(r / lim for lim, r in later), "ratio_max": max(r / lim for lim, r in later),
            "epochs_measured": len(later)}


def run_workload(workload: str, samples: int, batch: int, epochs: int, profile: bool) -> dict:
    results, initial = {}, None
    for compile in (False, True):
        runner = build(workload, samples, batch)
        runner._materialize()
        if initial is None:  # both sides (and their limits) start from the eager side's initial weights
            initial = copy.deepcopy(runner.model.state_dict())
        timer = CallbackTimer() if profile else None
        pairs = paired_train(runner, initial, epochs, batch, compile, timer)
        side = summarise(pairs)
        side["pairs"] = pairs
        if compile:
            side["compile_s"] = side["first_epoch_s"] - side["epoch_s"]
        if timer is not None:
            later = timer.epochs[1:] or timer.epochs
            side["outside_step_ms_per_epoch"] = {label: 1e3 * statistics.median(e.get(label, 0.0) for e in later)
                                                 for _, _, label in PROFILED}
            timer.restore()
        results["compiled" if compile else "eager"] = side
    results["rows"] = {"train": len(runner.splits["train"]), "valid": len(runner.splits["valid"])}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", nargs="+", default=["tabular"], choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=8, help="per side; the first epoch is reported apart")
    parser.add_argument("--samples", type=int, default=None, help="rows (default: bench_overhead's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: bench_overhead's)")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="do not time the callbacks' per-batch work")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    # The first optimizer of a process imports torch._dynamo (seconds): pay it before any clock starts.
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    print(f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {args.epochs} epochs per side")
    report = {}
    for workload in args.workload:
        samples = args.samples or WORKLOADS[workload]["samples"]
        batch = args.batch or WORKLOADS[workload]["batch"]
        result = report[workload] = run_workload(workload, samples, batch, args.epochs, args.profile)
        print(f"\n{workload}: {samples} rows ({result['rows']['train']} train, {result['rows']['valid']} valid), "
              f"batch {batch}")
        print(f"{'side':>9s} | {'epoch 1 s':>9s} | {'later s':>8s} | {'limit s':>8s} | {'runner/limit':>12s} | "
              f"{'(min-max)':>13s} | {'compile s':>9s}")
        for side in ("eager", "compiled"):
            r = result[side]
            print(f"{side:>9s} | {r['first_epoch_s']:9.2f} | {r['epoch_s']:8.3f} | {r['limit_s']:8.3f} | "
                  f"{r['ratio']:12.3f} | {r['ratio_min']:6.3f}-{r['ratio_max']:6.3f} | "
                  f"{r.get('compile_s', 0.0):9.1f}")
        eager, compiled = result["eager"], result["compiled"]
        print(f"compiled / eager runner (later epochs): {compiled['epoch_s'] / eager['epoch_s']:.3f}; "
              f"targets: compiled/limit <= 0.85 ({compiled['ratio']:.3f}), eager/limit <= 1.3 ({eager['ratio']:.3f})")
        if args.profile:
            print("per-batch work outside the step, ms per epoch (eager | compiled): " + ", ".join(
                f"{label} {eager['outside_step_ms_per_epoch'][label]:.1f} | "
                f"{compiled['outside_step_ms_per_epoch'][label]:.1f}" for _, _, label in PROFILED))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
