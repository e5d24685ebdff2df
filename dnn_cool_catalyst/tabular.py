"""Tabular data without a training script: a CSV, its column types, and flows written in a small Python module.

The pieces a config (``configs/tabular.yml``) names:

- :func:`tabular_project` reads the CSV, applies the column types, and registers the flow functions of a module;
- :func:`tabular_model` is an MLP over every input column whose last hidden layer is ``x.features`` for the flows:
  numeric/array columns are standardised with the mean and spread of the run's training split, categorical
  columns (strings, pandas ``category``) are one-hot encoded when their vocabulary is small (at most
  ``ONE_HOT_MAX_CODES`` codes, unknown and missing included) and embedded otherwise; ``kind="tabm"`` gives a TabM trunk of ``k`` members instead
  (:mod:`dnn_cool_catalyst.tabular_tabm`, the ``tabm`` extra).

Example:
    >>> import os, tempfile
    >>> import pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"age": [20., 35, 50, 65], "retired": [0, 0, 0, 1]}).to_csv(f"{folder}/people.csv", index=False)
    >>> with open(f"{folder}/flows.py", "w") as f:
    ...     _ = f.write("def people(flow, x, out):\\n    out += flow.retired(x.features)\\n    return out\\n")
    >>> project = tabular_project(f"{folder}/people.csv", input_cols=["age"], output_cols=["retired"],
    ...                           flows=f"{folder}/flows.py", project_dir=folder)
    >>> model = tabular_model(project)
    >>> batch = next(iter(torch.utils.data.DataLoader(project.get_dataset(), batch_size=4)))
    >>> model(batch["inputs"])["logits"]["retired"].shape
    torch.Size([4])
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import pandas as pd
import torch
from torch import nn

from .data.columns import StoredColumn
from .errors import ConverterError
from .project import Project

FLOW_PARAMETERS = ["flow", "x", "out"]


def load_flow_functions(source: str, names: Optional[Sequence[str]] = None) -> List[Callable]:
    """The flow functions ``f(flow, x, out)`` of a module, given as a ``.py`` path or a dotted module name.

    Order: ``names`` if given, else the module's ``FLOWS`` list if it has one, else every function with the
    parameters ``(flow, x, out)`` in source order, so nested flows (defined first) are registered first.
    """
    module = _import_module(source)
    if names is not None:
        missing = [n for n in names if not callable(getattr(module, n, None))]
        if missing:
            raise ValueError(f"flow module {source!r} has no flow function(s) {missing}")
        return [getattr(module, n) for n in names]
    if hasattr(module, "FLOWS"):
        return list(module.FLOWS)
    found = [fn for _, fn in inspect.getmembers(module, inspect.isfunction)
             if fn.__module__ == module.__name__ and list(inspect.signature(fn).parameters) == FLOW_PARAMETERS]
    if not found:
        raise ValueError(f"flow module {source!r} defines no function with parameters (flow, x, out)")
    return sorted(found, key=lambda fn: fn.__code__.co_firstlineno)


def _import_module(source: str):
    if source.endswith(".py"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"flow module file {source!r} does not exist (relative paths are taken from "
                                    f"{os.getcwd()})")
        name = "dnn_cool_user_flows_" + os.path.splitext(os.path.basename(source))[0]
        spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as e:
        raise ValueError(f"flow module {source!r} is neither a .py file nor an importable module ({e})") from None


def tabular_project(csv: str, input_cols: Union[str, Sequence[str]], output_cols: Union[str, Sequence[str]],
                    flows: str, project_dir: str = "./tabular_project",
                    column_types: Optional[Mapping[str, str]] = None, flow_names: Optional[Sequence[str]] = None,
                    read_csv_kwargs: Optional[Mapping] = None, missing: str = "error",
                    positive_class: Optional[Mapping[str, object]] = None) -> Project:
    """A :class:`Project` over a CSV file with the flows of the module ``flows`` registered (the last one is the
    full flow). ``column_types`` maps column → converter type name (``binary``, ``category``, ``multilabel``,
    ``continuous``, ``regression``, ``numeric``, ``categorical``...); unmapped columns are guessed.
    ``missing="indicator"`` imputes NaN in numeric inputs with the median and adds a was-missing column
    (default ``"error"``); ``positive_class`` maps binary output columns to their positive label."""
    from .data import Converters

    if not os.path.isfile(csv):
        raise FileNotFoundError(f"CSV file {csv!r} does not exist (relative paths are taken from {os.getcwd()})")
    try:
        df = pd.read_csv(csv, **dict(read_csv_kwargs or {}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read CSV file {csv!r}: {e}") from None
    input_cols = [input_cols] if isinstance(input_cols, str) else list(input_cols)
    output_cols = [output_cols] if isinstance(output_cols, str) else list(output_cols)
    _check_columns_exist(df, csv, {"input_cols": input_cols, "output_cols": output_cols})
    column_types = dict(column_types or {})
    stray = [c for c in column_types if c not in input_cols + output_cols]
    if stray:
        raise ValueError(f"column_types names column(s) {stray} that are neither input_cols nor output_cols of "
                         f"{csv!r}")
    converters = Converters(missing_inputs=missing)
    converters.type.type_mapping.update(column_types)
    converters.positive_class.update(dict(positive_class or {}))
    project = Project(df, input_col=input_cols, output_col=output_cols, converters=converters,
                      project_dir=project_dir)
    for fn in load_flow_functions(flows, flow_names):
        project.add_flow(fn)
    return project


def _check_columns_exist(df: pd.DataFrame, csv: str, named: Mapping[str, Sequence[str]]) -> None:
    """Name a column that is not in the CSV (with the closest existing one) before anything else is checked."""
    from .errors import ConverterError
    from .signatures import closest

    for argument, columns in named.items():
        for column in columns:
            if column not in df.columns:
                suggestion = closest(str(column), [str(c) for c in df.columns])
                hint = f"did you mean {suggestion!r}?" if suggestion else f"its columns: {list(map(str, df.columns))}"
                raise ConverterError(f"column {column!r} is not in CSV file {csv!r} (named in {argument}; {hint})")


#: A categorical input with at most this many codes (vocabulary + unknown + missing) is one-hot encoded.
ONE_HOT_MAX_CODES = 8


def embedding_width(num_codes: int) -> int:
    return min(16, (num_codes + 1) // 2)


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
        mean, std = standardisation(input_table(dataset.data, self.input_cols, positions)[2], self.columns)
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
    ``"periodic"`` (see :mod:`dnn_cool_catalyst.tabular_tabm`; needs ``pip install 'dnn_cool_catalyst[tabm]'``)."""
    if kind == "tabm":
        from .tabular_tabm import tabular_tabm

        return tabular_tabm(project, hidden=hidden, depth=depth, dropout=dropout, k=k, num_embeddings=num_embeddings)
    if kind != "mlp":
        raise ValueError(f"tabular_model: kind must be 'mlp' or 'tabm', got {kind!r}")
    if num_embeddings is not None:
        raise ValueError(f"tabular_model: num_embeddings={num_embeddings!r} needs kind='tabm'")
    columns, categorical, joined = input_table(project.data, project.input_cols)
    mean, std = standardisation(joined, columns)
    return TabularMLP(project.get_full_flow().torch(), columns, mean, std, hidden, depth, dropout,
                      categorical=categorical, input_cols=project.input_cols)


