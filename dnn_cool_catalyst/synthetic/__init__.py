"""Synthetic datasets for demos and tests."""
from .numbers import numbers_frame, numbers_model

__all__ = ["numbers_frame", "numbers_model"]
