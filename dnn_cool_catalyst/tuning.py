"""Exact, sort-based threshold tuning for binary decisions.

Decision rule everywhere: predict positive iff ``score >= threshold``. Scores are usually probabilities, but nothing
here assumes they lie in ``[0, 1]``.

A predicted set can only change at a distinct score, so sorting the scores once and taking cumulative sums gives the
confusion counts of *every* threshold that matters in ``O(n log n)``; the best one is then a vectorised ``argmax``.
This is exact: no grid can reach a better metric value, and the returned threshold is one of the candidate scores,
so re-applying ``score >= threshold`` reproduces the reported value.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7])
    >>> labels = np.array([0, 0, 1, 1, 1])
    >>> result = best_threshold(scores, labels, metric="f1")
    >>> result.threshold, result.value, result.tuned
    (0.35, 0.8571428571428571, True)
    >>> bool(((scores >= result.threshold) == labels.astype(bool)).sum() == 4)
    True
    >>> best_threshold(scores, np.zeros(5), metric="f1").reason
    'only one class (all 0)'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

METRICS = ("f1", "accuracy", "youden", "precision_at_recall")


@dataclass
class ThresholdResult:
    """Outcome of a threshold search.

    ``value`` is the metric reached at ``threshold`` (``nan`` when nothing was tuned); ``reason`` is ``''`` when
    tuned, otherwise why ``threshold`` is still the default.
    """

    threshold: float
    value: float
    num_samples: int
    tuned: bool
    reason: str

    def report(self) -> dict:
        """The result as JSON-able values: an untuned ``value`` (NaN) becomes ``None``."""
        return {**self.__dict__, "value": None if math.isnan(self.value) else self.value}


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------

def _as_scores(scores, name: str = "scores") -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return s


def _as_labels(labels, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 0/1 numbers or booleans: {exc}") from None
    # NaN fails both comparisons, so it is rejected here as well.
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        raise ValueError(f"{name} must contain only 0 and 1, found {y[bad][0]!r}")
    return y == 1


def _check_binary_inputs(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    s, y = _as_scores(scores), _as_labels(labels)
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    return s, y


def _check_metric(metric: str, min_recall: Optional[float]) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if metric == "precision_at_recall":
        if min_recall is None:
            raise ValueError("metric 'precision_at_recall' needs min_recall in (0, 1]")
        if not 0.0 < float(min_recall) <= 1.0:
            raise ValueError(f"min_recall must lie in (0, 1], got {min_recall}")
    elif min_recall is not None:
        # Silently ignoring it would hide a misconfigured metric.
        raise ValueError(f"min_recall only applies to 'precision_at_recall', not to {metric!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Sweep and metric curves
# ---------------------------------------------------------------------------------------------------------------------

def _sweep_checked(s: np.ndarray, y: np.ndarray):
    n = s.shape[0]
    order = np.argsort(-s)  # descending; tie order is irrelevant because ties are grouped below
    s_sorted = s[order]
    tp_cum = np.cumsum(y[order], dtype=np.int64)
    fp_cum = np.arange(1, n + 1, dtype=np.int64) - tp_cum
    # The last position of each run of equal scores: all tied samples switch to positive together.
    ends = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), n - 1) if n else np.empty(0, dtype=np.int64)
    # One candidate strictly above the maximum predicts nothing positive. nextafter keeps it as close as possible to
    # the data (so probabilities stay near [0, 1]) while `score >= threshold` stays false for every sample.
    top = np.nextafter(s_sorted[0], np.inf) if n else np.inf
    thresholds = np.concatenate(([top], s_sorted[ends]))
    zero = np.zeros(1, dtype=np.int64)
    tp = np.concatenate((zero, tp_cum[ends]))
    fp = np.concatenate((zero, fp_cum[ends]))
    n_pos = int(tp_cum[-1]) if n else 0
    return thresholds, tp, fp, n_pos - tp, (n - n_pos) - fp


def sweep(scores, labels):
    """Confusion counts of ``score >= t`` for every useful threshold ``t``.

    Returns ``(thresholds, tp, fp, fn, tn)``: ``thresholds`` is descending and starts with one value just above the
    maximum score (nothing predicted positive), followed by every distinct score. Counts are ``int64``. With no
    samples there is a single candidate, ``+inf``, with all counts zero.

    >>> t, tp, fp, fn, tn = sweep([0.2, 0.9, 0.2], [1, 0, 0])
    >>> t[1:].tolist(), tp.tolist(), fp.tolist(), fn.tolist(), tn.tolist()
    ([0.9, 0.2], [0, 0, 1], [0, 1, 2], [1, 1, 0], [2, 1, 0])
    """
    return _sweep_checked(*_check_binary_inputs(scores, labels))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (sklearn's ``zero_division=0``)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def metric_curve(tp, fp, fn, tn, metric: str, min_recall: Optional[float] = None) -> np.ndarray:
    """The metric at every candidate of a :func:`sweep`, as a float64 array.

    Every metric is one division of exact integer expressions, so mathematically equal values compare equal and tie
    breaking is deterministic. ``precision_at_recall`` is the precision where recall ``>= min_recall`` and ``-inf``
    elsewhere.

    >>> metric_curve([0, 1], [0, 1], [1, 0], [1, 0], "f1").tolist()
    [0.0, 0.6666666666666666]
    """
    _check_metric(metric, min_recall)
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    if metric == "f1":
        return _ratio(2 * tp, 2 * tp + fp + fn)
    if metric == "accuracy":
        return _ratio(tp + tn, tp + fp + fn + tn)
    if metric == "youden":
        # tpr - fpr == (tp*N - fp*P) / (P*N): a single rounding instead of two, so equal values tie exactly.
        # A missing class counts as 1 here: its rate's numerator is then 0 too, so that rate is taken as 0
        # (sklearn's zero_division=0) and the denominator is never 0.
        pos = np.maximum(tp + fn, 1)
        neg = np.maximum(fp + tn, 1)
        return (tp * neg - fp * pos) / (pos * neg)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return np.where(recall >= float(min_recall), precision, -np.inf)


# ---------------------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------------------

def _positive_sweep(s: np.ndarray, y: np.ndarray):
    """The candidates of :func:`sweep` that can win, with the same counts, at about half the cost.

    Every metric here is non-decreasing when a threshold moves up to the next positive score (only negatives
    leave the predicted set), so the best value is reached at a distinct positive score or above the maximum;
    those are exactly the candidates kept. Two plain sorts (positives, negatives) and binary searches replace
    the argsort + gather of a full sweep, which dominated tuning time at 10^6 samples.
    """
    s32 = s.astype(np.float32)
    if np.array_equal(s32, s):  # float32 scores (the usual case) sort faster, in the same order
        s = s32
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    starts = np.empty(n_pos, dtype=bool)  # first position of each run of equal positive scores
    starts[0] = True
    np.not_equal(pos[1:], pos[:-1], out=starts[1:])
    first = np.flatnonzero(starts)[::-1]
    candidates = pos[first]  # descending, like sweep()
    top = np.nextafter(np.float64(max(pos[-1], neg[-1]) if n_neg else pos[-1]), np.inf)
    zero = np.zeros(1, dtype=np.int64)
    tp = np.concatenate((zero, n_pos - first))
    fp = np.concatenate((zero, n_neg - np.searchsorted(neg, candidates, "left")))
    thresholds = np.concatenate(([top], candidates.astype(np.float64)))
    return thresholds, tp, fp, n_pos - tp, n_neg - fp


def _single_class_reason(y: np.ndarray) -> str:
    if y.shape[0] == 0:
        return "no samples"
    n_pos = int(y.sum())
    if n_pos == 0:
        return "only one class (all 0)"
    if n_pos == y.shape[0]:
        return "only one class (all 1)"
    return ""


def _too_few_reason(y: np.ndarray, min_samples: int, min_per_class: int) -> str:
    n, n_pos = int(y.shape[0]), int(y.sum())
    if n < min_samples:
        return f"only {n} samples (min_samples={int(min_samples)}): too few to move the threshold reliably"
    if min(n_pos, n - n_pos) < min_per_class:
        return (f"only {n_pos} positive and {n - n_pos} negative samples (min_per_class={int(min_per_class)}): too "
                f"few to move the threshold reliably")
    return ""


def _best_checked(s: np.ndarray, y: np.ndarray, metric: str, min_recall: Optional[float],
                  default: float, min_samples: int = 0, min_per_class: int = 0) -> ThresholdResult:
    n = int(s.shape[0])
    reason = _single_class_reason(y) or _too_few_reason(y, min_samples, min_per_class)
    if reason:
        return ThresholdResult(float(default), math.nan, n, False, reason)
    thresholds, tp, fp, fn, tn = _positive_sweep(s, y)
    curve = metric_curve(tp, fp, fn, tn, metric, min_recall)
    # Thresholds are descending and argmax returns the first maximum: ties go to the largest (most conservative).
    best = int(np.argmax(curve))
    if curve[best] == -np.inf:
        # Defensive: with both classes present the lowest score gives recall 1, so the floor is normally reachable.
        return ThresholdResult(float(default), math.nan, n, False, f"no threshold reaches recall >= {min_recall}")
    return ThresholdResult(float(thresholds[best]), float(curve[best]), n, True, "")


def best_threshold(scores, labels, metric: str = "f1", min_recall: Optional[float] = None,
                   default: float = 0.5, min_samples: int = 0, min_per_class: int = 0) -> ThresholdResult:
    """The threshold maximising ``metric`` for the rule ``score >= threshold``.

    The returned threshold is a candidate of :func:`sweep` (a sample score, or just above the maximum), so it
    reproduces ``value`` exactly; among equally good candidates the largest wins. With no samples, a single class,
    or an unreachable recall floor, ``default`` is returned with ``tuned=False`` and ``value=nan``; so it is with
    fewer than ``min_samples`` samples or fewer than ``min_per_class`` samples of either class (the ``reason`` says).

    Raises ``ValueError`` for non-1-D, mismatched, non-finite inputs, labels other than 0/1, an unknown metric,
    or a missing/out-of-range ``min_recall``.
    """
    _check_metric(metric, min_recall)
    s, y = _check_binary_inputs(scores, labels)
    return _best_checked(s, y, metric, min_recall, default, min_samples, min_per_class)


def best_thresholds(scores_2d, labels_2d, mask_2d=None, metric: str = "f1", min_recall: Optional[float] = None,
                    default: float = 0.5, min_samples: int = 0, min_per_class: int = 0) -> List[ThresholdResult]:
    """:func:`best_threshold` column by column (multilabel), using only the rows where ``mask_2d`` is true.

    Masked-out entries are never read for validation, so missing labels may hold NaN or any placeholder.
    ``mask_2d=None`` uses every row.
    """
    _check_metric(metric, min_recall)
    scores_2d = np.asarray(scores_2d)
    labels_2d = np.asarray(labels_2d)
    if scores_2d.ndim != 2:
        raise ValueError(f"scores_2d must be 2-D, got shape {scores_2d.shape}")
    if labels_2d.shape != scores_2d.shape:
        raise ValueError(f"labels_2d shape {labels_2d.shape} differs from scores_2d shape {scores_2d.shape}")
    if mask_2d is None:
        mask_2d = np.ones(scores_2d.shape, dtype=bool)
    mask_2d = np.asarray(mask_2d)
    if mask_2d.shape != scores_2d.shape:
        raise ValueError(f"mask_2d shape {mask_2d.shape} differs from scores_2d shape {scores_2d.shape}")
    if mask_2d.dtype != bool:
        if not np.isin(mask_2d, (0, 1)).all():
            raise ValueError("mask_2d must be boolean or 0/1")
        mask_2d = mask_2d.astype(bool)
    results = []
    for j in range(scores_2d.shape[1]):
        rows = mask_2d[:, j]
        s = _as_scores(scores_2d[rows, j], name=f"scores_2d[:, {j}]")
        y = _as_labels(labels_2d[rows, j], name=f"labels_2d[:, {j}]")
        results.append(_best_checked(s, y, metric, min_recall, default, min_samples, min_per_class))
    return results
