"""Where inside the best interval of thresholds to put the threshold (used by :mod:`.thresholds`).

Every threshold ``t`` in an interval ``(lower, upper]`` between two neighbouring distinct scores makes the same
decisions ``score >= t`` on the validation samples, so all of them reach the same validation value. Picking
``upper`` (a sample's own activation) leaves zero margin: a test sample a hair below it flips. The middle of the
interval keeps the largest distance from the samples on both sides. Where several consecutive intervals reach the
same best value (a *plateau*: crossing a tied group of one positive and one negative leaves accuracy unchanged),
the middle of the whole plateau is taken, moved off a sample's activation if it lands on one.

The outer intervals are bounded by the scores' domain: ``[0, 1]`` when every score is a probability (what the
library tunes), else one score range beyond the extremes. Thresholds are float32 numbers when the scores are
(sigmoid outputs are), so that a float32 comparison in torch makes exactly the decisions measured here.

Example:
    >>> import numpy as np
    >>> midpoint(0.2, 0.6, float32=False)
    0.4
    >>> edges(np.array([0.1, 0.9]), np.array([0.4]))
    (0.0, 1.0)
    >>> edges(np.array([-3.0, 5.0]), np.array([12.0]))
    (-18.0, 27.0)
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def edges(pos: np.ndarray, neg: np.ndarray) -> Tuple[float, float]:
    """The domain's bounds: ``(0, 1)`` for probabilities, else one score range beyond the extremes."""
    scores = [a for a in (pos, neg) if a.shape[0]]
    low = float(min(a[0] for a in scores))  # pos and neg are sorted ascending
    high = float(max(a[-1] for a in scores))
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    span = high - low if high > low else 1.0
    return low - span, high + span


def _step(value: float, direction: float, float32: bool) -> float:
    if float32:
        return float(np.nextafter(np.float32(value), np.float32(direction)))
    return float(np.nextafter(value, direction))


def midpoint(lower: float, upper: float, float32: bool) -> float:
    """A threshold in ``(lower, upper]``, as close to the middle as the number type allows (``upper`` itself only
    when no number lies strictly between; float32 numbers where ``float32``).

    >>> midpoint(0.25, 0.75, float32=True)
    0.5
    >>> x = float(np.float32(0.3)); after = float(np.nextafter(np.float32(x), np.float32(1)))
    >>> midpoint(x, after, float32=True) == after  # adjacent float32 numbers: nothing lies between
    True
    """
    middle = lower + (upper - lower) / 2.0
    if float32:
        middle = float(np.float32(middle))
    if middle <= lower:
        middle = _step(lower, np.inf, float32)
    return min(middle, upper)


def interval_bounds(thresholds: np.ndarray, at: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                    domain: Tuple[float, float], float32: bool) -> Tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the threshold intervals of the candidates ``thresholds[at]`` of a positive sweep
    (``thresholds[0]`` stands for "above every score"; the others are distinct positive scores, descending)."""
    lower = np.empty(at.shape[0], dtype=np.float64)
    upper = np.empty(at.shape[0], dtype=np.float64)
    highest = max(float(pos[-1]), float(neg[-1]) if neg.shape[0] else -np.inf)
    lowest = min(float(pos[0]), float(neg[0]) if neg.shape[0] else np.inf)
    for k, i in enumerate(at.tolist()):
        if i == 0:
            lower[k] = highest
            upper[k] = domain[1] if domain[1] > highest else _step(highest, np.inf, float32)
            continue
        score = thresholds[i]
        below_pos = thresholds[i + 1] if i + 1 < thresholds.shape[0] else -np.inf
        j = int(np.searchsorted(neg, neg.dtype.type(score), "left"))
        below_neg = float(neg[j - 1]) if j > 0 else -np.inf
        below = max(float(below_pos), below_neg)
        if below == -np.inf:  # the lowest score: bounded by the domain
            below = domain[0] if domain[0] < lowest else _step(lowest, -np.inf, float32)
        lower[k], upper[k] = below, float(score)
    return lower, upper


def plateau_threshold(thresholds: np.ndarray, curve: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                      float32: bool) -> Tuple[float, float, float]:
    """``(lower, upper, threshold)``: the widest plateau of consecutive intervals reaching ``curve.max()`` (the
    highest one among equally wide), and the threshold at its middle, off every sample's activation."""
    best = np.flatnonzero(curve == curve.max())
    lower, upper = interval_bounds(thresholds, best, pos, neg, edges(pos, neg), float32)
    # Candidate k+1 continues candidate k's plateau when nothing lies between them: k's lower bound is its upper.
    joined = (np.diff(best) == 1) & (lower[:-1] == upper[1:])
    starts = np.flatnonzero(np.concatenate(([True], ~joined)))
    ends = np.append(starts[1:], best.shape[0]) - 1
    widths = upper[starts] - lower[ends]
    pick = int(np.argmax(widths))  # first of the widest: the highest, the most conservative
    first, last = int(starts[pick]), int(ends[pick])
    lo, hi = float(lower[last]), float(upper[first])
    threshold = midpoint(lo, hi, float32)
    inner = upper[first + 1:last + 1]  # activations inside the plateau
    hit = np.flatnonzero(inner == threshold)
    if hit.shape[0]:  # on a tied group inside the plateau: the middle of the interval just above it instead
        k = first + int(hit[0])
        threshold = midpoint(float(lower[k]), float(upper[k]), float32)
    return lo, hi, threshold
