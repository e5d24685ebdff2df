"""``dnn-cool-report``: compare the experiments under a folder.

    dnn-cool-report DIR [--metric task/metric] [--split test] [--gating gt|decoded] [--out report]

Writes ``<out>/report.csv`` and ``<out>/report.html`` (self-contained). Exit status 2 with one line on standard
error for a folder without runs or an unknown metric (the line lists the available ones).
"""
from __future__ import annotations

import argparse
import sys

from .compare import ReportError
from .html import write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dnn-cool-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", metavar="DIR", help="folder searched recursively for runs and fold groups")
    parser.add_argument("--metric", default=None, help="task/metric to sort by, e.g. door_open/accuracy "
                                                       "(default: the first one found)")
    parser.add_argument("--split", default="test", help="which evaluation_<split>_<gating>.csv to read")
    parser.add_argument("--gating", default="gt", choices=["gt", "decoded"])
    parser.add_argument("--out", default="report", help="output folder for report.csv and report.html")
    args = parser.parse_args(argv)
    try:
        csv_path, html_path, comparison = write_report(args.dir, args.out, args.metric, args.split, args.gating)
    except ReportError as e:
        print(f"dnn-cool-report: error: {e}", file=sys.stderr)
        sys.exit(2)
    counts = comparison.table.status.value_counts()
    print(f"{len(comparison.experiments)} experiments ("
          + ", ".join(f"{int(n)} {s}" for s, n in counts.items()) + ")"
          + (f", sorted by {comparison.metric}" if comparison.metric else ""))
    print(f"wrote {csv_path} and {html_path}")
    return 0


if __name__ == "__main__":
    main()
