"""A :class:`~dnn_cool_catalyst.project.Project` over a CSV file, with the flows of a small Python module."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from typing import Callable, List, Mapping, Optional, Sequence, Union

import pandas as pd

from ..data import Converters
from ..errors import ConverterError
from ..project import Project
from ..signatures import closest

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
    for argument, columns in named.items():
        for column in columns:
            if column not in df.columns:
                suggestion = closest(str(column), [str(c) for c in df.columns])
                hint = f"did you mean {suggestion!r}?" if suggestion else f"its columns: {list(map(str, df.columns))}"
                raise ConverterError(f"column {column!r} is not in CSV file {csv!r} (named in {argument}; {hint})")
