"""Exact threshold tuning checked against brute force evaluated with scikit-learn."""
import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from dnn_cool_catalyst import tuning
from dnn_cool_catalyst.tuning import METRICS, ThresholdResult, best_threshold, best_thresholds, metric_curve, sweep

MIN_RECALL = 0.6
TOL = 1e-12


def metric_kwargs(metric):
    return {"min_recall": MIN_RECALL} if metric == "precision_at_recall" else {}


def sklearn_value(metric, labels, scores, threshold, min_recall=MIN_RECALL):
    """The metric of ``score >= threshold`` computed by scikit-learn (``-inf`` below the recall floor)."""
    pred = (scores >= threshold).astype(int)
    if metric == "f1":
        return f1_score(labels, pred, zero_division=0)
    if metric == "accuracy":
        return accuracy_score(labels, pred)
    if metric == "youden":
        tn, fp, fn, tp = confusion_matrix(labels, pred, labels=[0, 1]).ravel()
        tpr = tp / (tp + fn) if tp + fn else 0.0
        fpr = fp / (fp + tn) if fp + tn else 0.0
        return tpr - fpr
    recall = recall_score(labels, pred, zero_division=0)
    return precision_score(labels, pred, zero_division=0) if recall >= min_recall else -math.inf


def exact_value(metric, labels, scores, threshold, min_recall=MIN_RECALL):
    """Same metric as a Fraction from direct counts, to decide ties without rounding."""
    pred, pos = scores >= threshold, labels == 1
    tp, fp = int(np.sum(pred & pos)), int(np.sum(pred & ~pos))
    fn, tn = int(np.sum(~pred & pos)), int(np.sum(~pred & ~pos))
    frac = lambda a, b: Fraction(a, b) if b else Fraction(0)  # noqa: E731
    if metric == "f1":
        return frac(2 * tp, 2 * tp + fp + fn)
    if metric == "accuracy":
        return frac(tp + tn, tp + fp + fn + tn)
    if metric == "youden":
        return frac(tp, tp + fn) - frac(fp, fp + tn)
    return frac(tp, tp + fp) if tp / (tp + fn) >= min_recall else None


def random_case(seed):
    rng = np.random.default_rng(seed)
    # The first seeds pin the smallest sizes (n = 1, 2, 3); the rest draw n in [1, 200].
    n = seed + 1 if seed < 3 else int(rng.integers(1, 201))
    labels = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(int)
    # Rounding to 2 decimals (1 for some seeds) makes ties common; a weak signal keeps the optimum non-trivial.
    decimals = 1 if seed % 4 == 3 else 2
    scores = np.round(np.clip(0.25 * labels + rng.random(n) * 0.75, 0, 1), decimals)
    return scores, labels


def candidates(scores):
    """Every distinct score, a fine grid beyond the data range, and a value above everything."""
    grid = np.linspace(scores.min() - 0.05, scores.max() + 0.05, 401)
    return np.unique(np.concatenate([scores, grid, [scores.max() + 1.0]]))[::-1]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(16))
def test_matches_brute_force_with_sklearn(seed, metric):
    scores, labels = random_case(seed)
    result = best_threshold(scores, labels, metric=metric, **metric_kwargs(metric))
    assert result.num_samples == len(scores)
    if len(np.unique(labels)) < 2:
        assert not result.tuned and result.threshold == 0.5 and math.isnan(result.value)
        return
    assert result.tuned and result.reason == ""
    # Many grid points give the same predictions: evaluate each distinct prediction vector with sklearn once.
    cache = {}
    for t in candidates(scores):
        key = (scores >= t).tobytes()
        if key not in cache:
            cache[key] = sklearn_value(metric, labels, scores, t)
    best_brute = max(cache.values())
    # Exact search is never worse than any candidate, and reaches the brute-force optimum.
    assert result.value >= best_brute - TOL
    assert result.value == pytest.approx(best_brute, abs=TOL)
    # Re-applying the returned threshold with sklearn reproduces the returned value.
    assert sklearn_value(metric, labels, scores, result.threshold) == pytest.approx(result.value, abs=TOL)
    # Among equally good candidates (decided exactly) no larger *distinct score* also reaches the optimum.
    optimum = exact_value(metric, labels, scores, result.threshold)
    for t in np.unique(scores):
        if t > result.threshold:
            assert exact_value(metric, labels, scores, t) != optimum


