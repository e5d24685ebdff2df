"""Exact threshold tuning checked against brute force evaluated with scikit-learn."""
import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from dnn_cool_catalyst.tuning import thresholds as tuning
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
    # alpha=None: no noise guard, the threshold always moves to the best interval.
    result = best_threshold(scores, labels, metric=metric, alpha=None, **metric_kwargs(metric))
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
    check_best_interval(result, scores, labels, metric)


def check_best_interval(result, scores, labels, metric):
    """The threshold lies strictly inside the reported plateau ``(lower, upper]`` of equally good thresholds, off
    every score, at its middle (or, if that is a score, the middle of the interval just above it); the plateau
    cannot be extended on either side; no plateau elsewhere is wider."""
    optimum = exact_value(metric, labels, scores, result.threshold)
    assert result.lower < result.threshold < result.upper and result.threshold not in set(scores.tolist())
    inside = np.unique(scores[(scores > result.lower) & (scores <= result.upper)])
    for t in inside:  # every threshold in the plateau is as good
        assert exact_value(metric, labels, scores, t) == optimum
    if result.lower in set(scores.tolist()):  # one step lower crosses the lower score: worse
        assert exact_value(metric, labels, scores, result.lower) != optimum
    if result.upper in set(scores.tolist()):  # just above the upper score: worse
        assert exact_value(metric, labels, scores, np.nextafter(result.upper, np.inf)) != optimum
    middle = (result.lower + result.upper) / 2
    inner = inside[(inside > result.lower) & (inside < result.upper)]
    if not np.isclose(inner, middle, rtol=0, atol=1e-12).any():
        assert result.threshold == pytest.approx(middle, abs=1e-12)
    # The widest plateau: a sweep over every distinct score finds none wider.
    edges = np.concatenate(([1.0], np.unique(scores)[::-1], [0.0]))
    values = [exact_value(metric, labels, scores, t) if i else exact_value(metric, labels, scores, 1.5)
              for i, t in enumerate(edges[:-1])]
    widest, start = 0.0, None
    for i, v in enumerate(values + [None]):
        if v == optimum and start is None:
            start = i
        if v != optimum and start is not None:
            widest, start = max(widest, edges[start] - edges[i]), None
    assert result.upper - result.lower == pytest.approx(widest, abs=1e-12)


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


def test_plateau_middle_moves_off_a_tied_group():
    # Thresholds in (0.1, 0.5] and in (0.5, 0.9] both give accuracy 3/4 (the tied pair at 0.5 is one right, one
    # wrong): one plateau (0.1, 0.9]. Its middle, 0.5, is the tied pair's score, so the middle of the interval just
    # above it is taken.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    result = best_threshold(scores, labels, metric="accuracy", alpha=None)
    assert (result.lower, result.upper, result.value) == (0.1, 0.9, 0.75)
    assert result.threshold == pytest.approx(0.7) and 0.5 < result.threshold < 0.9


def test_plateau_middle():
    # Accuracy 5/6 on (0.125, 0.25] and on (0.25, 0.75]: the plateau's middle is 0.4375, on no sample.
    scores = np.array([0.0625, 0.125, 0.25, 0.25, 0.75, 0.875])
    labels = np.array([0, 0, 1, 0, 1, 1])
    result = best_threshold(scores, labels, metric="accuracy", alpha=None)
    assert (result.lower, result.upper, result.threshold, result.value) == (0.125, 0.75, 0.4375, 5 / 6)


