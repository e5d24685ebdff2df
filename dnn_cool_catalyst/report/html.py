"""``report.csv`` and one self-contained ``report.html`` (inline CSS, JS and SVG; nothing fetched) for a
:class:`~dnn_cool_catalyst.report.compare.Comparison`."""
from __future__ import annotations

import datetime
import math
import os
from html import escape
from typing import List, Optional, Tuple
from urllib.parse import quote

import pandas as pd

from ..atomic import atomic_write_text
from ..run.claim import refuse_run_file
from ..spreadsheet import spreadsheet_safe
from .compare import STATUSES, Comparison, ReportError, collect, smaller_is_better
from .svg import bar_chart, color, line_chart

_HIDDEN_IN_HTML = ("path", "config_source", "metrics_source")

_CSS = """
body{font-family:sans-serif;margin:16px 24px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.sub{color:#555;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0;white-space:normal;max-width:150px;
   vertical-align:bottom} th:hover{background:#e6e6e6}
th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
td.text{text-align:left} th.param{background:#fff4d6} th.metric{background:#e3f0ff}
td.detail{text-align:left;white-space:normal;min-width:140px;max-width:300px;color:#555;font-size:11px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;vertical-align:middle}
.status{padding:1px 6px;border-radius:8px;color:#fff;font-size:11px}
.done{background:#2e7d32} .running{background:#1565c0} .failed{background:#c62828} .incomplete{background:#9e9e9e}
.unreadable{background:#6a1b9a} .skipped{background:#795548}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.legend span{margin-right:14px;font-size:12px;white-space:nowrap}
details{margin-top:8px} summary{cursor:pointer;font-size:13px}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row){ var c = row.cells[col]; return c.getAttribute('data-v') !== null ?
                         c.getAttribute('data-v') : c.textContent.trim(); }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === '' && y === '') return 0; if (x === '') return 1; if (y === '') return -1;
        var nx = parseFloat(x), ny = parseFloat(y), r;
        r = (!isNaN(nx) && !isNaN(ny) && isFinite(x) && isFinite(y)) ? nx - ny : x.localeCompare(y);
        return asc ? r : -r;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def write_report(root, out: str = "report", metric: Optional[str] = None, split: str = "test",
                 gating: str = "gt") -> Tuple[str, str, Comparison]:
    """Compare the experiments under ``root`` and write ``<out>/report.csv`` and ``<out>/report.html``
    (atomically; ``out`` is created). Returns ``(csv path, html path, comparison)``."""
    comparison = collect(root, metric, split, gating)
    out = os.fspath(out)
    refuse_run_file(out, "--out", error=ReportError)  # report.csv/html never land among a run's own files
    csv_path, html_path = os.path.join(out, "report.csv"), os.path.join(out, "report.html")
    page = render_html(comparison, out)
    atomic_write_text(csv_path, spreadsheet_safe(comparison.table).to_csv(index=False))
    atomic_write_text(html_path, page)
    return csv_path, html_path, comparison


def render_html(comparison: Comparison, out_dir: str) -> str:
    """The whole page as one string; links to run directories are relative to ``out_dir``."""
    colors = {exp.path: color(i) for i, exp in enumerate(comparison.experiments)}
    metric = comparison.metric
    direction = ("smaller is better" if smaller_is_better(metric) else "larger is better") if metric else ""
    counts = comparison.table.status.value_counts()
    summary = ", ".join(f"{int(counts[s])} {s}" for s in STATUSES
                        if s in counts)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Experiments: {escape(os.path.abspath(comparison.root))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Experiment comparison: {escape(os.path.abspath(comparison.root))}</h1>",
        f'<div class="sub">{len(comparison.experiments)} experiments ({escape(summary)}); split '
        f"<b>{escape(comparison.split)}</b>, <b>{escape(comparison.gating)}</b> gating; "
        + (f"sorted by <b>{escape(metric)}</b> ({direction})" if metric else "no evaluation files yet")
        + f"; {len(comparison.parameters)} differing setting(s) shown; generated {generated}. "
          "Click a column header to sort.</div>",
        "<h2>Experiments</h2>", _table_html(comparison, colors, out_dir),
    ]
    if metric:
        parts += ["<h2>Per-task metrics</h2>", _legend(comparison, colors, with_metrics=True),
                  _bars_html(comparison, colors)]
    parts += ["<h2>Learning curves (TensorBoard scalars)</h2>", _legend(comparison, colors),
              _curves_html(comparison, colors)]
    parts += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts)


def _cell(value) -> Tuple[str, str]:
    """``(shown text, sort key)`` of a table value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, float):
        return f"{value:.4g}", repr(value)
    return str(value), str(value)


