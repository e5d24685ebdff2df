"""``Project``: a DataFrame, its converters, and the flows defined over its columns."""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Union

import pandas as pd

from .flow.flow import TaskFlow
from .graph.tracing import FlowDefinitionError, trace
from .signatures import forwards_kwargs

CONVERTER_STATE = "converters.json"


class Project:
    """Turns ``df`` into tasks (one per output column) and registers flows over them.

    Fitted converter state is saved to ``<project_dir>/converters.json`` and reused on the next run, so labels
    map to the same ids even when a later DataFrame holds fewer classes.

    Example:
        >>> import pandas as pd, tempfile
        >>> df = pd.DataFrame({"x": [0.1, 0.5, 0.9], "is_big": [0, 1, float("nan")]})
        >>> project = Project(df, input_col="x", output_col=["is_big"], project_dir=tempfile.mkdtemp())
        >>> @project.add_flow
        ... def numbers(flow, x, out):
        ...     out += flow.is_big(x.x)
        ...     return out
        >>> item = project.get_full_flow().get_dataset()[2]
        >>> bool(item["available"]["is_big"])
        False
    """

    def __init__(self, df: pd.DataFrame, input_col: Union[str, Sequence[str]],
                 output_col: Union[str, Sequence[str]], converters=None, project_dir: str = "."):
        from .data import Converters

        self.df = df
        self.input_cols = [input_col] if isinstance(input_col, str) else list(input_col)
        self.output_cols = [output_col] if isinstance(output_col, str) else list(output_col)
        self.converters = converters if converters is not None else Converters()
        self.project_dir = os.fspath(project_dir)
        self.data = self.converters.build(df, input_cols=self.input_cols, output_cols=self.output_cols,
                                          state_path=os.path.join(self.project_dir, CONVERTER_STATE))
        self.tasks = dict(self.data.tasks)
        self.flows: Dict[str, TaskFlow] = {}
        self._last_flow: Optional[str] = None

    def add_flow(self, fn: Optional[Callable] = None, *, name: Optional[str] = None):
        """Register a flow function ``fn(flow, x, out)``; usable as ``@add_flow`` or ``@add_flow(name=...)``.
        Returns the traced :class:`TaskFlow`."""
        if fn is None:
            return lambda f: self.add_flow(f, name=name)
        name = name or fn.__name__
        if name in self.flows:
            raise FlowDefinitionError(f"a flow named '{name}' is already added to this project; flow names must "
                                      f"be unique")
        graphs = {k: f.graph.graph for k, f in self.flows.items()}
        flow = TaskFlow(trace(fn, name, self.tasks, graphs), project=self)
        self.flows[name] = flow
        self._last_flow = name
        return flow

    def get_flow(self, name: str) -> TaskFlow:
        if name not in self.flows:
            raise KeyError(f"no flow named '{name}'; flows: {sorted(self.flows)}")
        return self.flows[name]

    def get_full_flow(self) -> TaskFlow:
        """The flow added last (the one that nests the others)."""
        if self._last_flow is None:
            raise FlowDefinitionError("no flow has been added to this project yet; use @project.add_flow")
        return self.flows[self._last_flow]

    @forwards_kwargs("dnn_cool_catalyst.runners.DnnCoolSupervisedRunner", exclude=("flow", "run_dir", "dataset"))
    def runner(self, model, runner_name: str = "default", flow: Optional[TaskFlow] = None, **kwargs):
        """A :class:`~dnn_cool_catalyst.runners.DnnCoolSupervisedRunner` for ``model`` and the full flow, with its
        run directory at ``<project_dir>/<runner_name>``.

        Args:
            model: an nn.Module taking a batch's ``"inputs"`` dict and returning the flow module's output (e.g. a
                backbone feeding ``flow.torch()``).
            runner_name: one directory name inside ``project_dir``; reusing it continues that run directory
                (a directory of another flow is refused).
            flow: the flow to train (default: the full flow, the one added last).
            **kwargs: the runner's own arguments -- ``batch_size`` (64, the global batch), ``num_workers`` (None:
                automatic), ``seed`` (42: splits and shuffling), ``split_fractions`` ((0.7, 0.15, 0.15)),
                ``stratify`` (a binary/category task name), ``resplit`` (False), ``engine`` (a Catalyst engine for
                DataParallel/DDP/mixed precision), ``loss_weights`` (None, a dict by task, or ``"uncertainty"``),
                ``balance_dataparallel_memory`` (False), ``device_data`` (``"auto"``). An unknown name is a
                ``TypeError``; see :class:`~dnn_cool_catalyst.runners.DnnCoolSupervisedRunner`.

        Example:
            >>> import tempfile
            >>> from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
            >>> project = Project(numbers_frame(100, seed=0), "number", ["is_interesting", "is_even",
            ...                   "predict_positive", "multiple_three"], project_dir=tempfile.mkdtemp())
            >>> runner = project.runner(numbers_model(define_flows(project)), "exp1", batch_size=32, seed=1)
            >>> os.path.basename(runner.run_dir), {k: len(v) for k, v in runner.splits.items()}
            ('exp1', {'train': 70, 'valid': 15, 'test': 15})
        """
        from .runners import DnnCoolSupervisedRunner

        check_runner_name(runner_name)
        flow = flow or self.get_full_flow()
        runner = DnnCoolSupervisedRunner(model=model, flow=flow, run_dir=os.path.join(self.project_dir, runner_name),
                                         dataset=self.get_dataset(flow), **kwargs)
        # The columns' converters and label counts go into the run's run_config.json (run/run_config.py).
        runner.converter_summary = self.describe().to_dict("records")
        return runner

    def describe(self) -> pd.DataFrame:
        """One row per input and output column, so that no guessed type goes unnoticed.

        Columns: ``column``, ``role`` (input/output), ``type`` (converter type), ``type_source`` (``given`` in
        ``type_mapping``, ``saved`` in converters.json, or ``guessed``), ``task`` (task type of an output),
        ``labels`` (non-missing cells), ``missing`` (NaN cells), ``classes`` (number of classes, or vocabulary
        size of a categorical input), ``positive`` (positive class of a binary output) and ``missing_inputs``
        (how a numeric input treats NaN).

        Example:
            >>> import pandas as pd, tempfile
            >>> df = pd.DataFrame({"island": ["Dream", "Biscoe", "Dream"], "sex": ["male", None, "female"]})
            >>> table = Project(df, input_col="island", output_col="sex", project_dir=tempfile.mkdtemp()).describe()
            >>> print(table.drop(columns="missing_inputs").to_string(index=False))
            column   role        type type_source   task  labels  missing  classes positive
            island  input categorical     guessed   None       3        0        2     None
               sex output      binary     guessed binary       2        1        2     male
        """
        rows = []
        for role, columns in (("input", self.input_cols), ("output", self.output_cols)):
            for column in columns:
                converter = self.data.converters.get(column)
                task = self.tasks.get(column) if role == "output" else None
                missing = int(self.df[column].isna().sum())
                classes = None
                if getattr(converter, "vocab", None) is not None:
                    classes = len(converter.vocab)
                elif getattr(task, "n_classes", None) is not None:
                    classes = int(task.n_classes)
                elif getattr(converter, "labels", None) is not None:
                    classes = 2
                rows.append({"column": column, "role": role, "type": self.data.types[column],
                             "type_source": self.data.type_sources.get(column),
                             "task": task.type_name if task is not None else None,
                             "labels": len(self.df) - missing, "missing": missing, "classes": classes,
                             "positive": getattr(converter, "positive", None) if role == "output" else None,
                             "missing_inputs": getattr(converter, "mode", None) if role == "input" else None})
        table = pd.DataFrame(rows).astype({"classes": "Int64"})
        # Empty cells read None (not NaN) so that a printed table says "does not apply", not "missing number".
        text_columns = ["type_source", "task", "positive", "missing_inputs"]
        table[text_columns] = table[text_columns].astype(object).where(table[text_columns].notna(), None)
        return table

    def get_dataset(self, flow: Optional[TaskFlow] = None):
        """A torch Dataset over the whole DataFrame with targets for ``flow``'s tasks (default: the full flow)."""
        from .data import FlowDataset

        flow = flow or self.get_full_flow()
        return FlowDataset(self.data, task_names=list(flow.tasks))


def check_runner_name(runner_name) -> str:
    """``runner_name`` names a directory inside ``project_dir``: it must be one safe path component, so that
    nothing is ever written outside the project directory.

    >>> check_runner_name("exp1")
    'exp1'
    >>> check_runner_name("../evil")
    Traceback (most recent call last):
    ...
    dnn_cool_catalyst.errors.RunnerError: runner_name must be a single directory name inside project_dir (not empty, no '/' or '\\', not '.' or '..'), got '../evil'
    """
    from .runners import RunnerError

    if (not isinstance(runner_name, str) or runner_name.strip() in ("", ".", "..") or "/" in runner_name
            or "\\" in runner_name or "\0" in runner_name or os.path.isabs(runner_name)
            or os.path.basename(runner_name) != runner_name):
        raise RunnerError(f"runner_name must be a single directory name inside project_dir (not empty, no '/' or "
                          f"'\\', not '.' or '..'), got {runner_name!r}")
    return runner_name