def input_table(converted, input_cols: Sequence[str], rows: Optional[Sequence[int]] = None):
    """``(columns, categorical, numeric)`` of the converted data (``project.data``, a dataset's ``data``):
    numeric/array column -> width, categorical column -> number of codes, and the numeric columns side by side as
    one float tensor ``(N, width)`` (of the positions ``rows``, all rows by default). Raises naming a column of
    another type (text, images)."""
    columns, categorical, values = {}, {}, []
    for column in input_cols:
        data = converted.inputs[column]
        num_codes = getattr(converted.converters.get(column), "num_codes", None)
        if isinstance(data, StoredColumn):  # e.g. a uint8 array column, kept as bytes
            data = data.decode(data.values)
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"tabular_model: input column '{column}' has type {converted.types[column]!r}; "
                             f"the MLP takes numeric, array or categorical columns only")
        if num_codes is not None:
            categorical[column] = int(num_codes)
            continue
        flat = data.float().reshape(len(data), -1)
        columns[column] = flat.shape[1]
        values.append(flat if rows is None else flat[torch.as_tensor(list(rows), dtype=torch.long)])
    n = len(next(iter(converted.inputs.values()))) if rows is None else len(rows)
    return columns, categorical, torch.cat(values, dim=1) if values else torch.zeros(n, 0)


def standardisation(values: torch.Tensor, columns: Optional[Dict[str, int]] = None):
    """``(mean, std)`` per column of ``values`` ``(N, width)``; a constant column gets std 1 (no division by 0).
    ``columns`` (column -> width, in the order of ``values``) names a column whose values overflow float32."""
    # std of zero columns (categorical inputs only) warns in torch; there is nothing to standardise then.
    std = values.std(dim=0, unbiased=False) if values.shape[1] else torch.ones(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    mean = values.mean(dim=0)
    _check_standardisable(columns or {"(numeric inputs)": values.shape[1]}, values, mean, std)
    return mean, std


def _check_standardisable(columns: Dict[str, int], joined: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """Values finite in float32 can still overflow its mean, spread or ``(x - mean) / std`` (1e38-scale inputs):
    refuse here, naming the column, instead of a task's logits turning inf later."""
    finite = torch.isfinite(mean) & torch.isfinite(std) & torch.isfinite((joined - mean) / std).all(dim=0)
    if bool(finite.all()):
        return
    start = 0
    for column, width in columns.items():
        if not bool(finite[start:start + width].all()):
            largest = float(joined[:, start:start + width].abs().max())
            raise ConverterError(f"input column '{column}': values up to {largest:.3g} overflow float32 when "
                                 f"standardised (mean, spread or (x - mean) / std is infinite); rescale the "
                                 f"column (e.g. divide it by a power of ten) before building the project")
        start += width
