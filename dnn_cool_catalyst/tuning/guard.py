"""Whether a better threshold on validation is better beyond noise (used by :mod:`.thresholds`).

Moving the threshold from the current ``t0`` to a candidate ``t1`` changes the decision of exactly the samples whose
score lies between the two (the *discordant* samples); every other decision stays. Moving down turns them positive,
moving up negative. Call ``b`` the discordant samples the move makes right (positives when moving down, negatives
when moving up) and ``c`` those it makes wrong.

For every metric tuned here, the move gains iff the share of positives among the discordant samples exceeds a
*neutral share* ``r`` fixed by the counts at ``t0`` (derivations in :func:`neutral_share`):

==================== ================================= ================================================
metric               neutral share of positives ``r``  why
==================== ================================= ================================================
accuracy             1/2                               gain = (b - c) / n
youden               P / (P + N)                       gain = dTP / P - dFP / N
f1                   F1(t0) / 2                        F1 rises iff dTP / (dTP + dFP) > TP / (TP + FP + P)
precision_at_recall  precision(t0)                     precision rises iff the added share beats it
==================== ================================= ================================================

The null hypothesis "the move does not gain in expectation" says each discordant sample is one the move makes
right with probability ``q = r`` (moving down) or ``q = 1 - r`` (moving up). The one-sided exact binomial p-value
``P(Binomial(b + c, q) >= b)`` is then the chance of a validation gain at least this large from noise alone; for
accuracy it is the exact one-sided McNemar test. The move is made only when it is below ``alpha``. ``r`` is read
from the validation counts at ``t0`` (for F1, Youden and precision) and treated as fixed; the candidate is the best of
many, so the real false-move rate is above ``alpha``: the guard errs towards moving, never towards staying for a
clear gain.

Example:
    >>> round(binomial_tail(3, 4, 0.5), 4)  # P(Bin(4, 1/2) >= 3) = 5/16
    0.3125
    >>> neutral_share("accuracy", tp=10, fp=5, n_pos=20, n_neg=30)
    0.5
    >>> neutral_share("f1", tp=10, fp=5, n_pos=20, n_neg=30)  # F1 = 20/35, half of it
    0.2857142857142857
"""
from __future__ import annotations

from typing import Optional, Tuple


def neutral_share(metric: str, tp: int, fp: int, n_pos: int, n_neg: int) -> Optional[float]:
    """The share of positives among the samples crossed by a move at which ``metric`` neither gains nor loses,
    from the counts at the current threshold; None where the current threshold has no value to defend
    (``precision_at_recall`` with nothing predicted positive).

    Accuracy: crossing ``a`` positives and ``d`` negatives downwards changes it by ``(a - d) / n``. Youden's
    ``TP/P - FP/N`` by ``a / P - d / N``, zero at ``a / (a + d) = P / (P + N)``. F1 ``= 2TP / (TP + FP + P)`` grows
    iff ``a (TP + FP + P) > TP (a + d)``, i.e. ``a / (a + d) > TP / (TP + FP + P) = F1 / 2``; moving up mirrors
    it. Precision ``TP / (TP + FP)`` grows iff the added samples are more often positive than it.
    """
    if metric == "accuracy":
        return 0.5
    if metric == "youden":
        return n_pos / (n_pos + n_neg)
    if metric == "f1":
        return tp / (tp + fp + n_pos)
    if tp + fp == 0:
        return None
    return tp / (tp + fp)


def binomial_tail(b: int, n: int, q: float) -> float:
    """``P(Binomial(n, q) >= b)``, exact (regularised incomplete beta through scipy, which scikit-learn brings)."""
    if b <= 0:
        return 1.0
    if b > n:
        return 0.0
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    from scipy.special import bdtrc  # P(X > k); imported here to keep `import dnn_cool_catalyst` light

    return float(bdtrc(b - 1, n, q))


def discordant(tp0: int, fp0: int, tp1: int, fp1: int) -> Tuple[int, int, bool]:
    """``(b, c, down)`` of a move between two thresholds with counts ``(tp0, fp0)`` and ``(tp1, fp1)``: the crossed
    samples it makes right and wrong, and whether it moves down (more samples positive)."""
    down = tp1 + fp1 >= tp0 + fp0
    if down:
        return tp1 - tp0, fp1 - fp0, True
    return fp0 - fp1, tp0 - tp1, False


def move_p_value(metric: str, counts0: Tuple[int, int], counts1: Tuple[int, int], n_pos: int,
                 n_neg: int) -> Tuple[int, int, Optional[float]]:
    """``(b, c, p)``: the discordant counts of the move from ``counts0 = (tp0, fp0)`` to ``counts1`` and the
    p-value of its gain under "no gain in expectation" (None where the current threshold has no value to
    defend, see :func:`neutral_share`).

    >>> b, c, p = move_p_value("accuracy", (40, 10), (45, 11), 50, 50)  # 5 positives gained, 1 negative lost
    >>> b, c, round(p, 6)  # P(Bin(6, 1/2) >= 5) = 7/64
    (5, 1, 0.109375)
    """
    b, c, down = discordant(*counts0, *counts1)
    share = neutral_share(metric, counts0[0], counts0[1], n_pos, n_neg)
    if share is None:
        return b, c, None
    return b, c, binomial_tail(b, b + c, share if down else 1.0 - share)
