"""``dnn-cool-predict``: predictions for the rows of a CSV file from a run made with ``dnn-cool-run``.

    dnn-cool-predict --run-dir DIR --csv new.csv --out predictions.csv [--trust-config] [--checkpoint best] [--proba]

The run directory alone is enough: its ``config.yml`` (saved by ``dnn-cool-run``) rebuilds the project, the model
and the runner, whose ``predict`` does the work (see :func:`.from_run.predict`). The output CSV has one
column per task (empty where the task does not apply), lists of labels as JSON, and the rows of the input CSV
in order; ``--index-col`` names an input column to use as the row index (written first). Relative paths inside
the config are read from the directory the run was started from, paths given here from the current one.

A config is code: rebuilding the run imports and calls what its ``_target_`` keys name and runs the Python files
it names (``tabular_project``'s ``flows``). A ``config.yml`` that names code outside ``dnn_cool_catalyst`` (a
flows file, your own model class, or whatever a run directory received from someone else holds) is refused unless
``--trust-config`` is given; the error lists what it would run.

Exit status 2 with one line on standard error when the run directory, the CSV or its columns are wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Iterator, List, Optional

import pandas as pd

from ..atomic import atomic_write_text
from ..config.saved import load_run_config
from ..config.validate import ConfigError
from ..spreadsheet import safe_cell, spreadsheet_safe
from ..run.claim import refuse_run_file
from ..run.layout import RunDir


def _user_errors():
    from ..config.cli import _user_errors as run_errors

    return run_errors() + (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError)


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def foreign_code(config) -> List[str]:
    """What ``config`` would run from outside this library, sorted: ``_target_`` / ``_meta_factory_`` names of
    other packages (a name without a dot is one of the registry's: Catalyst's and ours) and Python files it names.

    >>> foreign_code({"model": {"_target_": "my_models.Net"}, "runner": {"_target_": "project_runner"},
    ...               "run": [{"_target_": "dnn_cool_catalyst.tabular.tabular_model", "flows": "f.py"},
    ...                       {"_target_": "os.system"}]})
    ['f.py', 'my_models.Net', 'os.system']
    """
    found, pending = set(), [config]
    while pending:  # no recursion: the YAML reader bounded the depth, but a walk needs no stack anyway
        node = pending.pop()
        if isinstance(node, dict):
            for key in ("_target_", "_meta_factory_"):
                name = node.get(key)
                if isinstance(name, str) and "." in name and not name.startswith("dnn_cool_catalyst."):
                    found.add(name)
            pending.extend(node.values())
        elif isinstance(node, str) and node.endswith(".py"):
            found.add(node)
        elif isinstance(node, list):
            pending.extend(node)
    return sorted(found)


def read_new_rows(csv: str, index_col: Optional[str] = None) -> pd.DataFrame:
    """The rows to predict: ``csv`` read with pandas; ``index_col`` (optional) becomes the index."""
    if not os.path.isfile(csv):
        raise ConfigError(f"CSV file {csv!r} does not exist")
    df = pd.read_csv(csv)
    if index_col is not None:
        if index_col not in df.columns:
            raise ConfigError(f"--index-col {index_col!r} is not a column of {csv!r}; its columns are "
                              f"{[str(c) for c in df.columns]}")
        df = df.set_index(index_col)
    return df


def predict_csv(run_dir: str, csv: str, out: str, checkpoint: str = "best", proba: bool = False,
                index_col: Optional[str] = None, batch_size: Optional[int] = None, verbose: bool = False,
                trust_config: bool = False) -> pd.DataFrame:
    """Rebuild the run in ``run_dir`` from its ``config.yml``, predict the rows of ``csv`` and write them to
    ``out`` (atomically); returns the predictions. A config naming code outside this library is refused unless
    ``trust_config`` (see the module docstring). Errors are ConfigError / RunnerError / ConverterError."""
    from ..config.run import build_config
    from ..runners import DnnCoolSupervisedRunner

    run_dir, csv, out = (os.path.abspath(p) for p in (run_dir, csv, out))
    refuse_run_file(out, "--out", error=ConfigError)  # e.g. runner.best.pth: the run would be destroyed
    config, cwd = load_run_config(run_dir)
    foreign = foreign_code(config)
    if foreign and not trust_config:
        raise ConfigError(f"{RunDir(run_dir).config_yml} imports and runs code from outside "
                          f"dnn_cool_catalyst: {foreign}; a config is code, so rebuilding this run runs it. Pass "
                          f"--trust-config (trust_config=True) only for a run you made or whose author you trust")
    if not os.path.isdir(os.path.dirname(out)):
        raise ConfigError(f"--out {out!r}: its directory does not exist")
    df = read_new_rows(csv, index_col)  # before anything is built: a wrong file fails in a second
    where = RunDir(run_dir).config_yml
    with _working_directory(cwd):  # the config's relative paths (CSV, project_dir) are the run's
        _, built = build_config(config, where)  # the saved stages are not run
        runner = built.get("runner")
        if not isinstance(runner, DnnCoolSupervisedRunner):
            raise ConfigError(f"{where}: 'runner' builds a {type(runner).__name__}, not a DnnCoolSupervisedRunner")
        if os.path.realpath(runner.run_dir) != os.path.realpath(run_dir):
            raise ConfigError(f"{where} rebuilds the runner of {os.path.abspath(runner.run_dir)!r}, not of "
                              f"{run_dir!r} (was the run directory moved or copied?); predict from the directory "
                              f"the run was made in")
        predictions = runner.predict(df, checkpoint=checkpoint, proba=proba, batch_size=batch_size,
                                     verbose=verbose)
    table = spreadsheet_safe(predictions.apply(lambda column: column.map(_cell) if column.dtype == object
                                               else column))
    table.index = table.index.map(safe_cell)  # the user's row names, written with --index-col
    atomic_write_text(out, table.to_csv(index=index_col is not None))
    return predictions


def _cell(value):
    """Lists (multilabel predictions) as JSON text in the CSV; everything else as pandas writes it."""
    return json.dumps(value) if isinstance(value, list) else value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dnn-cool-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a run directory made by dnn-cool-run (holds config.yml)")
    parser.add_argument("--csv", required=True, help="the rows to predict (the project's input columns)")
    parser.add_argument("--out", required=True, help="where to write the predictions CSV")
    parser.add_argument("--checkpoint", default="best", help="checkpoint name: best (default) or last")
    parser.add_argument("--proba", action="store_true", help="add proba_<task> probability columns")
    parser.add_argument("--index-col", default=None, help="an input column to use as the row index")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the run's)")
    parser.add_argument("--verbose", action="store_true", help="show a progress bar")
    parser.add_argument("--trust-config", action="store_true",
                        help="rebuild the run even though its config.yml imports code from outside "
                             "dnn_cool_catalyst (only for a run you made or whose author you trust)")
    args = parser.parse_args(argv)
    try:
        predict_csv(args.run_dir, args.csv, args.out, checkpoint=args.checkpoint, proba=args.proba,
                    index_col=args.index_col, batch_size=args.batch_size, verbose=args.verbose,
                    trust_config=args.trust_config)
    except _user_errors() as e:
        print(f"dnn-cool-predict: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    return 0


if __name__ == "__main__":
    main()
