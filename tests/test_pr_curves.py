"""PR curves per thresholded task and class, and the tuned threshold's point on them."""
import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_score, recall_score
from tensorboardX import SummaryWriter

from dnn_cool_catalyst import BinaryTask, ClassificationTask, MultilabelTask, RegressionTask, TaskFlow
from dnn_cool_catalyst.measures.evaluation import tune_flow
from dnn_cool_catalyst.interpretation import log_pr_curves, mark_tuned_points, precision_recall_at
from helpers import read_summaries

N = 60


def make_flow():
    tasks = [BinaryTask("door"), MultilabelTask("facial", 3, class_names=["glasses", "beard", "hat"]),
             ClassificationTask("shirt", 3), RegressionTask("temp")]

    def room(flow, x, out):
        out += flow.door(x.f)
        out += flow.facial(x.f) | out.door
        out += flow.shirt(x.f)
        out += flow.temp(x.f)
        return out

    return TaskFlow.from_function(room, tasks)


def synthetic(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = {"door": torch.randn(N, generator=g) * 2, "facial": torch.randn(N, 3, generator=g) * 2,
              "shirt": torch.randn(N, 3, generator=g), "temp": torch.randn(N, generator=g)}
    targets = {"door": (torch.rand(N, generator=g) < 0.5).float(), "facial": (torch.rand(N, 3, generator=g) < 0.4).float(),
               "shirt": torch.randint(0, 3, (N,), generator=g), "temp": torch.randn(N, generator=g)}
    available = {k: torch.rand(v.shape, generator=g) < 0.8 for k, v in targets.items()}
    available["facial"][:, 2] = False  # "hat" is never labelled: no curve, no error
    return logits, targets, available


def stored_arrays(flow, logits, targets, available):
    masks = flow.graph.masks(targets, available, N)
    return {name: {"activations": task.activation(logits[name]), "targets": targets[name], "mask_gt": masks[name]}
            for name, task in flow.tasks.items()}


def test_one_curve_per_binary_task_and_labelled_multilabel_class(tmp_path):
    flow = make_flow()
    stored = stored_arrays(flow, *synthetic())
    writer = SummaryWriter(str(tmp_path))
    written = log_pr_curves(writer, flow, stored, step=3, num_thresholds=11)
    writer.close()
    assert set(written) == {"pr_curve/door", "pr_curve/facial/glasses", "pr_curve/facial/beard"}
    curves = read_summaries(str(tmp_path))["pr_curves"]
    assert set(curves) == set(written)
    for tag, (name, column) in {"pr_curve/door": ("door", None), "pr_curve/facial/beard": ("facial", 1)}.items():
        step, data = curves[tag][0]
        pick = (lambda t: t) if column is None else (lambda t: t[:, column])
        mask = pick(stored[name]["mask_gt"]).numpy()
        labels = pick(stored[name]["targets"]).numpy()[mask] > 0.5
        buckets = np.floor(pick(stored[name]["activations"]).numpy()[mask] * 10)
        assert step == 3 and data.shape == (6, 11) and written[tag] == int(mask.sum())
        tp = [int((labels & (buckets >= j)).sum()) for j in range(11)]
        fp = [int((~labels & (buckets >= j)).sum()) for j in range(11)]
        assert data[0].tolist() == tp and data[1].tolist() == fp
        assert data[4][0] == pytest.approx(labels.mean(), rel=1e-5) and data[5][0] == pytest.approx(1.0)


def test_tuned_points_are_precision_and_recall_at_the_tuned_threshold():
    flow = make_flow()
    logits, targets, available = synthetic(1)
    available["facial"][:, 1] = False
    available["facial"][:5, 1] = True
    targets["facial"][:5, 1] = 1.0  # "beard": one class only, cannot be tuned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, report = tune_flow(flow, logits, targets, available)
    report = mark_tuned_points(flow, logits, targets, available, report)
    json.dumps(report, allow_nan=False)  # the untuned entry's NaN value became None
    assert report["facial"]["beard"]["value"] is None
    masks = flow.graph.masks(targets, available, N)
    for path, column in (("door", None), ("facial", 0)):
        entry = report[path]["threshold" if column is None else "glasses"]
        pick = (lambda t: t) if column is None else (lambda t: t[:, column])
        mask = pick(masks[path]).numpy()
        scores = torch.sigmoid(pick(logits[path])).numpy()[mask]
        labels = pick(targets[path]).numpy()[mask]
        predicted = scores >= entry["threshold"]
        assert entry["precision"] == pytest.approx(precision_score(labels, predicted, zero_division=0))
        assert entry["recall"] == pytest.approx(recall_score(labels, predicted, zero_division=0))
    assert "precision" not in json.dumps(report.get("shirt", {}))


def test_precision_recall_at_counts_ties_as_positive_and_handles_no_positives():
    assert precision_recall_at(np.array([0.5, 0.5]), np.array([1, 0]), 0.5) == {"precision": 0.5, "recall": 1.0}
    assert precision_recall_at(np.array([0.1, 0.2]), np.array([0, 0]), 0.5) == {"precision": 0.0, "recall": 0.0}
