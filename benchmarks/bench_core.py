"""Framework overhead of the core: forward + masked loss + backward of a 14-task conditional flow.

Compares ``flow.torch()`` + ``flow.get_loss()`` against a hand-written PyTorch equivalent that uses the same
heads (shared weights), the same masks and the same per-task masked-mean losses, on the same tensors. Timings
alternate between the two so machine noise hits both alike; the figure to read is the ratio.

    python benchmarks/bench_core.py [--batch 256] [--features 256] [--reps 200]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from dnn_cool_catalyst import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask,
                               RegressionTask, TaskFlow)


def build(features: int) -> TaskFlow:
    tasks = [BinaryTask(n, features) for n in ("camera_blocked", "door_open", "door_locked", "person_present",
                                               "is_adult", "wears_hat", "has_bag", "is_running")]
    tasks += [ClassificationTask("shirt_type", 7, in_features=features),
              ClassificationTask("pose", 5, in_features=features),
              MultilabelTask("facial_characteristics", 3, in_features=features),
              BoundedRegressionTask("face_x1", 0, 64, features), BoundedRegressionTask("face_y1", 0, 64, features),
              RegressionTask("distance", features)]

    def person(flow, x, out):
        out += flow.is_adult(x.features)
        out += flow.wears_hat(x.features) | out.is_adult
        out += flow.has_bag(x.features)
        out += flow.is_running(x.features) | ~out.has_bag
        out += flow.shirt_type(x.features)
        out += flow.pose(x.features) | (out.shirt_type == 3)
        out += flow.facial_characteristics(x.features)
        out += flow.face_x1(x.features)
        out += flow.face_y1(x.features)
        out += flow.distance(x.features)
        return out

    def security(flow, x, out):
        out += flow.camera_blocked(x.features)
        out += flow.door_open(x.features) | ~out.camera_blocked
        out += flow.door_locked(x.features) | ~out.door_open
        out += flow.person_present(x.features) | out.door_open
        out += flow.person(x) | out.person_present
        return out

    nested = TaskFlow.from_function(person, tasks)
    return TaskFlow.from_function(security, tasks, flows={"person": nested})


def make_batch(n: int, features: int):
    g = torch.Generator().manual_seed(0)
    binary = ["camera_blocked", "door_open", "door_locked", "person_present", "is_adult", "wears_hat", "has_bag",
              "is_running"]
    targets = {k: (torch.rand(n, generator=g) > 0.5).float() for k in binary}
    targets.update(shirt_type=torch.randint(0, 7, (n,), generator=g), pose=torch.randint(0, 5, (n,), generator=g),
                   facial_characteristics=(torch.rand(n, 3, generator=g) > 0.5).float(),
                   face_x1=torch.rand(n, generator=g), face_y1=torch.rand(n, generator=g),
                   distance=torch.randn(n, generator=g))
    available = {k: torch.rand(v.shape, generator=g) > 0.2 for k, v in targets.items()}
    return torch.randn(n, features, generator=g), {"targets": targets, "available": available}


def hand_written(heads, feats, batch):
    """What a user would write without the library, for exactly this flow."""
    t, a = batch["targets"], batch["available"]
    lo = {k: heads[k](feats) for k in t}

    def masked_mean(el, m):
        return torch.where(m, el, 0.0).sum() / m.sum().clamp(min=1)

    def bce(k, m):
        return masked_mean(F.binary_cross_entropy_with_logits(lo[k].squeeze(-1), t[k], reduction="none"), m)

    def holds(k, m):
        return (t[k] > 0.5) & m

    def not_holds(k, m):
        return (t[k] <= 0.5) & m

    m_cam = a["camera_blocked"]
    m_door = a["door_open"] & not_holds("camera_blocked", m_cam)
    m_lock = a["door_locked"] & not_holds("door_open", m_door)
    m_person = a["person_present"] & holds("door_open", m_door)
    p = holds("person_present", m_person)
    m_adult = a["is_adult"] & p
    m_hat = a["wears_hat"] & p & holds("is_adult", m_adult)
    m_bag = a["has_bag"] & p
    m_run = a["is_running"] & p & not_holds("has_bag", m_bag)
    m_shirt = a["shirt_type"] & p
    m_pose = a["pose"] & p & (t["shirt_type"] == 3) & m_shirt
    loss = (bce("camera_blocked", m_cam) + bce("door_open", m_door) + bce("door_locked", m_lock)
            + bce("person_present", m_person) + bce("is_adult", m_adult) + bce("wears_hat", m_hat)
            + bce("has_bag", m_bag) + bce("is_running", m_run))
    loss = loss + masked_mean(F.cross_entropy(lo["shirt_type"], t["shirt_type"], reduction="none"), m_shirt)
    loss = loss + masked_mean(F.cross_entropy(lo["pose"], t["pose"], reduction="none"), m_pose)
    m_fc = a["facial_characteristics"] & p[:, None]
    loss = loss + masked_mean(F.binary_cross_entropy_with_logits(lo["facial_characteristics"],
                                                                  t["facial_characteristics"], reduction="none"), m_fc)
    for k in ("face_x1", "face_y1"):
        loss = loss + masked_mean((torch.sigmoid(lo[k].squeeze(-1)) - t[k]) ** 2, a[k] & p)
    loss = loss + masked_mean((lo["distance"].squeeze(-1) - t["distance"]) ** 2, a["distance"] & p)
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    flow = build(args.features)
    module = flow.torch().train()
    loss_fn = flow.get_loss()
    feats, batch = make_batch(args.batch, args.features)
    feats.requires_grad_(True)  # stands in for a backbone, so backward reaches the features too

    def ours():
        loss = loss_fn(module({"features": feats}), batch)
        loss.backward()
        return loss

    def theirs():
        loss = hand_written(module.heads, feats, batch)
        loss.backward()
        return loss

    assert torch.allclose(ours(), theirs()), "the hand-written loss must equal the library's"
    times = {"library": [], "hand-written": []}
    for _ in range(20):
        ours(), theirs()
    for _ in range(args.reps):
        for name, fn in (("library", ours), ("hand-written", theirs)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"14-task flow, batch {args.batch}, {args.features} features, {torch.get_num_threads()} threads, "
          f"{args.reps} alternating reps (median)")
    print(f"{'':14s}{'ms/step':>10s}")
    for k, v in med.items():
        print(f"{k:14s}{v:10.3f}")
    print(f"ratio library / hand-written: {med['library'] / med['hand-written']:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
