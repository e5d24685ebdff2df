"""TabM for tabular projects: one MLP that imitates ``k`` members with BatchEnsemble adapters (Gorishniy,
Kotelnikov & Babenko, ICLR 2025), from the ``tabm`` package, optionally with numeric-feature embeddings from
``rtdl_num_embeddings`` (piecewise-linear or periodic).

The trunk gives features ``(N, k, F)``; the flow heads become one linear head per member and the flow module
averages the members' activations (:mod:`dnn_cool_catalyst.graph.members`), so in eval mode the model's output is
that of any single model: decoding, tuning, ``predict`` and export do not know it has members.

Statistics of the inputs (standardisation, piecewise-linear bins) are fitted on the training split: the runner
calls :meth:`TabularTabM.fit_inputs` with the run's training rows when it is created (until then they are the
whole table's, for a model used without a runner).

Example (needs ``pip install 'dnn_cool_catalyst[tabm]'``):
    >>> import pandas as pd
    >>> from dnn_cool_catalyst import Converters, Project
    >>> df = pd.DataFrame({"age": [20., 35, 50, 65] * 4, "retired": [0, 0, 0, 1] * 4})
    >>> project = Project(df, input_col="age", output_col="retired", converters=Converters(),
    ...                   project_dir=tempfile.mkdtemp())
    >>> @project.add_flow
    ... def people(flow, x, out):
    ...     out += flow.retired(x.features)
    ...     return out
    >>> model = tabular_tabm(project, hidden=16, k=4, num_embeddings="piecewise_linear").train()
    >>> batch = project.get_dataset().batch([0, 1, 2])
    >>> out = model(batch["inputs"])
    >>> out["logits"]["retired"].shape, out["member_logits"]["retired"].shape
    (torch.Size([3]), torch.Size([3, 4]))
    >>> sorted(model.eval()(batch["inputs"]))  # eval: the output of a single model
    ['logits', 'masks']
"""
from __future__ import annotations

import contextlib
import tempfile  # noqa: F401  (the example above)
import warnings
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..project import Project
from .inputs import input_table, standardisation

NUM_EMBEDDINGS = (None, "piecewise_linear", "periodic")
#: Bins per numeric feature and embedding width of the piecewise-linear embeddings (the TabM paper's defaults).
PLE_BINS, PLE_WIDTH = 48, 16
#: Embedding width of the periodic embeddings ("lite" form, as in the TabM paper).
PERIODIC_WIDTH = 16


def _import_tabm():
    try:
        import rtdl_num_embeddings
        import tabm
    except ImportError as e:
        raise ImportError(f"tabular_model(kind='tabm') needs the packages tabm and rtdl_num_embeddings ({e}): "
                          f"pip install 'dnn_cool_catalyst[tabm]'") from None
    return tabm, rtdl_num_embeddings


def piecewise_linear_bins(values: torch.Tensor, n_bins: int = PLE_BINS):
    """Quantile bin edges per column of ``values`` ``(N, width)`` (fewer where a column has fewer distinct values);
    a constant column gets two edges around its value (``compute_bins`` refuses it)."""
    _, rtdl = _import_tabm()
    n_bins = max(1, min(n_bins, len(values) - 1))
    constant = values.max(dim=0).values == values.min(dim=0).values
    spread = values + torch.where(constant, torch.linspace(-1, 1, len(values))[:, None], 0.0)
    with one_bin_is_fine():
        return rtdl.compute_bins(spread, n_bins=n_bins)