@pytest.mark.parametrize("seed", range(10))
def test_sweep_counts_match_direct_counting(seed):
    scores, labels = random_case(seed)
    thresholds, tp, fp, fn, tn = sweep(scores, labels)
    assert np.all(np.diff(thresholds) < 0)
    assert thresholds[0] > scores.max()
    np.testing.assert_array_equal(np.sort(thresholds[1:]), np.unique(scores))
    for i, t in enumerate(thresholds):
        pred = scores >= t
        assert (tp[i], fp[i], fn[i], tn[i]) == (
            np.sum(pred & (labels == 1)), np.sum(pred & (labels == 0)),
            np.sum(~pred & (labels == 1)), np.sum(~pred & (labels == 0)))


def test_sweep_empty():
    thresholds, tp, fp, fn, tn = sweep([], [])
    assert thresholds.tolist() == [np.inf] and tp.tolist() == fp.tolist() == fn.tolist() == tn.tolist() == [0]


def test_ties_prefer_largest_threshold():
    # Thresholds 0.9 and 0.5 both give accuracy 3/4; the larger one is returned.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    result = best_threshold(scores, labels, metric="accuracy")
    assert result.threshold == 0.9 and result.value == 0.75


def test_scores_outside_unit_interval():
    result = best_threshold([-3.0, 5.0, 12.0], [0, 1, 1])
    assert result.threshold == 5.0 and result.value == 1.0


def test_empty_input():
    result = best_threshold([], [], default=0.3)
    assert result == ThresholdResult(0.3, result.value, 0, False, "no samples") and math.isnan(result.value)


@pytest.mark.parametrize("label, text", [(0, "only one class (all 0)"), (1, "only one class (all 1)")])
def test_single_class(label, text):
    result = best_threshold([0.2, 0.7, 0.9], [label] * 3)
    assert not result.tuned and result.reason == text and result.threshold == 0.5 and result.num_samples == 3


@pytest.mark.parametrize("metric", METRICS)
def test_all_equal_scores(metric):
    scores, labels = np.full(6, 0.4), np.array([1, 0, 1, 0, 0, 0])
    result = best_threshold(scores, labels, metric=metric, **metric_kwargs(metric))
    above = np.nextafter(0.4, np.inf)  # the "predict nothing" candidate
    # Only two candidates exist. Accuracy prefers predicting nothing (4/6 > 2/6); Youden ties at 0 and the larger
    # threshold wins; f1 and the recall floor need everything positive.
    expected = {"f1": 0.4, "accuracy": above, "youden": above, "precision_at_recall": 0.4}
    assert result.tuned and result.threshold == expected[metric]
    assert sklearn_value(metric, labels, scores, result.threshold) == pytest.approx(result.value, abs=TOL)


def test_precision_at_recall_needs_min_recall():
    with pytest.raises(ValueError, match="min_recall"):
        best_threshold([0.1, 0.9], [0, 1], metric="precision_at_recall")
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="min_recall"):
            best_threshold([0.1, 0.9], [0, 1], metric="precision_at_recall", min_recall=bad)
    with pytest.raises(ValueError, match="only applies"):
        best_threshold([0.1, 0.9], [0, 1], metric="f1", min_recall=0.5)


def test_precision_at_recall_floor():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    labels = np.array([1, 0, 1, 0, 1])
    # Recall 1 is only reached by predicting everything positive.
    assert best_threshold(scores, labels, "precision_at_recall", min_recall=1.0).threshold == 0.2
    # Recall >= 0.5 first holds at 0.7 (precision 2/3), beating 0.2 (precision 3/5).
    result = best_threshold(scores, labels, "precision_at_recall", min_recall=0.5)
    assert result.threshold == 0.7 and result.value == pytest.approx(2 / 3)
    curve = metric_curve(*sweep(scores, labels)[1:], "precision_at_recall", min_recall=0.5)
    assert curve[:2].tolist() == [-np.inf, -np.inf]


