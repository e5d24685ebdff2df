"""Exact, sort-based threshold tuning for binary decisions, with thresholds that generalise.

Decision rule everywhere: predict positive iff ``score >= threshold``. Scores are usually probabilities, but nothing
here assumes they lie in ``[0, 1]``.

A predicted set can only change at a distinct score, so sorting the scores once and taking cumulative sums gives the
confusion counts of *every* threshold that matters in ``O(n log n)``; the best one is then a vectorised ``argmax``.
This is exact: no grid can reach a better metric value. Two rules make the result hold up beyond the validation set:

- **Inside the interval, not on a sample.** All thresholds between two neighbouring distinct scores make the same
  decisions; the threshold is put in the middle of the best such interval (of the best plateau of consecutive
  equally good intervals), never on a validation sample's activation (:mod:`.interval`). Re-applying
  ``score >= threshold`` reproduces the reported value.
- **No move for noise.** The threshold leaves its current value (``default``, 0.5 for a fresh task) only when the
  gain is significant: an exact one-sided binomial test on the samples whose decision changes, McNemar's test for
  accuracy (:mod:`.guard`). Otherwise ``kept`` is true and ``reason`` says why.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.125, 0.625, 0.375, 0.875, 0.75])
    >>> labels = np.array([0, 0, 1, 1, 1])
    >>> result = best_threshold(scores, labels, metric="f1", alpha=None)  # no noise guard: the best interval
    >>> result.lower, result.upper, result.threshold, result.value
    (0.125, 0.375, 0.25, 0.8571428571428571)
    >>> bool(((scores >= result.threshold) == labels.astype(bool)).sum() == 4)
    True
    >>> guarded = best_threshold(scores, labels, metric="f1")  # 5 samples cannot justify leaving 0.5
    >>> guarded.threshold, guarded.kept, guarded.reason
    (0.5, True, 'gain within noise (b=1, c=0, p=0.33 >= alpha=0.05)')
    >>> best_threshold(scores, np.zeros(5)).reason
    'only one class (all 0)'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .guard import move_p_value
from .interval import plateau_threshold

METRICS = ("f1", "accuracy", "youden", "precision_at_recall")


@dataclass
class ThresholdResult:
    """Outcome of a threshold search.

    ``threshold`` is the one to use and ``value`` the metric it reaches on the tuning samples (``nan`` when nothing
    was tuned). ``tuned`` says whether the samples allowed a search at all; ``reason`` is ``''`` when the threshold
    moved to the best interval, otherwise why it is still the current one. The best interval of thresholds on the
    tuning samples is ``(lower, upper]``, reaching ``best_value`` at its middle ``candidate``; ``kept`` is true when
    the current threshold stayed although the search ran (the gain was within noise, or there was none). ``b`` and
    ``c`` count the samples whose decision the move would make right and wrong, ``p_value`` the chance of such a
    gain from noise alone (see :mod:`.guard`).
    """

    threshold: float
    value: float
    num_samples: int
    tuned: bool
    reason: str
    lower: Optional[float] = None
    upper: Optional[float] = None
    candidate: Optional[float] = None
    best_value: Optional[float] = None
    kept: bool = False
    p_value: Optional[float] = None
    b: Optional[int] = None
    c: Optional[int] = None

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

    Returns ``(thresholds, tp, fp, fn, tn)`` (``thresholds[0]`` stands for "above every score") and the sorted
    positive and negative scores, float32 when every score is a float32 number.
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
    return (thresholds, tp, fp, n_pos - tp, n_neg - fp), pos, neg


def _counts_at(pos: np.ndarray, neg: np.ndarray, threshold: float) -> Tuple[int, int]:
    """``(tp, fp)`` of ``score >= threshold``, compared in the scores' own number type (as torch compares a float32
    activation with a Python float)."""
    t = pos.dtype.type(threshold)
    return (int(pos.shape[0] - np.searchsorted(pos, t, "left")),
            int(neg.shape[0] - np.searchsorted(neg, t, "left")))


def _value_at(counts: Tuple[int, int], n_pos: int, n_neg: int, metric: str, min_recall: Optional[float]) -> float:
    tp, fp = counts
    return float(metric_curve([tp], [fp], [n_pos - tp], [n_neg - fp], metric, min_recall)[0])


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


def _check_alpha(alpha: Optional[float]) -> None:
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or not 0.0 < alpha <= 1.0):
        raise ValueError(f"alpha must be a number in (0, 1] or None (no noise guard), got {alpha!r}")


def _best_checked(s: np.ndarray, y: np.ndarray, metric: str, min_recall: Optional[float],
                  default: float, min_samples: int = 0, min_per_class: int = 0,
                  alpha: Optional[float] = 0.05) -> ThresholdResult:
    n = int(s.shape[0])
    reason = _single_class_reason(y) or _too_few_reason(y, min_samples, min_per_class)
    if reason:
        return ThresholdResult(float(default), math.nan, n, False, reason)
    (thresholds, tp, fp, fn, tn), pos, neg = _positive_sweep(s, y)
    curve = metric_curve(tp, fp, fn, tn, metric, min_recall)
    if curve.max() == -np.inf:
        # Defensive: with both classes present the lowest score gives recall 1, so the floor is normally reachable.
        return ThresholdResult(float(default), math.nan, n, False, f"no threshold reaches recall >= {min_recall}")
    lower, upper, candidate = plateau_threshold(thresholds, curve, pos, neg, float32=pos.dtype == np.float32)
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    counts = _counts_at(pos, neg, candidate)
    best_value = _value_at(counts, n_pos, n_neg, metric, min_recall)
    found = dict(lower=lower, upper=upper, candidate=candidate, best_value=best_value)
    if alpha is None:
        return ThresholdResult(candidate, best_value, n, True, "", **found)
    current = _counts_at(pos, neg, default)
    value = _value_at(current, n_pos, n_neg, metric, min_recall)
    b, c, p_value = move_p_value(metric, current, counts, n_pos, n_neg)
    guard = dict(p_value=p_value, b=b, c=c)
    if value == -np.inf or (best_value > value and p_value is not None and p_value < alpha):
        return ThresholdResult(candidate, best_value, n, True, "", **found, **guard)
    if best_value <= value:
        reason = f"no gain: the current threshold {float(default):.4g} is as good ({metric} {value:.4g})"
    else:
        reason = f"gain within noise (b={b}, c={c}, p={p_value:.2g} >= alpha={alpha:g})"
    return ThresholdResult(float(default), value, n, True, reason, **found, kept=True, **guard)


def best_threshold(scores, labels, metric: str = "accuracy", min_recall: Optional[float] = None,
                   default: float = 0.5, min_samples: int = 0, min_per_class: int = 0,
                   alpha: Optional[float] = 0.05) -> ThresholdResult:
    """The threshold maximising ``metric`` for the rule ``score >= threshold``, kept at ``default`` (the current
    threshold) unless the gain is beyond noise.

    The search is exact over every distinct score. The best interval of thresholds ``(lower, upper]`` (the widest
    plateau of equally good consecutive intervals; the highest among equally wide ones) gives the ``candidate`` at
    its middle, never on a sample's score (float32 when the scores are, so torch's float32 comparison makes the
    same decisions). The threshold moves there only if ``P(Binomial(b + c, q) >= b) < alpha`` for the ``b``
    samples the move makes right and the ``c`` it makes wrong, ``q`` being the share at which the move would not
    gain (1/2 for accuracy: McNemar's exact test; see :mod:`.guard`); otherwise ``kept`` is true and
    ``reason`` says ``gain within noise (b=.., c=.., p=..)`` or ``no gain``. ``alpha=None`` always moves to the
    candidate. Either way ``score >= threshold`` reproduces ``value``.

    With no samples, a single class, or an unreachable recall floor, ``default`` is returned with ``tuned=False``
    and ``value=nan``; so it is with fewer than ``min_samples`` samples or fewer than ``min_per_class`` samples of
    either class (the ``reason`` says).

    Raises ``ValueError`` for non-1-D, mismatched, non-finite inputs, labels other than 0/1, an unknown metric,
    a missing/out-of-range ``min_recall``, or an ``alpha`` outside ``(0, 1]``.

    >>> scores = np.r_[np.linspace(0.05, 0.45, 40), np.linspace(0.55, 0.95, 40)]
    >>> labels = np.r_[np.zeros(40), np.ones(40)]
    >>> labels[[0, 1]] = 1  # two positives scored 0.05 and 0.06: lowering the threshold that far costs 36 errors
    >>> r = best_threshold(scores, labels)
    >>> r.threshold, r.kept, r.lower, r.upper, r.value
    (0.5, True, 0.45, 0.55, 0.975)
    """
    _check_metric(metric, min_recall)
    _check_alpha(alpha)
    s, y = _check_binary_inputs(scores, labels)
    return _best_checked(s, y, metric, min_recall, default, min_samples, min_per_class, alpha)


def best_thresholds(scores_2d, labels_2d, mask_2d=None, metric: str = "accuracy", min_recall: Optional[float] = None,
                    default=0.5, min_samples: int = 0, min_per_class: int = 0,
                    alpha: Optional[float] = 0.05) -> List[ThresholdResult]:
    """:func:`best_threshold` column by column (multilabel), using only the rows where ``mask_2d`` is true.

    ``default`` is the current threshold, one for all columns or one per column. Masked-out entries are never read
    for validation, so missing labels may hold NaN or any placeholder. ``mask_2d=None`` uses every row.
    """
    _check_metric(metric, min_recall)
    _check_alpha(alpha)
    scores_2d = np.asarray(scores_2d)
    labels_2d = np.asarray(labels_2d)
    if scores_2d.ndim != 2:
        raise ValueError(f"scores_2d must be 2-D, got shape {scores_2d.shape}")
    if labels_2d.shape != scores_2d.shape:
        raise ValueError(f"labels_2d shape {labels_2d.shape} differs from scores_2d shape {scores_2d.shape}")
    defaults = np.broadcast_to(np.asarray(default, dtype=np.float64), (scores_2d.shape[1],)) \
        if np.ndim(default) == 0 or len(default) == scores_2d.shape[1] else None
    if defaults is None:
        raise ValueError(f"default must be one threshold or one per column ({scores_2d.shape[1]}), got {default!r}")
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
        results.append(_best_checked(s, y, metric, min_recall, float(defaults[j]), min_samples, min_per_class,
                                     alpha))
    return results