@contextlib.contextmanager
def one_bin_is_fine():
    """rtdl_num_embeddings warns about a feature with one bin: a 0/1 column (e.g. a was-missing indicator) has
    one, and nothing is wrong with it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has just two bin edges")
        yield


class TabularTabM(nn.Module):
    """Standardise the numeric input columns (optionally embed them), one-hot the categorical ones, then a TabM
    backbone of ``depth`` blocks of ``hidden`` units and ``k`` members; one head per member and task."""

    #: train(task_selection="auto") keeps each task's best epoch for it: a copy per epoch is cheap here.
    select_per_task = True

    def __init__(self, project: Project, hidden: int = 64, depth: int = 2, dropout: float = 0.0, k: int = 32,
                 num_embeddings: Optional[str] = None):
        super().__init__()
        if num_embeddings not in NUM_EMBEDDINGS:
            raise ValueError(f"tabular_model: num_embeddings must be one of {list(NUM_EMBEDDINGS)}, got "
                             f"{num_embeddings!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"tabular_model: k (the number of TabM members) must be a positive int, got {k!r}")
        tabm, rtdl = _import_tabm()
        self.input_cols, self.num_embeddings, self.k = list(project.input_cols), num_embeddings, k
        self.columns: Dict[str, int]
        self.columns, self.categorical, numeric = input_table(project.data, self.input_cols)
        self.register_buffer("mean", torch.zeros(numeric.shape[1]))
        self.register_buffer("std", torch.ones(numeric.shape[1]))
        width = numeric.shape[1]
        embeddings = None
        if num_embeddings == "periodic" and width:
            embeddings = rtdl.PeriodicEmbeddings(width, PERIODIC_WIDTH, lite=True)
        elif num_embeddings == "piecewise_linear" and width:
            embeddings = self._piecewise_linear(numeric)
        self.tabm = tabm.TabM.make(n_num_features=width, cat_cardinalities=list(self.categorical.values()),
                                   d_out=None, num_embeddings=embeddings, k=k, n_blocks=depth, d_block=hidden,
                                   dropout=dropout)
        self.flow = project.get_full_flow().torch(members=True)
        with torch.no_grad():  # lazy heads get their width, then become one head per member
            self.flow.eval()({"features": torch.zeros(1, k, hidden)})
        tabm.ensemble_linear_layers_(self.flow.heads, k=k)
        self._fit(numeric)

    def _piecewise_linear(self, numeric: torch.Tensor) -> nn.Module:
        _, rtdl = _import_tabm()
        mean, std = standardisation(numeric, self.columns)
        standardised = (numeric - mean) / std
        bins = piecewise_linear_bins(standardised)
        with one_bin_is_fine():
            return rtdl.PiecewiseLinearEmbeddings(bins, PLE_WIDTH, activation=False, version="B")

    def _fit(self, numeric: torch.Tensor) -> None:
        mean, std = standardisation(numeric, self.columns)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def fit_inputs(self, dataset, positions: Sequence[int]) -> None:
        """Fit the input statistics on the dataset positions of the training split (the runner calls it when a
        run is created, before any optimizer exists): standardisation, and the piecewise-linear bins, whose
        embedding is built anew from them (its learned weights start over)."""
        numeric = input_table(dataset.data, self.input_cols, positions)[2]
        if len(numeric) == 0:
            raise ValueError("tabular_model(kind='tabm'): the training split is empty, nothing to fit inputs on")
        self._fit(numeric)
        if self.num_embeddings == "piecewise_linear" and numeric.shape[1]:
            self.tabm.num_module = self._piecewise_linear(numeric).to(self.mean.device)

    def forward(self, inputs):
        x_num = x_cat = None
        if self.columns:
            x = torch.cat([inputs[c].float().reshape(-1, width) for c, width in self.columns.items()], dim=1)
            x_num = (x - self.mean) / self.std
        if self.categorical:
            x_cat = torch.stack([inputs[c].long().reshape(-1) for c in self.categorical], dim=1)
        return self.flow({"features": self.trunk(x_num, x_cat)})

    def trunk(self, x_num: Optional[torch.Tensor], x_cat: Optional[torch.Tensor]) -> torch.Tensor:
        """``TabM``'s forward for one representation per row, from its own parts: ``TabM.forward`` takes the
        batch size with ``len()``, which ``torch.export`` fixes to the example's, so the export could not take
        another batch size."""
        parts = []
        if x_num is not None:
            embed = self.tabm.num_module
            parts.append((x_num if embed is None else embed(x_num)).flatten(1))
        if x_cat is not None:
            parts.append(self.tabm.cat_module(x_cat))
        return self.tabm.backbone(self.tabm.ensemble_view(torch.cat(parts, dim=1)))


def tabular_tabm(project: Project, hidden: int = 64, depth: int = 2, dropout: float = 0.0, k: int = 32,
                 num_embeddings: Optional[str] = None) -> TabularTabM:
    """A :class:`TabularTabM` for ``project``'s full flow and input columns."""
    return TabularTabM(project, hidden, depth, dropout, k, num_embeddings)