def test_threshold_strictly_between_neighbouring_activations():
    # The security demo's door_locked: negatives end at 0.0015, positives start at 0.999545. The old search
    # returned 0.999545 itself; the middle of the gap is returned instead.
    negatives = np.linspace(0.0001, 0.0015, 50).astype(np.float32)
    positives = np.linspace(0.999545, 0.99999, 50).astype(np.float32)
    scores = np.concatenate([negatives, positives]).astype(np.float64)
    labels = np.r_[np.zeros(50), np.ones(50)]
    for metric in METRICS:
        floor = {"min_recall": 1.0} if metric == "precision_at_recall" else {}
        result = best_threshold(scores, labels, metric=metric, alpha=None, **floor)
        assert result.lower == float(negatives.max()) and result.upper == float(positives.min())
        assert result.threshold == pytest.approx((result.lower + result.upper) / 2, abs=1e-7)
        assert negatives.max() < result.threshold < positives.min()
        # float32 scores get a float32 threshold: torch compares sigmoid outputs with it in float32.
        assert float(np.float32(result.threshold)) == result.threshold
        assert result.value == 1.0
    # With the noise guard, 0.5 is already perfect: it stays, and says so.
    kept = best_threshold(scores, labels)
    assert kept.threshold == 0.5 and kept.kept and kept.tuned and kept.reason.startswith("no gain")
    assert kept.value == kept.best_value == 1.0 and (kept.b, kept.c) == (0, 0)


def noisy_band(n_band_pos, n_band_neg, seed=0, clear=40):
    """``clear`` clear negatives (< 0.3) and as many clear positives (> 0.7), plus a band between 0.35 and 0.45
    (below the current threshold 0.5) with the given numbers of positives and negatives, positives above the
    negatives."""
    rng = np.random.default_rng(seed)
    clear_neg, clear_pos = rng.uniform(0.01, 0.3, clear), rng.uniform(0.7, 0.99, clear)
    band_neg = np.linspace(0.35, 0.39, n_band_neg) if n_band_neg else np.empty(0)
    band_pos = np.linspace(0.40, 0.45, n_band_pos)
    scores = np.concatenate([clear_neg, band_neg, band_pos, clear_pos])
    labels = np.concatenate([np.zeros(clear + n_band_neg), np.ones(n_band_pos + clear)])
    return scores, labels


def test_no_move_for_a_gain_within_noise():
    # Lowering the threshold from 0.5 below 0.35 makes 3 band positives right and 1 band negative wrong: +2 on
    # validation, but P(Bin(4, 1/2) >= 3) = 5/16.
    scores, labels = noisy_band(3, 1)
    scores[40] = 0.46  # the band negative above the positives: the best move crosses it
    result = best_threshold(scores, labels)
    assert result.tuned and result.kept and result.threshold == 0.5
    assert (result.b, result.c) == (3, 1) and result.p_value == pytest.approx(5 / 16)
    assert result.reason == "gain within noise (b=3, c=1, p=0.31 >= alpha=0.05)"
    assert result.value == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert result.best_value == pytest.approx(result.value + 2 / len(scores))
    assert result.lower < result.candidate < result.upper <= 0.40
    assert result.report()["kept"] is True and result.report()["p_value"] == pytest.approx(5 / 16)


def test_move_on_a_clear_gain():
    # 12 band positives right, none wrong: P(Bin(12, 1/2) >= 12) = 1/4096.
    scores, labels = noisy_band(12, 0)
    result = best_threshold(scores, labels)
    assert result.tuned and not result.kept and result.reason == ""
    assert (result.b, result.c) == (12, 0) and result.p_value == pytest.approx(1 / 4096)
    assert result.threshold == result.candidate and result.lower < result.threshold < 0.40
    assert result.value == result.best_value == pytest.approx(np.mean((scores >= result.threshold) == labels))
    # A stricter level keeps 0.5; no level (alpha=None) always moves.
    assert best_threshold(scores, labels, alpha=1e-4).kept
    with pytest.raises(ValueError, match="alpha"):
        best_threshold(scores, labels, alpha=0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(12))
