"""The MLP trunk of :func:`tabular_model` (and the choice between it and TabM)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..project import Project
from .inputs import ONE_HOT_MAX_CODES, column_standardisation, embedding_width
from .tabm import tabular_tabm


class TabularMLP(nn.Module):
    """Standardise and concatenate the numeric input columns, one-hot or embed the categorical ones, then
    ``depth`` Linear-ReLU layers of ``hidden`` units whose output is the flow's ``features``.

    ``columns``: numeric column -> width; ``categorical``: categorical column -> number of codes. ``mean`` and
    ``std`` are replaced by the training split's when a runner calls :meth:`fit_inputs`."""

    #: train(task_selection="auto") keeps each task's best epoch for it: a copy per epoch is cheap here.
    select_per_task = True

    def __init__(self, flow_module: nn.Module, columns: Dict[str, int], mean: torch.Tensor, std: torch.Tensor,
                 hidden: int = 64, depth: int = 2, dropout: float = 0.0,
                 categorical: Optional[Dict[str, int]] = None, input_cols: Optional[Sequence[str]] = None):
        super().__init__()
        self.columns = dict(columns)
        self.input_cols = list(input_cols) if input_cols is not None else list(columns) + list(categorical or {})
        self.categorical = dict(categorical or {})
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        # ModuleDict keys cannot hold dots, which column names may: key by position.
        self.embeddings = nn.ModuleDict({
            f"c{i}": nn.Embedding(n, embedding_width(n))
            for i, n in enumerate(self.categorical.values()) if n > ONE_HOT_MAX_CODES})
        width = sum(self.columns.values()) + sum(
            n if n <= ONE_HOT_MAX_CODES else embedding_width(n) for n in self.categorical.values())
        if width == 0:
            raise ValueError("TabularMLP: no input columns")
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.flow = flow_module

    def fit_inputs(self, dataset, positions: Sequence[int]) -> None:
        """Standardise with the statistics of the dataset positions of the training split (the runner calls it
        when a run or fold is created), so validation and test rows never shape the inputs the model sees."""
        if not self.columns or not len(positions):
            return
        _, _, mean, std = column_standardisation(dataset.data, self.input_cols, positions)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, inputs):
        parts = []
        if self.columns:
            x = torch.cat([inputs[c].float().reshape(-1, width) for c, width in self.columns.items()], dim=1)
            parts.append((x - self.mean) / self.std)
        for i, (column, n) in enumerate(self.categorical.items()):
            codes = inputs[column].long().reshape(-1)
            key = f"c{i}"
            parts.append(self.embeddings[key](codes) if key in self.embeddings
                         else nn.functional.one_hot(codes, n).to(self.mean.dtype))
        return self.flow({"features": self.trunk(torch.cat(parts, dim=1))})


def tabular_model(project: Project, hidden: int = 256, depth: int = 2, dropout: float = 0.0, kind: str = "mlp",
                  k: int = 32, num_embeddings: Optional[str] = None) -> nn.Module:
    """A :class:`TabularMLP` for ``project``'s full flow and input columns; ``kind="tabm"`` a TabM trunk of
    ``k`` members with the same width and depth, ``num_embeddings`` ``None``, ``"piecewise_linear"`` or
    ``"periodic"`` (see :mod:`dnn_cool_catalyst.tabular.tabm`; needs ``pip install 'dnn_cool_catalyst[tabm]'``)."""
    if kind == "tabm":
        return tabular_tabm(project, hidden=hidden, depth=depth, dropout=dropout, k=k, num_embeddings=num_embeddings)
    if kind != "mlp":
        raise ValueError(f"tabular_model: kind must be 'mlp' or 'tabm', got {kind!r}")
    if num_embeddings is not None:
        raise ValueError(f"tabular_model: num_embeddings={num_embeddings!r} needs kind='tabm'")
    columns, categorical, mean, std = column_standardisation(project.data, project.input_cols)
    return TabularMLP(project.get_full_flow().torch(), columns, mean, std, hidden, depth, dropout,
                      categorical=categorical, input_cols=project.input_cols)

