"""Memory growth of the tabular workload with the number of rows: the library's own peak RSS, stage by stage.

The workload is ``bench_overhead.py``'s tabular one (16 float32 inputs, a 6-task conditional flow, MLP of width
128, batch 128). Each row count runs in a fresh child process (so its peak is its own), which first builds the
DataFrame and then measures only what the library adds on top of it: the DataFrame is the user's and is not counted.
Stages, each measured from its own start (``/proc/self/clear_refs`` resets the peak, ``VmHWM`` reads it):

- ``convert``: ``Project(df, ...)`` (the columns converted to tensors) and ``add_flow``;
- ``model``: ``tabular_model(project)``;
- ``runner``: ``project.runner(...)`` (run directory, splits.json, fitted target scaling, loaders);
- ``epoch``: ``runner.train(num_epochs=1)``, one training epoch with its validation pass;
- ``reopen`` (``--reopen``, instead of ``epoch``): a second ``project.runner(...)`` on the same run directory, which
  reads splits.json back as ``resume``, ``infer()`` or ``predict`` in a new process do (the first runner is still
  held, so this stage's peak stands on top of it; in a new process it would not).

Reported per row count: the DataFrame's column bytes (``df.memory_usage(deep=True, index=False)``), the peak RSS
above the RSS the process had once the DataFrame existed, per stage and overall (the largest), and the RSS each
stage leaves behind. The growth ratio compares the first and the last row count: (overall peak at the last - at the
first) / (column bytes at the last - at the first). Target (issue 28): <= 1.5 from 10^4 to 10^6 rows.

Linux only (it reads ``/proc/self/status``).

    python benchmarks/bench_memory.py [--rows 10000 1000000] [--no-epoch | --reopen]
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

STAGES = ("convert", "model", "runner", "reopen", "epoch")


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets VmHWM to the current RSS, so each stage's peak is its own.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(rows: int, epoch: bool, reopen: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    from bench_overhead import tabular_frame, tabular_project  # puts the checkout first on sys.path
    from dnn_cool_catalyst.tabular import tabular_model

    df = tabular_frame(rows)
    columns_mb = df.memory_usage(deep=True, index=False).sum() / 2 ** 20
    gc.collect()
    base = _status_mb("VmRSS")
    peak, kept, seconds = {}, {}, {}
    state = {}

    def stage(name, fn):
        _reset_peak()
        start = time.perf_counter()
        state[name] = fn()
        seconds[name] = time.perf_counter() - start
        peak[name] = _status_mb("VmHWM") - base
        kept[name] = _status_mb("VmRSS") - base

    stage("convert", lambda: tabular_project(tempfile.mkdtemp(), df))
    stage("model", lambda: tabular_model(state["convert"], hidden=128))
    stage("runner", lambda: state["convert"].runner(state["model"], "bench", batch_size=128, seed=0))
    if reopen:
        stage("reopen", lambda: state["convert"].runner(state["model"], "bench", batch_size=128, seed=0))
    elif epoch:
        stage("epoch", lambda: state["runner"].train(num_epochs=1, verbose=False))
    return {"rows": rows, "columns_mb": columns_mb, "base_mb": base, "peak": peak, "kept": kept,
            "seconds": seconds, "total": max(peak.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10000, 1000000])
    parser.add_argument("--no-epoch", action="store_true", help="stop after building the runner")
    parser.add_argument("--reopen", action="store_true", help="a second runner on the run directory, no epoch")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, not args.no_epoch, args.reopen)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    results = []
    for rows in args.rows:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(rows)] + (["--no-epoch"] * args.no_epoch) \
            + (["--reopen"] * args.reopen)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    stages = [s for s in STAGES if s in results[0]["peak"]]
    print("peak RSS above the process's RSS once the DataFrame exists, MB (kept after the stage in brackets)")
    print(f"{'rows':>9s} | {'columns':>7s} | " + " | ".join(f"{s:>13s}" for s in stages) + f" | {'peak':>6s} | "
          f"{'peak/columns':>12s}")
    for r in results:
        cells = " | ".join(f"{r['peak'][s]:6.0f} ({r['kept'][s]:4.0f})" for s in stages)
        print(f"{r['rows']:9d} | {r['columns_mb']:7.1f} | {cells} | {r['total']:6.0f} | "
              f"{r['total'] / r['columns_mb']:12.2f}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (last["total"] - first["total"]) / (last["columns_mb"] - first["columns_mb"])
        target = "" if args.reopen else " (target <= 1.5)"  # a reopen stands on the first runner's memory
        print(f"growth {first['rows']} -> {last['rows']} rows: peak +{last['total'] - first['total']:.0f} MB for "
              f"columns +{last['columns_mb'] - first['columns_mb']:.1f} MB, ratio {growth:.2f}{target}")
        for s in stages:
            print(f"  {s:>7s}: peak +{last['peak'][s] - first['peak'][s]:.0f} MB, "
                  f"{last['seconds'][s]:.1f} s at {last['rows']} rows")


if __name__ == "__main__":
    main()
