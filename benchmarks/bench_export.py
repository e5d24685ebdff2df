"""Latency of the deployable export against the eager model, at batch 1 and 256 on the CPU.

After a one-epoch training run of a workload from ``bench_overhead.py`` (the 6-task tabular flow by default; the
security demo's CNN with ``--workload cnn``), exports it with ``runner.export(format="torch")`` and times, on
the same batches of the run's own inputs:

- ``eager``: the in-process path, what the library does without an export (the model in eval mode under
  ``no_grad``, then the flow's decoders with the tuned thresholds and the decoded gating: the eager
  :class:`~dnn_cool_catalyst.export.DeployableModule`);
- ``torch.export``: the ``.pt2`` artifact, ``torch.export.load(path).module()``;
- ``onnxruntime``: the ONNX artifact in ONNX Runtime, when the ``onnx`` extra is installed (``--no-onnx`` skips it).

Each figure is the median of ``--repeats`` calls after warm-up, sides alternated so machine noise hits each alike;
printed with the ratio exported / eager (below 1: the export is faster). About 15 s of CPU time (training
included), so well under a minute on an idle 2-core machine:

    python benchmarks/bench_export.py [--workload tabular|cnn] [--repeats 200] [--threads N] [--no-onnx]
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_overhead import REPO, cnn_runner, tabular_runner  # noqa: E402

sys.path.insert(0, REPO)


def machine() -> str:
    return (f"{platform.node()} | {platform.platform()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
            f"{torch.get_num_threads()} torch threads | "
            f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")


def example_inputs(runner, batch_size: int) -> dict:
    """``batch_size`` rows of the run's inputs in the artifact's raw form (rows repeated when the split is
    smaller)."""
    from dnn_cool_catalyst.export.signature import imputed_columns, raw_example

    positions = (list(runner.splits["test"]) * batch_size)[:batch_size]
    inputs = runner.dataset.batch(positions)["inputs"]
    converters = runner.dataset.data.converters
    return raw_example(inputs, imputed_columns(converters, list(inputs)))


def timed(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("tabular", "cnn"), default="tabular")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    from dnn_cool_catalyst.export import DeployableModule
    from dnn_cool_catalyst.export.signature import imputed_columns

    build = cnn_runner if args.workload == "cnn" else tabular_runner
    runner = build(tempfile.mkdtemp(), args.samples, 128)
    runner.train(num_epochs=1)
    runner.infer(splits=["valid"])
    runner.tune()
    path = runner.export(format="torch")
    exported = torch.export.load(path).module()
    converters = runner.dataset.data.converters
    eager = DeployableModule(runner.model.cpu().eval(), runner.flow.graph,
                             imputed_columns(converters, list(runner.dataset.input_names))).eval()
    sides = {"eager": lambda x: eager(x), "torch.export": lambda x: exported(x)}
    if not args.no_onnx:
        try:
            import onnxruntime

            onnx_path = runner.export(format="onnx")
            session = onnxruntime.InferenceSession(onnx_path)
            names = [i.name for i in session.get_inputs()]
            sides["onnxruntime"] = lambda x: session.run(None, {n: x[n].numpy() for n in names})
        except ImportError:
            print("onnxruntime not installed: no ONNX side (pip install 'dnn_cool_catalyst[onnx]')")
    print(machine())
    print(f"workload {args.workload}, {len(runner.flow.tasks)} tasks, median of {args.repeats} calls")
    print(f"{'batch':>5} | {'side':>12} | {'ms/call':>8} | {'samples/s':>10} | ratio / eager")
    for batch_size in (1, 256):
        x = example_inputs(runner, batch_size)
        times = {name: [] for name in sides}
        with torch.no_grad():
            for fn in sides.values():  # warm-up
                for _ in range(5):
                    fn(x)
            for _ in range(4):  # alternate in rounds so noise hits every side alike
                for name, fn in sides.items():
                    times[name] += timed(lambda: fn(x), max(1, args.repeats // 4))
        base = statistics.median(times["eager"])
        for name, values in times.items():
            ms = statistics.median(values)
            print(f"{batch_size:>5} | {name:>12} | {ms * 1e3:>8.3f} | {batch_size / ms:>10.0f} | {ms / base:.3f}")


if __name__ == "__main__":
    main()
