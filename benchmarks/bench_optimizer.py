"""The optimizer step alone: AdamW's for-loop, foreach and fused implementations and ``torch.compile`` of the
for-loop step, over one epoch of ``bench_overhead.py``'s 6-task tabular flow (20,000 rows, batch 128, CPU).

Why: on a small model the optimizer step is a large share of the training step, and it is the one part a
``torch.compile`` of model + loss does not cover. Each variant gets its own copy of the same initial weights;
forward and backward run as usual and only ``optimizer.step()`` is timed (best of ``--repeat`` epochs).

    OMP_NUM_THREADS=2 python benchmarks/bench_optimizer.py [--samples 20000] [--repeat 3]
"""
import argparse
import copy
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_overhead as bo  # noqa: E402  (puts the repository on sys.path too)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        runner = bo.tabular_runner(folder, args.samples, 128)
        runner._materialize()
        loss_fn = runner.flow.get_loss()
        batches = list(bo.limit_batches(bo.resident_split(runner, "train", "cpu"), 128, shuffle=True)())
        variants = {"for-loop (torch default on the CPU)": dict(foreach=False), "foreach": dict(foreach=True),
                    "fused (train()'s default)": dict(fused=True), "torch.compile of the for-loop step": None}
        print(f"{torch.__version__}, {torch.get_num_threads()} threads, {len(batches)} batches per epoch, "
              f"{sum(p.numel() for p in runner.model.parameters())} parameters")
        for name, kwargs in variants.items():
            model = copy.deepcopy(runner.model)
            if kwargs is None:
                optimizer = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3))  # no recompile per lr
                step = torch.compile(optimizer.step)
            else:
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, **kwargs)
                step = optimizer.step
            best = float("inf")
            for _ in range(args.repeat + (1 if kwargs is None else 0)):  # the compiled one: a first epoch compiles
                seconds = 0.0
                for batch in batches:
                    optimizer.zero_grad()
                    loss_fn(model(batch["inputs"]), batch).backward()
                    start = time.perf_counter()
                    step()
                    seconds += time.perf_counter() - start
                best = min(best, seconds)
            print(f"{name:40s} {best * 1000:8.1f} ms per epoch")


if __name__ == "__main__":
    main()
