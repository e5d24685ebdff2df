"""Small inline SVG charts (grouped bars, lines) for the HTML report: no plotting library, no network.

Example:
    >>> nice_ticks(0.0, 0.93)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> svg = line_chart("valid loss", [("a", "#1f77b4", [(1, 2.0), (2, 1.5)])], "epoch")
    >>> svg.startswith("<svg") and "<polyline" in svg
    True
"""
from __future__ import annotations

import math
from html import escape
from typing import List, Optional, Sequence, Tuple

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
_FONT = 'font-family="sans-serif" font-size="11"'


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> List[float]:
    """Round tick values covering ``[lo, hi]`` (about ``count`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) * 0.1 or 0.5), hi + (abs(hi) * 0.1 or 0.5)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while not ticks or ticks[-1] < hi - step * 1e-9:  # up to the first tick at or above hi, not one more
        ticks.append(round(value, 12))
        value += step
    return ticks


def bar_axis(lows: Sequence[float], highs: Sequence[float]) -> List[float]:
    """Ticks for bars of values ``lows`` (whiskers up to ``highs``): from 0 when the values spread over much of
    their scale, else around the data, so 0.93 and 0.98 look different (the bars then start at the axis' foot).

    >>> bar_axis([0.93, 0.98], [0.98])
    [0.92, 0.94, 0.96, 0.98]
    >>> bar_axis([0.2, 0.9], [0.9])
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not lows:
        return nice_ticks(0.0, 1.0)
    lo, hi = min(lows), max(list(highs) + list(lows))
    if lo > 0 and lo > 0.5 * hi:  # the values share most of their scale: zoom in on them
        return nice_ticks(lo - 0.1 * (hi - lo), hi)
    return nice_ticks(min(0.0, lo), hi)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _frame(width: int, height: int, title: str, ticks: Sequence[float], scale, left: int, right: int,
           ylabel: str = "") -> List[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<title>{escape(title)}</title>',
             f'<text x="{left + (width - left - right) / 2:.0f}" y="14" text-anchor="middle" {_FONT} '
             f'font-weight="bold">'
             f'{escape(title)}</text>']
    for tick in ticks:
        y = scale(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>{_fmt(tick)}</text>')
    if ylabel:
        parts.append(f'<text x="10" y="{height / 2:.0f}" transform="rotate(-90 10 {height / 2:.0f})" '
                     f'text-anchor="middle" {_FONT}>{escape(ylabel)}</text>')
    return parts


def bar_chart(title: str, groups: Sequence[str], series: Sequence[Tuple[str, str]],
              values: Sequence[Sequence[float]], errors: Optional[Sequence[Sequence[float]]] = None,
              height: int = 260) -> str:
    """Grouped bars: one group per entry of ``groups`` (tasks), one bar per ``series`` ``(label, color)``
    (experiments); ``values[s][g]`` (NaN: no bar), optional ``errors[s][g]`` drawn as +-whiskers."""
    bar_w = max(4, min(18, 360 // max(1, len(series))))
    group_w = bar_w * len(series) + 14
    # Task names are written at -35 degrees under their group: room below and, for the first one, on the left.
    longest = max((len(g) for g in groups), default=0)
    first = len(groups[0]) if groups else 0
    left = max(48, int(first * 6.2 * 0.82 - group_w / 2) + 8)
    right, top, bottom = 10, 24, min(200, int(longest * 5.8 * 0.57) + 18)
    height += bottom - 70
    width = max(320, left + right + group_w * len(groups))
    finite = [v + (errors[s][g] if errors and math.isfinite(errors[s][g]) else 0)
              for s, row in enumerate(values) for g, v in enumerate(row) if math.isfinite(v)]
    lows = [v for row in values for v in row if math.isfinite(v)]
    ticks = bar_axis(lows, finite)
    lo, hi = ticks[0], ticks[-1]
    plot_h = height - top - bottom

    def scale(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    parts = _frame(width, height, title, ticks, scale, left, right)
    base = scale(max(lo, 0.0))
    for g, group in enumerate(groups):
        x0 = left + g * group_w + 7
        for s, (label, fill) in enumerate(series):
            v = values[s][g]
            if not math.isfinite(v):
                continue
            x, y = x0 + s * bar_w, scale(v)
            tip = f"{label} / {group}: {_fmt(v)}"
            err = errors[s][g] if errors else float("nan")
            if math.isfinite(err):
                tip += f" ± {_fmt(err)}"
            parts.append(f'<rect x="{x}" y="{min(y, base):.1f}" width="{bar_w - 2}" height="{abs(base - y):.1f}" '
                         f'fill="{fill}"><title>{escape(tip)}</title></rect>')
            if math.isfinite(err) and err > 0:
                cx = x + (bar_w - 2) / 2
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{scale(v - err):.1f}" '
                             f'y2="{scale(v + err):.1f}" stroke="#222"/>')
        label_x = x0 + bar_w * len(series) / 2
        parts.append(f'<text x="{label_x:.1f}" y="{height - bottom + 12}" text-anchor="end" '
                     f'transform="rotate(-35 {label_x:.1f} {height - bottom + 12})" {_FONT}>{escape(group)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(title: str, series: Sequence[Tuple[str, str, Sequence[Tuple[float, float]]]], xlabel: str,
               width: int = 420, height: int = 240) -> str:
    """Lines ``(label, color, [(x, y), ...])`` on shared axes; a single point shows as a dot."""
    left, right, top, bottom = 52, 12, 24, 34
    points = [(x, y) for _, _, pts in series for x, y in pts if math.isfinite(y)]
    xs = [x for x, _ in points] or [0.0, 1.0]
    ticks = nice_ticks(min(y for _, y in points), max(y for _, y in points)) if points else [0.0, 1.0]
    lo, hi = ticks[0], ticks[-1]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def scale(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    def x_of(v: float) -> float:
        return left + plot_w * (v - x_lo) / (x_hi - x_lo)

    parts = _frame(width, height, title, ticks, scale, left, right)
    for tick in nice_ticks(x_lo, x_hi, 6):
        if x_lo <= tick <= x_hi and float(tick).is_integer():
            parts.append(f'<text x="{x_of(tick):.1f}" y="{height - bottom + 14}" text-anchor="middle" {_FONT}>'
                         f'{int(tick)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle" {_FONT}>'
                 f'{escape(xlabel)}</text>')
    if not points:
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
                     f'{_FONT} fill="#888">no scalars logged</text>')
    for label, stroke, pts in series:
        pts = [(x, y) for x, y in pts if math.isfinite(y)]
        if not pts:
            continue
        tip = f"<title>{escape(label)}</title>"
        coords = " ".join(f"{x_of(x):.1f},{scale(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="1.8">{tip}'
                     f'</polyline>')
        for x, y in pts:
            parts.append(f'<circle cx="{x_of(x):.1f}" cy="{scale(y):.1f}" r="2.5" fill="{stroke}">'
                         f'<title>{escape(label)}: {_fmt(y)} at {x:g}</title></circle>')
    parts.append("</svg>")
    return "\n".join(parts)
