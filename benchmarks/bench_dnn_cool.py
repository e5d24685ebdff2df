"""Training throughput of our runner against dnn_cool 0.4.0's (the predecessor library), on the security CNN.

What: samples/s per training epoch (train + valid samples of the epoch / its wall time) of the security demo's CNN
(``dnn_cool_catalyst.synthetic.security_model``, 65,516 parameters) on the demo's synthetic 64x64 frames, trained by

- ``ours``: ``project.runner(security_model(flow)).train(...)`` in this environment (Catalyst 22.4), with its
  defaults (AdamW lr 1e-3, plateau scheduler, metrics, TensorBoard, checkpoints, best/worst samples, NaN guard)
  except ``early_stopping_patience=epochs + 1``, as ``bench_overhead.py``'s ``runner`` side;
- ``dnn_cool``: ``dnn_cool.catalyst_utils.runner.DnnCoolSupervisedRunner.train(...)`` in a virtualenv with dnn_cool
  0.4.0 and Catalyst 20.12, with its defaults (its per-task loss and metric callbacks, Catalyst 20.12's default
  callbacks: console/TensorBoard logging, checkpoints, ReduceLROnPlateau, early stopping with patience 5, so keep
  ``--epochs`` <= 6) except the optimizer: AdamW at our lr 1e-3 instead of its 1e-4 (the same per-step work).

The same on both sides: the frames (generated once here, exported to .npy files in a temp dir that both sides
read), the flow (the security demo's four flows: ``camera_blocked``, ``door_open | ~camera_blocked``,
``door_locked | ~door_open``, ``person_present | door_open``, ``person_regression | person_present`` with the face
and body box / characteristic / shirt heads; dnn_cool 0.4.0 expresses all of it, it is its own synthetic demo's
flow), the model code (dnn_cool's side loads ``security_model.py`` from this checkout) and its initial weights (one
state dict saved here, loaded by both), the train / valid split (ours; passed to dnn_cool as
``train_test_val_indices``), batch size 64, the epochs, the losses (BCE with logits, cross-entropy, sigmoid + MSE
for the boxes, masked where a label or a precondition is missing), torch threads (``--threads``, default 2), the
torch build (2.13.0+cpu). Each run is a fresh process, the sides alternate (ours, dnn_cool, ours, ...) over
``--reps``; the first epoch of each run is warm-up and left out; per-epoch samples/s are pooled over the runs
(min / median / max) and the ratio is ours / dnn_cool of the medians.

Differences left (each side as its library does it):
- data path: ours gathers batches from in-memory uint8 tensors (``device_data="auto"``) and converts them to float
  per batch; dnn_cool indexes a per-sample ``FlowDataset`` (float32 CHW images in memory, as its own synthetic
  demo keeps them; a dict of targets, availabilities and precondition ground truth per sample) through a
  DataLoader with default collation, ``num_workers=0``.
- per-batch bookkeeping: ours per-task metric statistics, the loss callback, the NaN guard, best/worst samples at
  validation end; dnn_cool one Catalyst ``BatchMetricCallback`` per task loss and per task metric (accuracy, F1,
  MAE..., computed on every batch), Catalyst 20.12's metric manager, timer and loggers.
- an epoch is timed from its start to the next epoch's start (the last: to the end of the run), everything of the
  epoch included (checkpoint writing too).

Set-up of the dnn_cool side (a virtualenv outside the checkout; torch from the same wheel as this environment):

    python -m venv /work/exp/dnncool-venv
    /work/exp/dnncool-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /work/exp/dnncool-venv/bin/pip install "catalyst==20.12"
    /work/exp/dnncool-venv/bin/pip install "dnn_cool[catalyst]==0.4.0"

(torch first, so that nothing pulls another build; elsewhere any torch 2.13.0+cpu install does the first step).
pip resolves numpy 2.4.6, pandas 3.1.1, scikit-learn 1.9.1, tensorboardX 2.6.5, the versions of this environment
where they overlap. Catalyst 20.12 predates Python 3.10: the one shim it needs is applied by this script in the
dnn_cool process (``_dnn_cool_shims``); nothing in the virtualenv is edited. dnn_cool's ``synthetic_dataset.full``
(its demo's image generator) needs OpenCV and is not used: only its ``synthetic_dataset.flows``.

    python benchmarks/bench_dnn_cool.py --python-dnn-cool /work/exp/dnncool-venv/bin/python \
        [--samples 10000] [--epochs 4] [--reps 3] [--threads 2] [--compile]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILE = os.path.join(REPO, "dnn_cool_catalyst", "synthetic", "security_model.py")
FACE_BOX = ("face_x1", "face_y1", "face_w", "face_h")
BODY_BOX = ("body_x1", "body_y1", "body_w", "body_h")
BINARY = ("camera_blocked", "door_open", "door_locked", "person_present")
PATHS = {**{c: c for c in BINARY}, **{c: f"person_regression.face_regression.{c}" for c in FACE_BOX},
         "facial_characteristics": "person_regression.face_regression.facial_characteristics",
         **{c: f"person_regression.body_regression.{c}" for c in BODY_BOX},
         "shirt_type": "person_regression.body_regression.shirt_type"}


# -- data shared by both sides: images.npy (N, 64, 64, 3) uint8, labels.npz, meta.json, splits, init weights ----

def export(directory: str, samples: int, seed: int, batch: int) -> None:
    """Frames, labels, our split and the initial weights, written once for both sides (main environment)."""
    import torch

    sys.path.insert(0, REPO)
    from dnn_cool_catalyst.synthetic import security as S
    from dnn_cool_catalyst.synthetic.security_model import security_model

    df = S.security_frame(samples, seed=seed)
    np.save(os.path.join(directory, "images.npy"), np.stack(df["img"].to_list()))
    facial = np.full((samples, len(S.FACIAL_CHARACTERISTICS)), np.nan)
    person = df["facial_characteristics"].notna().to_numpy()
    facial[person] = [[c in str(v).split(",") for c in S.FACIAL_CHARACTERISTICS]
                      for v in df.loc[person, "facial_characteristics"]]
    shirt = df["shirt_type"].map({s: i for i, s in enumerate(S.SHIRT_TYPES)}).astype(float).to_numpy()
    np.savez(os.path.join(directory, "labels.npz"), facial_characteristics=facial, shirt_type=shirt,
             **{c: df[c].to_numpy(float) for c in BINARY + FACE_BOX + BODY_BOX})
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump({"facial": list(S.FACIAL_CHARACTERISTICS), "shirts": list(S.SHIRT_TYPES), "batch": batch}, f)
    loaded = load_frame(directory)
    pd.testing.assert_frame_equal(loaded.drop(columns="img"), df.drop(columns="img")[loaded.columns[1:]])

    project = S.security_project(os.path.join(directory, "setup"), df=loaded)
    torch.manual_seed(seed)
    model = security_model(project.get_full_flow())
    runner = project.runner(model, "setup", batch_size=batch, seed=0)
    np.savez(os.path.join(directory, "splits.npz"), **{k: np.asarray(v) for k, v in runner.splits.items()})
    torch.save(model.state_dict(), os.path.join(directory, "init.pt"))


def load_frame(directory: str) -> pd.DataFrame:
    """The security frame as ``security_frame`` returns it (``img`` cells are views of one array), from the files."""
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    images = np.load(os.path.join(directory, "images.npy"))
    labels = np.load(os.path.join(directory, "labels.npz"))
    df = pd.DataFrame({"img": list(images), **{c: labels[c] for c in BINARY + FACE_BOX + BODY_BOX}})
    facial, shirt = labels["facial_characteristics"], labels["shirt_type"]
    df["facial_characteristics"] = pd.Series(
        [np.nan if np.isnan(r[0]) else ",".join(c for c, on in zip(meta["facial"], r) if on) for r in facial],
        dtype=object)
    # built as security_frame builds it (pandas gives the column the same dtype)
    df["shirt_type"] = pd.Series(np.asarray(meta["shirts"], dtype=object)[np.nan_to_num(shirt).astype(int)]).where(
        ~np.isnan(shirt), np.nan)
    return df


# -- the two sides (each in its own process) ---------------------------------------------------------------------

def ours(directory: str, epochs: int, compile: bool = False) -> dict:
    import torch
    from catalyst import dl

    sys.path.insert(0, REPO)
    from dnn_cool_catalyst.synthetic.security import security_project
    from dnn_cool_catalyst.synthetic.security_model import security_model
    from dnn_cool_catalyst.training.engine import default_engine

    project = security_project(tempfile.mkdtemp(dir=directory), df=load_frame(directory))
    model = security_model(project.get_full_flow())
    model.load_state_dict(torch.load(os.path.join(directory, "init.pt")))
    runner = project.runner(model, "bench", batch_size=_meta(directory)["batch"], seed=0)
    splits = np.load(os.path.join(directory, "splits.npz"))
    assert all(np.array_equal(np.asarray(runner.splits[k]), splits[k]) for k in ("train", "valid"))
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # imports torch._dynamo (seconds) before any clock
    marks = []

    class EpochTimer(dl.Callback):
        def __init__(self):
            super().__init__(order=dl.CallbackOrder.Internal)  # first at every event

        def on_epoch_start(self, _):
            marks.append(time.perf_counter())

        def on_experiment_end(self, _):
            marks.append(time.perf_counter())

    runner.train(num_epochs=epochs, early_stopping_patience=epochs + 1, engine=default_engine("cpu"),
                 callbacks={"epoch_timer": EpochTimer()}, compile=compile)
    return {"epoch_seconds": np.diff(marks).tolist(), "samples": len(splits["train"]) + len(splits["valid"])}


def _dnn_cool_shims() -> None:
    """Runtime shims for Catalyst 20.12 / dnn_cool 0.4.0 on Python 3.11 (numpy 2.4, pandas 3.1 and torch 2.13
    needed none for what this benchmark runs)."""
    import collections
    import collections.abc

    # Python 3.10 removed the ABC aliases in `collections`; catalyst.registry subclasses collections.MutableMapping.
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


def load_security_net():
    """``SecurityNet`` from this checkout's ``security_model.py``, without importing ``dnn_cool_catalyst`` (which
    needs Catalyst 22.4): its one relative import, ``.security``'s box names, is served by a stub module."""
    import importlib.util
    import types

    for name in ("dnn_cool_catalyst", "dnn_cool_catalyst.synthetic"):
        sys.modules.setdefault(name, types.ModuleType(name)).__path__ = []
    stub = types.ModuleType("dnn_cool_catalyst.synthetic.security")
    stub.FACE_BOX, stub.BODY_BOX = FACE_BOX, BODY_BOX
    sys.modules[stub.__name__] = stub
    spec = importlib.util.spec_from_file_location("dnn_cool_catalyst.synthetic.security_model", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SecurityNet


def dnn_cool(directory: str, epochs: int) -> dict:
    _dnn_cool_shims()
    from pathlib import Path

    import torch
    from catalyst.core import Callback, CallbackOrder
    from torch import nn

    from dnn_cool.catalyst_utils.runner import DnnCoolSupervisedRunner
    from dnn_cool.converters.base import TypeGuesser
    from dnn_cool.converters.full import Converters
    from dnn_cool.converters.task.base import TaskConverter
    from dnn_cool.converters.values.base import ValuesConverter
    from dnn_cool.external.torch import TorchAutoGrad
    from dnn_cool.synthetic_dataset.flows import body_regression, face_regression, full_flow, person_regression
    from dnn_cool.tasks.binary import BinaryClassificationTask
    from dnn_cool.tasks.bounded_regression import BoundedRegressionTask
    from dnn_cool.tasks.classification import ClassificationTask
    from dnn_cool.tasks.development.binary import BinaryClassificationTaskForDevelopment
    from dnn_cool.tasks.development.bounded_regression import BoundedRegressionTaskForDevelopment
    from dnn_cool.tasks.development.classification import ClassificationTaskForDevelopment
    from dnn_cool.tasks.development.multilabel_classification import MultilabelClassificationTaskForDevelopment
    from dnn_cool.tasks.multilabel_classification import MultilabelClassificationTask
    from dnn_cool.tasks.task_flow import Tasks
    from dnn_cool.value_converters import (ImageCoordinatesValuesConverter, MultiLabelValuesConverter,
                                           binary_value_converter, classification_converter)

    meta, frame = _meta(directory), load_frame(directory)
    features = 96  # SecurityNet's defaults: 96 features, 4 box logits per localisation branch
    leaves = ([BinaryClassificationTask(c, nn.Linear(features, 1)) for c in BINARY]
              + [BoundedRegressionTask(c, nn.Linear(4, 1), 64) for c in FACE_BOX + BODY_BOX]
              + [MultilabelClassificationTask("facial_characteristics", nn.Linear(features, len(meta["facial"]))),
                 ClassificationTask("shirt_type", nn.Linear(features, len(meta["shirts"])))])
    tasks = Tasks(leaves, TorchAutoGrad())
    for flow_func in (face_regression, body_regression, person_regression, full_flow):  # the same four flows
        tasks.add_flow(flow_func)
    flow = tasks.get_full_flow()

    # As dnn_cool's synthetic demo (synthetic_dataset.full): images in memory as float32 CHW in [0, 1], one
    # column per leaf named by its path, labels through dnn_cool's value converters (missing -> -1).
    images = torch.from_numpy(np.stack(frame.pop("img").to_list())).permute(0, 3, 1, 2).float().div(255)
    df = frame.rename(columns=PATHS).assign(img=np.arange(len(frame)))
    kind = {**{c: "binary" for c in BINARY}, **{c: "continuous" for c in FACE_BOX + BODY_BOX},
            "facial_characteristics": "multilabel", "shirt_type": "category"}
    df[PATHS["shirt_type"]] = df[PATHS["shirt_type"]].map({s: i for i, s in enumerate(meta["shirts"])})
    converters = Converters(project_dir=Path(tempfile.mkdtemp(dir=directory)))
    converters.type = TypeGuesser({**{PATHS[c]: k for c, k in kind.items()}, "img": "img"})
    converters.values = ValuesConverter()
    converters.values.type_mapping.update(img=lambda _: images, binary=binary_value_converter,
                                          continuous=ImageCoordinatesValuesConverter(dim=64),
                                          category=classification_converter, multilabel=MultiLabelValuesConverter())
    converters.task = TaskConverter()
    converters.task.type_mapping.update(binary=BinaryClassificationTaskForDevelopment,
                                        continuous=BoundedRegressionTaskForDevelopment,
                                        category=ClassificationTaskForDevelopment,
                                        multilabel=MultilabelClassificationTaskForDevelopment)
    flow_dev = converters.create_task_flow_for_development(df, input_col="img", output_col=list(PATHS.values()),
                                                           task_flow=flow)

    SecurityNet = load_security_net()

    class DnnCoolSecurityNet(SecurityNet):
        def forward(self, inputs):  # SecurityNet.forward, plus the precondition ground truth dnn_cool's module reads
            fmap = self.trunk(inputs["img"])
            g = self.global_map(fmap)
            loc = self.localization(fmap)
            return self.flow({"features": self.features(torch.cat([g.mean((2, 3)), g.amax((2, 3))], dim=1)),
                              "face_localization": self.face(loc), "body_localization": self.body(loc),
                              "gt": inputs.get("gt")})

    model = DnnCoolSecurityNet(flow.torch())
    init = torch.load(os.path.join(directory, "init.pt"))
    # The trunk's names are the same; heads are ours "flow.heads.<task>.{weight,bias}", dnn_cool's
    # "flow.<flow path>.<task>.module.{weight,bias}": matched by task name and parameter.
    heads = {tuple(k.split(".")[-2:]): v for k, v in init.items() if k.startswith("flow.")}
    model.load_state_dict({name: heads[name.split(".")[-3], name.split(".")[-1]] if name.startswith("flow.")
                           else init[name] for name in model.state_dict()})

    splits = np.load(os.path.join(directory, "splits.npz"))
    runner = DnnCoolSupervisedRunner(model, flow_dev, Path(tempfile.mkdtemp(dir=directory)), "bench",
                                     converters.tensorboard_converters,
                                     train_test_val_indices=(splits["train"], splits["test"], splits["valid"]))
    _, loaders = runner.get_default_loaders(batch_size_per_gpu=meta["batch"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # imports torch._dynamo before any clock
    marks = []

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.Internal)  # first at every event

        def on_epoch_start(self, _):
            marks.append(time.perf_counter())

        def on_stage_end(self, _):
            marks.append(time.perf_counter())

    runner.train(loaders=loaders, num_epochs=epochs, optimizer=optimizer,
                 callbacks=list(runner.default_callbacks) + [EpochTimer()])
    return {"epoch_seconds": np.diff(marks).tolist(), "samples": len(splits["train"]) + len(splits["valid"])}


def _meta(directory: str) -> dict:
    with open(os.path.join(directory, "meta.json")) as f:
        return json.load(f)


# -- driver ------------------------------------------------------------------------------------------------------

def run_side(python: str, side: str, directory: str, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    command = [python, os.path.abspath(__file__), "--child", side, directory, "--epochs", str(args.epochs),
               "--threads", str(args.threads)] + (["--compile"] if args.compile else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=directory)
    if done.returncode:
        sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-dnn-cool", default="/work/exp/dnncool-venv/bin/python",
                        help="python of the virtualenv with dnn_cool 0.4.0 and Catalyst 20.12")
    parser.add_argument("--samples", type=int, default=10000, help="frames (70%% train, 15%% valid)")
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is warm-up (at least 2)")
    parser.add_argument("--reps", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="frames and initial weights")
    parser.add_argument("--compile", action="store_true",
                        help="ours trains with compile=True (its first epoch, left out, holds the compilation)")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        side, directory = args.child
        result = ours(directory, args.epochs, args.compile) if side == "ours" else dnn_cool(directory, args.epochs)
        print(json.dumps({**result, "threads": torch.get_num_threads(), "torch": torch.__version__}))
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    pythons = {"ours": sys.executable, "dnn_cool": args.python_dnn_cool}
    rates = {side: [] for side in pythons}
    with tempfile.TemporaryDirectory(prefix="bench_dnn_cool_") as directory:
        export(directory, args.samples, args.seed, args.batch)
        print(f"{args.samples} frames, batch {args.batch}, {args.epochs} epochs per run (first left out), "
              f"{args.reps} alternating runs per side, {args.threads} torch threads")
        for rep in range(args.reps):
            for side, python in pythons.items():
                r = run_side(python, side, directory, args)
                per_epoch = [r["samples"] / s for s in r["epoch_seconds"][1:]]
                rates[side] += per_epoch
                print(f"run {rep + 1} {side:>8s} (torch {r['torch']}, {r['threads']} threads, {r['samples']} "
                      f"samples/epoch): epoch s " + " ".join(f"{s:.2f}" for s in r["epoch_seconds"])
                      + "; samples/s after warm-up " + " ".join(f"{v:.0f}" for v in per_epoch))
    print(f"{'side':>8s} | {'epochs':>6s} | {'min':>7s} | {'median':>7s} | {'max':>7s}  (samples/s)")
    for side, values in rates.items():
        print(f"{side:>8s} | {len(values):6d} | {min(values):7.0f} | {statistics.median(values):7.0f} | "
              f"{max(values):7.0f}")
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["dnn_cool"])
    print(f"ratio ours / dnn_cool (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
