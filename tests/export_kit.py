"""A small trained run whose flow has every kind of precondition, and the code a deployment runs: the export
loaded in a fresh interpreter where dnn_cool_catalyst cannot be imported. Shared by the export tests."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.data import Converters
from dnn_cool_catalyst.tabular import tabular_model

INPUTS = ["a", "b", "city"]
OUTPUTS = ["camera_blocked", "door_open", "level", "door_locked", "temperature", "face"]


def frame(n=240, seed=0):
    """Labels that are easy functions of the inputs, so a short training gives predictions that differ between
    rows (and the gating masks hold on some rows and not on others). ``b`` has gaps (median fill)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["Paris", "Rome", "Oslo"], n)
    df = pd.DataFrame({"a": a, "b": b, "city": city})
    df["camera_blocked"] = np.where(a > 1.0, "yes", "no")
    df["door_open"] = (a > -0.2).astype(float)
    df["level"] = np.select([b < -0.4, b < 0.4], [1, 2], 3)
    df["door_locked"] = (b > 0).astype(float)
    df["temperature"] = 20.0 + 8.0 * a - 3.0 * b
    df["face"] = np.select([city == "Paris", city == "Rome"], ["beard", "glasses"], "beard,glasses")
    df.loc[df.index[::9], "b"] = np.nan
    df.loc[df.index[::5], "level"] = np.nan  # missing labels, as real data has
    return df


def flows(project):
    @project.add_flow
    def face_flow(flow, x, out):
        out += flow.face(x.features)
        out += flow.temperature(x.features) | (out.face == "beard")
        return out

    @project.add_flow
    def full_flow(flow, x, out):
        out += flow.camera_blocked(x.features)
        out += flow.door_open(x.features) | (~out.camera_blocked)
        out += flow.level(x.features)
        out += flow.door_locked(x.features) | out.door_open | (out.level == 2)  # a chain with a class value
        out += flow.face_flow(x) | out.door_open  # a nested flow under a condition
        return out


def trained_run(project_dir, tune=True, epochs=6, **model_kwargs):
    """``(project, runner)``: trained a few epochs, inferred, tuned (unless ``tune=False``); ``model_kwargs`` go
    to ``tabular_model`` (e.g. ``kind="tabm"``)."""
    converters = Converters(missing_inputs="indicator")
    converters.type.type_mapping.update({"a": "numeric", "b": "numeric", "city": "categorical",
                                         "camera_blocked": "binary", "door_open": "binary", "level": "category",
                                         "door_locked": "binary", "temperature": "regression",
                                         "face": "multilabel"})
    project = Project(frame(), input_col=INPUTS, output_col=OUTPUTS, converters=converters,
                      project_dir=str(project_dir))
    flows(project)
    torch.manual_seed(0)
    runner = project.runner(tabular_model(project, hidden=16, **model_kwargs), runner_name="run", batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(num_epochs=epochs, lr=0.03)
        runner.infer()
        if tune:
            runner.tune(min_samples=5, min_per_class=1)
    return project, runner


def reference(runner, split="test"):
    """What the library decodes in-process for ``split``: the flow's decoder on the stored logits (tuned
    thresholds applied), decoded gating, and the split's rows in stored order."""
    logits, _, _, data = runner._stored(split)
    if os.path.exists(os.path.join(runner.run_dir, "tuned.json")):
        runner.load_tuned()
    flow = runner.flow
    values = flow.get_decoder()({"logits": logits})
    applies = flow.get_masks(outputs={"logits": logits}, gating="decoded")
    positions = next(iter(data.values()))["index"].tolist()
    return values, applies, positions


def raw_rows(df, positions):
    """The input columns of those rows as plain JSON lists (NaN -> null), as a deployment would receive them."""
    rows = df.iloc[positions][INPUTS]
    return {c: [None if isinstance(v, float) and np.isnan(v) else v for v in rows[c].tolist()] for c in INPUTS}


#: The deployment side: only torch + json (+ onnxruntime for ONNX). Encodes raw rows with the JSON beside the
#: artifact, runs it, saves plain tensors. dnn_cool_catalyst is blocked on the meta path, and that is asserted.
DEPLOY = textwrap.dedent(r'''
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "dnn_cool_catalyst":
                raise ImportError("blocked: " + name)
            return None

    sys.meta_path.insert(0, Block())
    try:
        import dnn_cool_catalyst
    except ImportError:
        pass
    else:
        raise SystemExit("dnn_cool_catalyst is importable in the deployment interpreter")

    import torch

    artifact, rows_path, out_path, fmt = sys.argv[1:5]
    meta = json.load(open(artifact + ".json"))
    rows = json.load(open(rows_path))
    inputs = {}
    for spec in meta["inputs"]:
        column = rows[spec["name"]]
        if spec["kind"] == "categorical":
            codes = [spec["codes"]["missing"] if v is None else
                     spec["codes"]["first_vocab"] + spec["vocab"].index(v) if v in spec["vocab"] else
                     spec["codes"]["unknown"] for v in column]
            inputs[spec["name"]] = torch.tensor(codes, dtype=torch.int64)
        else:
            inputs[spec["name"]] = torch.tensor([float("nan") if v is None else v for v in column],
                                                dtype=getattr(torch, spec["dtype"]))
    if fmt == "torch":
        out = torch.export.load(artifact).module()(inputs)
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(artifact)
        flat = session.run(None, {name: inputs[name].numpy() for name in meta["input_names"]})
        out = {"values": {}, "applies": {}}
        for name, array in zip(meta["output_names"], flat):
            kind, task = name.split(".", 1)
            out["values" if kind == "value" else "applies"][task] = torch.from_numpy(array)
    torch.save({"values": dict(out["values"]), "applies": dict(out["applies"])}, out_path)
''')


def run_deployed(artifact, rows, tmp_path, fmt="torch", python=sys.executable):
    """Run :data:`DEPLOY` in a fresh interpreter (cwd ``tmp_path``, no PYTHONPATH); returns its outputs."""
    rows_path, out_path, script = tmp_path / "rows.json", tmp_path / "out.pt", tmp_path / "deploy.py"
    rows_path.write_text(json.dumps(rows))
    script.write_text(DEPLOY)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, str(script), str(artifact), str(rows_path), str(out_path), fmt], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(out_path)


def readme_snippet():
    """The README's loading function (section "Deployable export")."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Deployable export", 1)[1].split("\n## ", 1)[0]
    return next(c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "def predict_rows" in c)


def run_readme_snippet(artifact, rows, tmp_path, python=sys.executable):
    """``predict_rows(artifact, rows)`` of the README, run where dnn_cool_catalyst cannot be imported."""
    blocker = DEPLOY.split("import torch\n", 1)[0]
    script = tmp_path / "readme_deploy.py"
    script.write_text(blocker + readme_snippet() + textwrap.dedent('''
        import sys
        rows = json.load(open(sys.argv[2]))
        json.dump(predict_rows(sys.argv[1], rows), open(sys.argv[3], "w"))
    '''))
    rows_path, out_path = tmp_path / "rows.json", tmp_path / "labels.json"
    rows_path.write_text(json.dumps(rows))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, str(script), str(artifact), str(rows_path), str(out_path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out_path.read_text())
