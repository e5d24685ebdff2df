"""How the framework's cost grows with the number of tasks and with the nesting depth of flows.

For each shape, one training step (forward of the heads, masked multi-task loss, backward) on a shared trunk's
features, library (``flow.torch()`` + ``flow.get_loss()``) against a hand-written loop over the same heads with
the same masks and masked-mean BCE losses. Reported per shape: ms per step for both, their ratio (the framework's
share is ``1 - 1/ratio``), and the memory autograd keeps for backward (bytes of saved tensors, both ways).

- tasks: 2, 8, 32, 128 binary tasks in one flow, task ``i`` conditioned on task ``(i-1)//2`` (a binary tree);
- depth: 1, 4, 16 nested flows, each holding two tasks and the next flow under ``| out.<its first task>``.

    python benchmarks/bench_growth.py [--batch 256] [--features 128] [--reps 60]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from dnn_cool_catalyst import BinaryTask, TaskFlow


def tree_flow(k: int, features: int):
    tasks = [BinaryTask(f"t{i}", features) for i in range(k)]
    parents = {f"t{i}": (f"t{(i - 1) // 2}" if i else None) for i in range(k)}

    def tree(flow, x, out):
        for i in range(k):
            head = getattr(flow, f"t{i}")(x.features)
            out += head | getattr(out, parents[f"t{i}"]) if i else head
        return out

    return TaskFlow.from_function(tree, tasks), parents


def nested_flow(depth: int, features: int):
    tasks = [BinaryTask(f"d{j}_{s}", features) for j in range(depth) for s in "ab"]
    parents, flows = {}, {}
    for j in reversed(range(depth)):
        inner = f"level{j + 1}" if j + 1 < depth else None

        def level(flow, x, out, j=j, inner=inner):
            out += getattr(flow, f"d{j}_a")(x.features)
            out += getattr(flow, f"d{j}_b")(x.features) | getattr(out, f"d{j}_a")
            if inner:
                out += getattr(flow, inner)(x) | getattr(out, f"d{j}_a")
            return out

        level.__name__ = f"level{j}"
        flows[f"level{j}"] = TaskFlow.from_function(level, tasks, flows={k: v for k, v in flows.items()
                                                                         if k == inner})
    for j in range(depth):  # every task inside level j+1 also needs d{j}_a
        parents[f"d{j}_a"] = f"d{j - 1}_a" if j else None
        parents[f"d{j}_b"] = f"d{j}_a"
    return flows["level0"], parents


def hand_written(heads, parents, feats, targets, available):
    """A generic hand-written multi-task step: each task's mask is its availability and its parent's positive,
    labelled mask (for nested flows the parent chain already carries the outer conditions)."""
    masks, loss = {}, 0.0
    for name, parent in parents.items():  # parents before children
        mask = available[name]
        if parent is not None:
            mask = mask & masks[parent] & (targets[parent] > 0.5)
        masks[name] = mask
        element = F.binary_cross_entropy_with_logits(heads[name](feats).squeeze(-1), targets[name], reduction="none")
        loss = loss + torch.where(mask, element, 0.0).sum() / mask.sum().clamp(min=1)
    return loss


def saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def measure(flow, parents, batch: int, features: int, reps: int):
    g = torch.Generator().manual_seed(0)
    names = list(parents)
    targets = {k: (torch.rand(batch, generator=g) > 0.4).float() for k in names}
    available = {k: torch.rand(batch, generator=g) > 0.1 for k in names}
    feats = torch.randn(batch, features, generator=g, requires_grad=True)
    module, loss_fn = flow.torch().train(), flow.get_loss()
    data = {"targets": targets, "available": available}

    def ours():
        loss = loss_fn(module({"features": feats}), data)
        loss.backward()
        return loss

    def theirs():
        loss = hand_written(module.heads, parents, feats, targets, available)
        loss.backward()
        return loss

    assert torch.allclose(ours(), theirs(), atol=1e-5), "hand-written and library losses must agree"
    times = {"library": [], "hand": []}
    for _ in range(5):
        ours(), theirs()
    for _ in range(reps):
        for name, fn in (("library", ours), ("hand", theirs)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return med, saved_bytes(ours), saved_bytes(theirs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--reps", type=int, default=60)
    args = parser.parse_args()
    print(f"batch {args.batch}, {args.features} features, {torch.get_num_threads()} threads, median of "
          f"{args.reps} alternating reps")
    print(f"{'shape':>14s} | {'tasks':>5s} | {'library ms':>10s} | {'hand ms':>8s} | {'ratio':>5s} | "
          f"{'saved MB lib':>12s} | {'saved MB hand':>13s}")
    shapes = [(f"tasks={k}", *tree_flow(k, args.features)) for k in (2, 8, 32, 128)]
    shapes += [(f"depth={d}", *nested_flow(d, args.features)) for d in (1, 4, 16)]
    for label, flow, parents in shapes:
        med, lib_bytes, hand_bytes = measure(flow, parents, args.batch, args.features, args.reps)
        print(f"{label:>14s} | {len(parents):5d} | {med['library']:10.3f} | {med['hand']:8.3f} | "
              f"{med['library'] / med['hand']:5.2f} | {lib_bytes / 2**20:12.2f} | {hand_bytes / 2**20:13.2f}")


if __name__ == "__main__":
    main()