def test_guard_tests_the_gain_of_each_metric(seed, metric):
    """The move gains on validation exactly when the crossed samples' favourable share beats the neutral share
    the p-value is computed under, so p < 1/2 for a gain (the test's direction is the metric's own)."""
    from dnn_cool_catalyst.tuning.guard import discordant, neutral_share

    scores, labels = random_case(seed + 3)
    if len(np.unique(labels)) < 2:
        return
    for current in (0.3, 0.5, 0.7):
        result = best_threshold(scores, labels, metric=metric, default=current, alpha=0.5, **metric_kwargs(metric))
        counts0 = (int(np.sum((scores >= current) & (labels == 1))), int(np.sum((scores >= current) & (labels == 0))))
        counts1 = (int(np.sum((scores >= result.candidate) & (labels == 1))),
                   int(np.sum((scores >= result.candidate) & (labels == 0))))
        b, c, down = discordant(*counts0, *counts1)
        assert (b, c) == (result.b, result.c)
        share = neutral_share(metric, *counts0, int(labels.sum()), int((1 - labels).sum()))
        value0 = sklearn_value(metric, labels, scores, current)
        if value0 == -math.inf:  # the recall floor is not met at the current threshold: it moves regardless
            assert not result.kept and result.threshold == result.candidate
            continue
        if share is None or b + c == 0:
            continue
        favourable = share if down else 1 - share
        gains = result.best_value > value0 + TOL
        assert result.kept == (not gains or result.p_value >= 0.5)
        assert gains == (b / (b + c) > favourable + 1e-12)


def test_multilabel_per_class_current_thresholds():
    clear_scores, clear_labels = noisy_band(12, 0)      # a clear gain: moves
    noisy_scores, noisy_labels = noisy_band(3, 1, seed=1, clear=44)  # as many rows
    noisy_scores[44] = 0.46                               # within noise: keeps its current threshold
    scores = np.stack([clear_scores, noisy_scores, noisy_scores], axis=1)
    labels = np.stack([clear_labels, noisy_labels, noisy_labels], axis=1)
    results = best_thresholds(scores, labels, default=[0.5, 0.5, 0.55])
    assert [r.kept for r in results] == [False, True, True]
    assert [r.threshold for r in results[1:]] == [0.5, 0.55]
    assert results[0] == best_threshold(clear_scores, clear_labels)
    assert results[0].lower < results[0].threshold < results[0].upper
    with pytest.raises(ValueError, match="one per column"):
        best_thresholds(scores, labels, default=[0.5, 0.5])


def test_edge_intervals():
    # Best: predict nothing. Above the highest score 0.6, up to the domain's top 1.0: the middle is 0.8.
    result = best_threshold([0.1, 0.5, 0.6, 0.2], [0, 0, 0, 1], metric="accuracy", alpha=None)
    assert (result.lower, result.upper, result.threshold) == (0.6, 1.0, 0.8)
    # Best: everything positive. Below the lowest score 0.2, down to the domain's bottom 0: the middle is 0.1.
    result = best_threshold([0.2, 0.5, 0.6, 0.9], [1, 1, 1, 0], metric="f1", alpha=None)
    assert (result.lower, result.upper, result.threshold) == (0.0, 0.2, 0.1)
    # Saturated sigmoids (exactly 1.0 and 0.0 in float32): one float32 step beyond, the only way to predict
    # nothing; 0.0 predicts everything (no number lies below it in the domain).
    scores = np.array([1.0, 1.0, 0.5, 0.0], dtype=np.float32)
    result = best_threshold(scores.astype(np.float64), [0, 0, 0, 1], metric="accuracy", alpha=None)
    assert result.threshold == float(np.nextafter(np.float32(1), np.float32(2))) and result.value == 0.75
    import torch
    assert not (torch.tensor(scores) >= result.threshold).any()  # torch decodes the same way
    result = best_threshold(scores.astype(np.float64), [1, 0, 1, 1], metric="f1", alpha=None)
    assert result.threshold == 0.0 and result.value == pytest.approx(6 / 7)


def test_scores_outside_unit_interval():
    # Not probabilities: the outer intervals reach one score range (15) beyond the extremes.
    result = best_threshold([-3.0, 5.0, 12.0], [0, 1, 1], alpha=None)
    assert (result.lower, result.upper, result.threshold, result.value) == (-3.0, 5.0, 1.0, 1.0)
    result = best_threshold([-3.0, 5.0, 12.0], [1, 0, 0], alpha=None)  # predict nothing
    assert (result.lower, result.upper, result.threshold) == (12.0, 27.0, 19.5)
    result = best_threshold([-3.0, 5.0, 12.0], [1, 0, 1], metric="f1", alpha=None)  # predict everything
    assert (result.lower, result.upper, result.threshold) == (-18.0, -3.0, -10.5)
    kept = best_threshold([-3.0, 5.0, 12.0], [0, 1, 1])  # 0.5 is as good
    assert kept.kept and kept.threshold == 0.5 and kept.value == 1.0


