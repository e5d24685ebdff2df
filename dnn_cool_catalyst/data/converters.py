"""The ``Converters`` facade: a DataFrame with NaN -> input tensors, targets, availability masks and tasks.

Three registries, each a plain dict the user can update:

- ``converters.type``: column -> type name (``type_mapping``), else the heuristic :func:`guess_type`;
- ``converters.values``: type name -> zero-arg converter factory (``type_mapping``), column -> factory
  (``col_mapping``, wins);
- ``converters.task``: type name -> ``factory(name, converter) -> Task`` (``type_mapping``), column -> factory
  (``col_mapping``, wins).

The built-in converters come from ``output_types.py`` (outputs, with their tasks) and ``inputs.py`` (inputs).

Fitted state (class names, bounds, vocabularies, token counts, per-column types) can be kept in a JSON file so a
later run maps labels identically: pass ``state_path``; an existing file is loaded instead of refitting (its format
and checks: ``state_file.py``).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [0.5, 1.5, 2.0], "door_open": [1, None, 0], "shirt": ["red", "blue", "green"]})
    >>> data = Converters().build(df, input_cols=["x"], output_cols=["door_open", "shirt"])
    >>> data.types
    {'x': 'numeric', 'door_open': 'binary', 'shirt': 'category'}
    >>> data.targets["shirt"].tolist(), data.available["shirt"].tolist()
    ([2, 0, 1], [True, True, True])
    >>> data.tasks["shirt"].class_names
    ['blue', 'green', 'red']
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from ..atomic import atomic_write_json
from ..errors import ConverterError
from ..tasks import Task, TaskError
from .cells import plain_value
from .finite import require_finite_float32
from .inputs import INPUT_CONVERTERS, check_missing_mode
from .output_types import DEFAULT_TASKS, OUTPUT_CONVERTERS
from .state_file import check_round_trip, load_state, stored_entry
from .type_guess import TypeGuesser

#: Output types a guess for an input column maps to the "numeric" input (inputs are never tasks).
_NUMERIC_GUESSES = ("binary", "category", "continuous", "regression")


class ValueConverters:
    """Type name / column -> zero-arg factory of a value converter."""

    def __init__(self):
        self.type_mapping: Dict[str, Callable] = {**OUTPUT_CONVERTERS, **INPUT_CONVERTERS}
        self.col_mapping: Dict[str, Callable] = {}

    def create(self, column: str, type_name: str):
        factory = self.col_mapping.get(column) or self.type_mapping.get(type_name)
        if factory is None:
            raise ConverterError(f"column '{column}': no value converter for type {type_name!r}; known types are "
                                 f"{sorted(self.type_mapping)}")
        return factory()


class TaskConverters:
    """Type name / column -> ``factory(name, converter) -> Task``."""

    def __init__(self):
        self.type_mapping: Dict[str, Callable] = dict(DEFAULT_TASKS)
        self.col_mapping: Dict[str, Callable] = {}

    def create(self, column: str, type_name: str, converter) -> Task:
        factory = self.col_mapping.get(column) or self.type_mapping.get(type_name)
        if factory is None:
            raise ConverterError(f"output column '{column}': no task factory for type {type_name!r}; set "
                                 f"converters.task.type_mapping[{type_name!r}] or "
                                 f"converters.task.col_mapping[{column!r}]")
        try:
            return factory(column, converter)
        except TaskError as e:
            raise ConverterError(f"output column '{column}': cannot build its task: {e}") from e


@dataclass
class ConvertedData:
    """What :meth:`Converters.build` returns; ``len(data)`` is the number of rows.

    ``row_ids`` is the DataFrame's own index (a ``pandas.Index``, immutable, so sharing it is safe): a list of
    10^6 labels would hold 36 MB of Python ints where a ``RangeIndex`` holds none. Iterating it gives Python
    scalars, ``row_ids[i]`` a numpy one (:meth:`FlowDataset.row_id` gives the Python one).
    """

    inputs: Dict[str, object]
    targets: Dict[str, torch.Tensor]
    available: Dict[str, torch.Tensor]
    types: Dict[str, str]
    tasks: Dict[str, Task]
    row_ids: pd.Index
    converters: Dict[str, object] = field(default_factory=dict)
    #: column -> "given" (type_mapping), "saved" (converters.json) or "guessed"
    type_sources: Dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_ids)


class Converters:
    """See the module docstring. ``build`` is the one entry point.

    ``missing_inputs``: what a numeric input column does with NaN unless its converter says otherwise:
    ``"error"`` (default) or ``"indicator"`` (median fill + a was-missing column, see :class:`NumericInput`).
    ``positive_class``: binary output column -> its positive label (e.g. ``{"sex": "female"}``); see
    :class:`BinaryConverter` for the default.
    """

    def __init__(self, missing_inputs: str = "error"):
        self.type = TypeGuesser()
        self.values = ValueConverters()
        self.task = TaskConverters()
        self.missing_inputs = check_missing_mode(missing_inputs, "Converters(missing_inputs=...)")
        self.positive_class: Dict[str, object] = {}

    # -- public ----------------------------------------------------------------------------------------
    def build(self, df: pd.DataFrame, input_cols: Union[str, Sequence[str]] = (),
              output_cols: Union[str, Sequence[str]] = (), state_path: Optional[str] = None) -> ConvertedData:
        input_cols, output_cols = _as_list(input_cols, "input_cols"), _as_list(output_cols, "output_cols")
        self._validate_frame(df, input_cols, output_cols)
        state = load_state(state_path)
        columns_state = state["columns"]
        dirty = state_path is not None and not os.path.exists(state_path)

        self._check_positive_class(output_cols)
        types: Dict[str, str] = {}
        sources: Dict[str, str] = {}
        converters: Dict[str, object] = {}
        inputs: Dict[str, object] = {}
        for column in input_cols:
            series = df[column]
            refuse_dates(series, column, "input")
            stored = stored_entry(columns_state, column, "input")
            type_name, sources[column] = self._resolve_type(series, column, "input", stored)
            converter = self._create(column, type_name, "input")
            if stored is not None and stored.get("type") == type_name and stored.get("state"):
                try:
                    converter.load_state_dict(stored["state"])
                except (ConverterError, KeyError, TypeError, ValueError, AttributeError) as e:
                    raise ConverterError(f"input column '{column}': bad state in {state_path!r}: {e}; delete that "
                                         f"file to refit") from e
                check_round_trip(converter, stored["state"], column, state_path)
            else:
                # Input state (vocabulary, median) comes from this frame's inputs only, never from labels.
                converter.fit(series, column)
                fitted = converter.state_dict()
                if stored is None or stored.get("type") != type_name or fitted != stored.get("state", {}):
                    columns_state[column] = {"role": "input", "type": type_name, "state": fitted}
                    dirty = True
            inputs[column] = converter.build_column(series, column)
            if len(inputs[column]) != len(df):
                raise ConverterError(f"input column '{column}': converter returned {len(inputs[column])} rows for "
                                     f"{len(df)}")
            require_finite_float32(inputs[column], series, column, "input")
            types[column], converters[column] = type_name, converter

        targets: Dict[str, torch.Tensor] = {}
        available: Dict[str, torch.Tensor] = {}
        tasks: Dict[str, Task] = {}
        for column in output_cols:
            series = df[column]
            if not series.notna().any():
                raise ConverterError(f"output column '{column}' has no labels (all values are NaN)")
            refuse_dates(series, column, "output")
            stored = stored_entry(columns_state, column, "output")
            type_name, sources[column] = self._resolve_type(series, column, "output", stored)
            converter = self._create(column, type_name, "output")
            if stored is not None:
                try:
                    converter.load_state_dict(stored.get("state", {}))
                except (ConverterError, KeyError, TypeError, ValueError) as e:
                    raise ConverterError(f"output column '{column}': bad state in {state_path!r} (field "
                                         f"'columns.{column}.state'): {e}") from e
                check_round_trip(converter, stored.get("state", {}), column, state_path)
            else:
                converter.fit(series, column)
                columns_state[column] = {"role": "output", "type": type_name, "state": converter.state_dict()}
                dirty = True
            try:
                values, mask = converter.transform(series, column)
            except ConverterError as e:
                if stored is None:
                    raise
                # The usual cause at inference: a label the saved state has never seen. Say where that state lives.
                raise ConverterError(f"{e} (the converter state was fitted earlier and loaded from {state_path!r}; "
                                     f"fix the value or delete that file to refit)") from None
            _check_target(column, values, mask, len(df))
            require_finite_float32(values, series, column, "output", available=mask)
            targets[column], available[column] = values, mask
            types[column], converters[column] = type_name, converter
            tasks[column] = self.task.create(column, type_name, converter)

        if state_path is not None and dirty:
            atomic_write_json(state_path, state)
        return ConvertedData(inputs=inputs, targets=targets, available=available, types=types, tasks=tasks,
                             row_ids=df.index, converters=converters, type_sources=sources)

    # -- validation and type resolution -----------------------------------------------------------------
    def _validate_frame(self, df, input_cols: List[str], output_cols: List[str]) -> None:
        if not isinstance(df, pd.DataFrame):
            raise ConverterError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ConverterError("the DataFrame is empty (0 rows)")
        duplicated = df.columns[df.columns.duplicated()]
        if len(duplicated):
            raise ConverterError(f"the DataFrame has duplicate column names: {sorted(map(str, set(duplicated)))}")
        if df.index.has_duplicates:
            dup = df.index[df.index.duplicated()]
            raise ConverterError(f"the DataFrame index has duplicate labels {list(dup[:5])}; row ids must be unique "
                                 f"(e.g. df.reset_index(drop=True))")
        if not input_cols and not output_cols:
            raise ConverterError("no input or output columns given")
        available = list(df.columns)
        for role, cols in (("input", input_cols), ("output", output_cols)):
            for column in cols:
                if column not in df.columns:
                    raise ConverterError(f"{role} column '{column}' is not in the DataFrame; available columns: "
                                         f"{available}")
            repeated = sorted({c for c in cols if cols.count(c) > 1})
            if repeated:
                raise ConverterError(f"{role} columns listed more than once: {repeated}")
        both = sorted(set(input_cols) & set(output_cols))
        if both:
            raise ConverterError(f"column(s) {both} are both input and output columns")

    def _resolve_type(self, series: pd.Series, column: str, role: str, stored: Optional[dict]):
        """``(type name, source)``; source is "given", "saved" or "guessed"."""
        explicit = self.type.type_mapping.get(column)
        stored_type = stored.get("type") if stored else None
        if explicit is not None and stored_type is not None and explicit != stored_type:
            raise ConverterError(f"column '{column}' is mapped to type {explicit!r} but the saved converter state "
                                 f"has {stored_type!r}; delete its state file to refit")
        if explicit is not None or stored_type is not None:
            type_name = explicit or stored_type
            self._check_known(column, type_name)
            return type_name, ("given" if explicit is not None else "saved")
        guessed = self.type.guess(series, column)
        return self._adapt_guess(series, column, role, guessed), "guessed"

    def _adapt_guess(self, series: pd.Series, column: str, role: str, guessed: str) -> str:
        if role == "input":
            if guessed in _NUMERIC_GUESSES and pd.api.types.is_numeric_dtype(series.dropna().infer_objects().dtype):
                return "numeric"
            if guessed in _NUMERIC_GUESSES + ("multilabel",):
                return "categorical"  # strings (not image paths), pandas category cells, mixed labels
            return guessed
        if guessed == "array":
            # List cells of an output column: strings are label sets, numbers are token ids.
            first = next(iter(series.dropna()))
            has_strings = any(isinstance(v, str) for v in first)
            return "multilabel" if has_strings else "tokens"
        return guessed

    def _check_positive_class(self, output_cols: List[str]) -> None:
        stray = sorted(str(c) for c in self.positive_class if c not in output_cols)
        if stray:
            raise ConverterError(f"converters.positive_class names column(s) {stray} that are not output columns; "
                                 f"output columns: {output_cols}")

    def _check_known(self, column: str, type_name: str) -> None:
        if type_name not in self.values.type_mapping and column not in self.values.col_mapping:
            raise ConverterError(f"column '{column}' has unknown type {type_name!r}; known types are "
                                 f"{sorted(self.values.type_mapping)}")

    def _create(self, column: str, type_name: str, role: str):
        self._check_known(column, type_name)
        converter = self.values.create(column, type_name)
        if role == "input" and getattr(converter, "missing", "unset") is None:
            converter.missing = self.missing_inputs  # the project-wide default for NumericInput(missing=None)
        if role == "output" and column in self.positive_class:
            if not hasattr(converter, "positive_arg"):
                raise ConverterError(f"converters.positive_class names column '{column}', whose type {type_name!r} "
                                     f"has no positive class (only 'binary' columns do)")
            converter.positive_arg = plain_value(self.positive_class[column])
        converter_role = getattr(converter, "role", "output")
        if converter_role != role:
            hint = (" (use 'numeric' for a numeric input, 'categorical' for labels such as strings)"
                    if role == "input" else "")
            raise ConverterError(f"{role} column '{column}' has type {type_name!r}, which is an {converter_role}-only "
                                 f"type{hint}")
        return converter


# -- helpers ---------------------------------------------------------------------------------------------

def _as_list(cols, name: str) -> List[str]:
    if cols is None:
        return []
    if isinstance(cols, str):
        return [cols]
    try:
        return list(cols)
    except TypeError:
        raise ConverterError(f"{name} must be a column name or a list of column names, got {cols!r}") from None



def refuse_dates(series: pd.Series, column: str, role: str) -> None:
    """Dates have no meaning to a network as such; say what to derive instead of failing obscurely later."""
    is_date = ptypes.is_datetime64_any_dtype(series.dtype) or ptypes.is_timedelta64_dtype(series.dtype)
    if not is_date and series.dtype == object:
        is_date = bool(series.map(lambda v: isinstance(v, (datetime.date, datetime.timedelta, np.datetime64,
                                                           np.timedelta64))).any())
    if is_date:
        raise ConverterError(f"{role} column '{column}' holds dates/times, which cannot be used directly; derive "
                             f"numeric columns from it (e.g. df[{column!r}].dt.year, .dt.dayofweek, .dt.month, or "
                             f"elapsed days: (df[{column!r}] - df[{column!r}].min()).dt.days) and use those instead")



def _check_target(column: str, values, mask, n: int) -> None:
    # Custom converters plug in here; a wrong shape would otherwise surface as an obscure collate error.
    if not isinstance(values, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise ConverterError(f"output column '{column}': converter must return (values, available) tensors")
    if mask.dtype != torch.bool or values.shape != mask.shape or values.shape[:1] != (n,):
        raise ConverterError(f"output column '{column}': converter returned values {tuple(values.shape)} and "
                             f"available {tuple(mask.shape)} ({mask.dtype}); expected equal shapes starting with "
                             f"{n} and a bool mask")