def _table_html(comparison: Comparison, colors: dict, out_dir: str) -> str:
    table = comparison.table
    columns = [c for c in table.columns if c not in _HIDDEN_IN_HTML and c != "detail"]
    if "detail" in table.columns:  # why a run is not done belongs next to its status, not off-screen
        columns.insert(columns.index("status") + 1, "detail")
    params = set(comparison.parameters) | {f"config.{p}" for p in comparison.parameters}
    metric_columns = {c for c in columns if "/" in c and c not in params}
    head = []
    for c in columns:
        cls = "param" if c in params else "metric" if c in metric_columns else ""
        # Long dotted names may break after a dot or slash instead of widening the whole column.
        shown = escape(c).replace(".", ".<wbr>").replace("/", "/<wbr>")
        head.append(f'<th class="{cls}" title="{escape(c)}">{shown}</th>')
    rows = []
    for record in table.to_dict("records"):
        cells = []
        for c in columns:
            value = record[c]
            if c == "experiment":
                href = quote(os.path.relpath(record["path"], os.path.abspath(out_dir)).replace(os.sep, "/")) + "/"
                cells.append(f'<td class="text" data-v="{escape(str(value))}"><span class="swatch" '
                             f'style="background:{colors[record["path"]]}"></span><a href="{href}">'
                             f'{escape(str(value))}</a></td>')
            elif c == "status":
                cells.append(f'<td class="text" data-v="{escape(value)}"><span class="status {escape(value)}" '
                             f'title="{escape(str(record.get("detail", "")))}">{escape(value)}</span></td>')
            elif c == "detail":
                cells.append(f'<td class="detail">{escape(str(value))}</td>')
            else:
                text, key = _cell(value)
                cls = "" if c in metric_columns or isinstance(value, (int, float)) else ' class="text"'
                cells.append(f'<td{cls} data-v="{escape(key)}">{escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{"".join(head)}</tr></thead><tbody>'
            + "\n".join(rows) + "</tbody></table></div>")


def _legend(comparison: Comparison, colors: dict, with_metrics: bool = False) -> str:
    shown = [e for e in comparison.experiments if e.metrics is not None or not with_metrics]
    return '<div class="legend">' + "".join(
        f'<span><span class="swatch" style="background:{colors[e.path]}"></span>{escape(e.name)}</span>'
        for e in shown) + "</div>"


def _bars_html(comparison: Comparison, colors: dict) -> str:
    """One grouped bar chart per metric name (the sort metric's first, the others folded away): tasks on the
    x axis, one bar per experiment, fold groups with their std."""
    with_metrics = [e for e in comparison.experiments if e.metrics is not None]
    if not with_metrics:
        return '<p class="sub">No experiment has metrics for this split and gating yet.</p>'
    frames = pd.concat([e.metrics.assign(_path=e.path) for e in with_metrics], ignore_index=True)
    chosen = comparison.metric.rsplit("/", 1)[1]
    names = [chosen] + [n for n in dict.fromkeys(frames.metric_name) if n != chosen]
    charts = []
    for name in names:
        part = frames[frames.metric_name == name]
        tasks = list(dict.fromkeys(part.task_path))
        series = [(e.name, colors[e.path]) for e in with_metrics]
        values, errors = [], []
        for e in with_metrics:
            mine = part[part._path == e.path].set_index("task_path")
            values.append([float(mine.value.get(t, float("nan"))) for t in tasks])
            errors.append([float(mine["std"].get(t, float("nan"))) for t in tasks])
        charts.append(bar_chart(f"{name} per task ({comparison.split}, {comparison.gating} gating)", tasks, series,
                                values, errors))
    first = f'<div class="charts">{charts[0]}</div>'
    rest = "".join(f'<div class="charts">{c}</div>' for c in charts[1:])
    return first + (f"<details><summary>Other metrics ({', '.join(escape(n) for n in names[1:])})</summary>"
                    f"{rest}</details>" if rest else "")


def _curve_series(comparison: Comparison, colors: dict, loader: str, tag: str) -> List[tuple]:
    series = []
    for exp in comparison.experiments:
        for run_dir, curves in exp.curves.items():
            points = curves.get(loader, {}).get(tag)
            if points:
                label = exp.name if run_dir == exp.path else f"{exp.name}/{os.path.basename(run_dir)}"
                series.append((label, colors[exp.path], points))
    return series


def _curves_html(comparison: Comparison, colors: dict) -> str:
    """Train and valid loss, and the sort metric on valid, per epoch; a fold group draws one line per fold."""
    wanted = [("train", "loss/epoch", "train loss"), ("valid", "loss/epoch", "valid loss")]
    if comparison.metric:
        wanted.append(("valid", f"{comparison.metric}/epoch", f"valid {comparison.metric}"))
    charts = [line_chart(title, _curve_series(comparison, colors, loader, tag), "epoch")
              for loader, tag, title in wanted]
    return f'<div class="charts">{"".join(charts)}</div>'