def test_empty_input():
    result = best_threshold([], [], default=0.3)
    assert result == ThresholdResult(0.3, result.value, 0, False, "no samples") and math.isnan(result.value)
    assert result.report()["value"] is None and result.report()["lower"] is None


@pytest.mark.parametrize("label, text", [(0, "only one class (all 0)"), (1, "only one class (all 1)")])
def test_single_class(label, text):
    result = best_threshold([0.2, 0.7, 0.9], [label] * 3)
    assert not result.tuned and result.reason == text and result.threshold == 0.5 and result.num_samples == 3
    assert not result.kept and result.lower is None


@pytest.mark.parametrize("metric", METRICS)
def test_all_equal_scores(metric):
    scores, labels = np.full(6, 0.4), np.array([1, 0, 1, 0, 0, 0])
    result = best_threshold(scores, labels, metric=metric, alpha=None, **metric_kwargs(metric))
    # Two intervals: (0.4, 1] predicts nothing, (0, 0.4] everything. Accuracy prefers predicting nothing
    # (4/6 > 2/6); Youden is 0 on both, one plateau (0, 1] whose middle is 0.5; f1 and the recall floor need
    # everything positive.
    expected = {"f1": 0.2, "accuracy": 0.7, "youden": 0.5, "precision_at_recall": 0.2}
    assert result.tuned and result.threshold == pytest.approx(expected[metric]) and result.threshold != 0.4
    assert sklearn_value(metric, labels, scores, result.threshold) == pytest.approx(result.value, abs=TOL)
    # Guarded from 0.5 (predicting nothing): accuracy and Youden have nothing to gain; F1 and precision have
    # nothing to defend (0, and no recall), so they move.
    guarded = best_threshold(scores, labels, metric=metric, **metric_kwargs(metric))
    assert guarded.kept == (metric in ("accuracy", "youden"))


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
    # Recall 1 is only reached by predicting everything positive: below 0.2.
    assert best_threshold(scores, labels, "precision_at_recall", min_recall=1.0, alpha=None).threshold == 0.1
    # Recall >= 0.5 first holds at 0.7 (precision 2/3), beating 0.2 (precision 3/5): the middle of (0.6, 0.7].
    result = best_threshold(scores, labels, "precision_at_recall", min_recall=0.5, alpha=None)
    assert result.threshold == pytest.approx(0.65) and result.value == pytest.approx(2 / 3)
    # From 0.95 (nothing predicted: the floor is not met) the threshold moves whatever the sample size.
    assert best_threshold(scores, labels, "precision_at_recall", min_recall=0.5, default=0.95).threshold == \
        result.threshold
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
    assert best_threshold([0.1, 0.9], [False, True], alpha=None) == best_threshold([0.1, 0.9], [0, 1], alpha=None)
    assert best_threshold([0.1, 0.9], [False, True], alpha=None).threshold == 0.5


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
        assert r == best_threshold(scores[mask[:, col], col], labels[mask[:, col], col], metric="f1")
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
    assert [r.threshold for r in best_thresholds(scores, labels, alpha=None)] == pytest.approx([0.45, 0.55])
    assert [r.threshold for r in best_thresholds(scores, labels, default=[0.3, 0.6])] == [0.3, 0.6]
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
        result = best_threshold(scores.astype(np.float64), labels, metric=metric, alpha=None, **metric_kwargs(metric))
        assert result.value == result.best_value == curve[best]
        # The threshold is a float32 number (the scores are) and reaches the best value in float32 as in float64.
        assert float(np.float32(result.threshold)) == result.threshold
        predicted = scores >= np.float32(result.threshold)
        assert sklearn_value(metric, labels.astype(int), scores.astype(np.float64), result.threshold) == \
            pytest.approx(curve[best], abs=TOL)
        assert np.array_equal(predicted, scores.astype(np.float64) >= result.threshold)
