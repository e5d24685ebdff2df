"""Threshold tuning for binary decisions: the exact search (thresholds.py), the noise guard (guard.py) and where
inside the best interval the threshold goes (interval.py). The search's names are re-exported here."""
from .thresholds import METRICS, ThresholdResult, best_threshold, best_thresholds, metric_curve, sweep

__all__ = ["METRICS", "ThresholdResult", "best_threshold", "best_thresholds", "metric_curve", "sweep"]
