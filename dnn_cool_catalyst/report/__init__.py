"""Comparing experiments: ``compare(DIR)`` as a DataFrame, ``dnn-cool-report DIR`` as report.csv + report.html.

See README, "Comparing experiments".
"""
from .compare import Comparison, ReportError, collect, compare, smaller_is_better
from .html import write_report

__all__ = ["Comparison", "ReportError", "collect", "compare", "smaller_is_better", "write_report"]