def test_precision_at_recall_floor_unreachable(monkeypatch):
    # With both classes present, predicting everything reaches recall 1, so the floor is always reachable through
    # the public API; force an all -inf curve to exercise the fallback.
    monkeypatch.setattr(tuning, "metric_curve", lambda tp, *a, **k: np.full(len(tp), -np.inf))
    result = best_threshold([0.1, 0.9], [0, 1], "precision_at_recall", min_recall=0.9, default=0.25)
    assert result.threshold == 0.25 and not result.tuned and math.isnan(result.value)
    assert "recall >= 0.9" in result.reason


def test_unknown_metric_lists_metrics():
    with pytest.raises(ValueError, match="precision_at_recall"):
        best_threshold([0.1], [1], metric="auc")


@pytest.mark.parametrize("labels", [[0, 2, 1], [0, np.nan, 1], [0, -1, 1], ["a", "b", "c"]])
def test_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        best_threshold([0.1, 0.5, 0.9], labels)


@pytest.mark.parametrize("scores", [[0.1, np.nan, 0.9], [0.1, np.inf, 0.9]])
def test_non_finite_scores(scores):
    with pytest.raises(ValueError, match="finite"):
        best_threshold(scores, [0, 1, 1])


def test_shape_errors():
    with pytest.raises(ValueError, match="length"):
        best_threshold([0.1, 0.9], [0, 1, 1])
    with pytest.raises(ValueError, match="1-D"):
        best_threshold([[0.1, 0.9]], [[0, 1]])


def test_boolean_labels_accepted():
    assert best_threshold([0.1, 0.9], [False, True]).threshold == 0.9


def test_best_thresholds_ignores_masked_rows():
    rng = np.random.default_rng(0)
    n, k = 150, 5
    scores = np.round(rng.random((n, k)), 2)
    labels = (rng.random((n, k)) < 0.4).astype(float)
    mask = rng.random((n, k)) < 0.7
    mask[:, 3] = False  # a column with no labels at all
    results = best_thresholds(scores, labels, mask, metric="f1")
    assert len(results) == k
    for j, r in enumerate(results[:3] + results[4:]):
        col = j if j < 3 else 4
        assert r == best_threshold(scores[mask[:, col], col], labels[mask[:, col], col])
    assert results[3].reason == "no samples" and not results[3].tuned

    # Changing masked-out entries, even to NaN, changes nothing.
    scores2, labels2 = scores.copy(), labels.copy()
    scores2[~mask] = rng.random((~mask).sum())
    labels2[~mask] = np.nan
    assert best_thresholds(scores2, labels2, mask, metric="f1") == results
    scores2[~mask] = np.nan
    assert best_thresholds(scores2, labels2, mask.astype(int), metric="f1") == results


def test_best_thresholds_without_mask_and_shape_errors():
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    labels = np.array([[0, 1], [1, 0]])
    assert [r.threshold for r in best_thresholds(scores, labels)] == [0.8, 0.9]
    with pytest.raises(ValueError, match="2-D"):
        best_thresholds(scores[0], labels[0])
    with pytest.raises(ValueError, match="labels_2d shape"):
        best_thresholds(scores, labels[:1])
    with pytest.raises(ValueError, match="mask_2d shape"):
        best_thresholds(scores, labels, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"labels_2d\[:, 1\]"):
        best_thresholds(scores, np.array([[0, 2], [1, 0]]))


def test_module_doctests():
    failures, _ = doctest.testmod(tuning)
    assert failures == 0


@pytest.mark.parametrize("metric", METRICS)
def test_search_over_positive_scores_equals_the_full_sweep(metric):
    # best_threshold only visits distinct positive scores; on tie-heavy float32 data it must pick exactly the
    # threshold and value that the argmax over every candidate of sweep() picks.
    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(2, 300))
        scores = np.round(rng.random(n), 1 + trial % 3).astype(np.float32)
        labels = rng.random(n) < rng.uniform(0.1, 0.9)
        if labels.all() or not labels.any():
            continue
        thresholds, *counts = sweep(scores, labels)
        curve = metric_curve(*counts, metric, **metric_kwargs(metric))
        best = int(np.argmax(curve))
        result = best_threshold(scores, labels, metric=metric, **metric_kwargs(metric))
        assert (result.threshold, result.value) == (thresholds[best], curve[best])
