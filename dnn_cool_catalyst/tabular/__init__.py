"""Tabular data without a training script: a CSV, its column types, and flows written in a small Python module.

The pieces a config (``configs/tabular.yml``) names:

- :func:`tabular_project` reads the CSV, applies the column types, and registers the flow functions of a module;
- :func:`tabular_model` is an MLP over every input column whose last hidden layer is ``x.features`` for the flows:
  numeric/array columns are standardised with the mean and spread of the run's training split, categorical
  columns (strings, pandas ``category``) are one-hot encoded when their vocabulary is small (at most
  ``ONE_HOT_MAX_CODES`` codes, unknown and missing included) and embedded otherwise; ``kind="tabm"`` gives a TabM
  trunk of ``k`` members instead (:mod:`dnn_cool_catalyst.tabular.tabm`, the ``tabm`` extra).

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
import torch  # noqa: F401  (the example above)

from .csv_project import load_flow_functions, tabular_project
from .inputs import ONE_HOT_MAX_CODES, embedding_width, input_table, standardisation
from .mlp import TabularMLP, tabular_model

__all__ = ["tabular_project", "load_flow_functions", "tabular_model", "TabularMLP", "input_table", "standardisation",
           "embedding_width", "ONE_HOT_MAX_CODES"]
