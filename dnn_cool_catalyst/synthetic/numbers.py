"""The numbers story: which integers are interesting, and what we then learn about them.

``is_interesting`` gates a nested ``numerical_flow`` of ``is_even``, then ``predict_positive`` (given even),
then ``multiple_three`` (given positive). A fraction of every label column is left unannotated (NaN).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn


def numbers_frame(n: int = 2000, missing: float = 0.1, seed: int = 0, high: int = 1000) -> pd.DataFrame:
    """``n`` random integers in ``[0, high)`` with their labels; ``missing`` of each label column is NaN."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, high, size=n)
    df = pd.DataFrame({
        "number": x.astype(np.float32),
        "is_interesting": (x % 5 != 0).astype(float),
        "is_even": (x % 2 == 0).astype(float),
        "predict_positive": (x >= high // 2).astype(float),
        "multiple_three": (x % 3 == 0).astype(float),
    })
    for col in df.columns[1:]:
        df.loc[rng.random(n) < missing, col] = np.nan
    return df


def define_flows(project):
    """Register the two flows of the story on a :class:`~dnn_cool_catalyst.project.Project`."""

    @project.add_flow
    def numerical_flow(flow, x, out):
        out += flow.is_even(x.features)
        out += flow.predict_positive(x.features) | out.is_even
        out += flow.multiple_three(x.features) | out.predict_positive
        return out

    @project.add_flow
    def is_interesting(flow, x, out):
        out += flow.is_interesting(x.features)
        out += flow.numerical_flow(x) | out.is_interesting
        return out

    return project.get_full_flow()


class NumbersModel(nn.Module):
    """Periodic encodings of the number (periods 2..6 and the scale) -> an MLP trunk -> the flow's heads."""

    def __init__(self, flow_module: nn.Module, high: int = 1000, hidden: int = 64):
        super().__init__()
        # A buffer, so that .to(device) moves it with the model; not persistent: checkpoints stay weights only.
        self.register_buffer("periods", torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0]), persistent=False)
        self.high = high
        self.trunk = nn.Sequential(nn.Linear(2 * len(self.periods) + 1, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.flow = flow_module

    def forward(self, inputs):
        x = inputs["number"].float()[:, None]
        angles = 2 * math.pi * x / self.periods
        encoded = torch.cat([angles.sin(), angles.cos(), x / self.high], dim=1)
        return self.flow({"features": self.trunk(encoded)})


def numbers_model(flow, high: int = 1000, hidden: int = 64) -> NumbersModel:
    return NumbersModel(flow.torch(), high=high, hidden=hidden)
