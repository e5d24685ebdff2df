"""Does choosing each task's own best epoch pay? Per-task model selection and one model per task, measured.

The library trains one shared trunk and keeps the epoch with the best summed validation loss for every task. On
the tables of ``bench_quality.py`` this script compares, per task and seed, on the same splits and test rows:

- ``shared``: the default run (what ``bench_quality.py`` reports as "ours");
- ``per-task epoch``: the same run, but each task scored with the weights of the epoch where *its own* validation
  loss was lowest (every epoch's weights are kept in memory during the run; a library feature would need one
  model per distinct epoch at inference);
- ``one model per task``: a separate run per task, the other tasks' loss weights 0 (``loss_weights``), so each
  model learns and is selected on one task only (what a user gets by training T models).

Each is judged with ``bench_quality``'s rule (accuracy within 0.02, MAE within 5% of the better scikit-learn
model on the same rows).

    python benchmarks/bench_selection.py [--tables penguins,labour,affairs,loans] [--seeds 0,1,2]
                                         [--no-standalone] [--csv out.csv]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import warnings

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_quality as bq  # noqa: E402  (puts the repository on sys.path too)
from quality_tables import load_table, make_project, tables  # noqa: E402


def epoch_snapshots_callback():
    """A callback keeping, after every validation pass, the per-task validation losses and a copy of the weights."""
    from catalyst.core import Callback, CallbackOrder

    class EpochSnapshots(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.External)
            self.losses, self.states = [], []

        def on_loader_end(self, runner) -> None:
            if runner.loader_key == "valid":
                self.losses.append({k: float(v) for k, v in runner.loader_metrics.items() if k.startswith("loss/")})
                self.states.append(copy.deepcopy(runner.model.state_dict()))

    return EpochSnapshots()


def test_scores(runner, scores: dict) -> dict:
    """``{task_path: test metric}`` of the weights now in ``runner.model`` (inferred as they are, threshold 0.5)."""
    runner.infer(splits=["test"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tuned parameters": threshold 0.5 on purpose
        evaluation = runner.evaluate()
    return {path: bq.library_score(evaluation, path, metric, rows) for path, (_, metric, rows, _) in scores.items()}


def run_table(table, seed: int, standalone: bool) -> pd.DataFrame:
    df = load_table(table, seed, None)
    with tempfile.TemporaryDirectory() as folder:
        project = make_project(table, df, folder)
        flow = project.get_full_flow()
        runner = project.runner(model=bq.model_for(project, seed, None), runner_name="shared", seed=seed)
        snapshots = epoch_snapshots_callback()
        runner.train(verbose=False, callbacks={"epoch_snapshots": snapshots})
        scores = bq.baseline_scores(table, df, project, runner.splits, seed)
        shared = test_scores(runner, scores)
        best_path = runner.load_checkpoint("best")
        runner.load_checkpoint = lambda which: best_path  # infer() the weights put into the model below
        per_task, chosen = {}, {}
        for name, path in flow.task_paths.items():
            history = [losses.get(f"loss/{path}", float("inf")) for losses in snapshots.losses]
            chosen[path] = min(range(len(history)), key=history.__getitem__)
            runner.model.load_state_dict(snapshots.states[chosen[path]])
            per_task[path] = test_scores(runner, scores)[path]
        alone = {}
        if standalone:
            for name, path in flow.task_paths.items():
                weights = {other: float(other == name) for other in flow.tasks}
                single = project.runner(model=bq.model_for(project, seed, None), runner_name=f"alone_{name}",
                                        seed=seed, loss_weights=weights)
                single.train(verbose=False)
                alone[path] = test_scores(single, scores)[path]
    rows = []
    for path, (kind, metric, test_rows, by_model) in scores.items():
        reference = (min if kind == "regression" else max)(by_model.values())
        row = {"table": table.name, "seed": seed, "task": path, "metric": metric, "test rows": test_rows,
               "best baseline": reference, "shared": shared[path], "per-task epoch": per_task[path],
               "epoch chosen": chosen[path], "epochs": len(snapshots.losses)}
        if standalone:
            row["one model per task"] = alone[path]
        for column in ["shared", "per-task epoch"] + (["one model per task"] if standalone else []):
            row[f"{column} within"] = bq.is_within(kind, row[column], reference)
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="penguins,labour,affairs,loans")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-standalone", action="store_true", help="skip the one-model-per-task runs")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    parts = []
    for name in args.tables.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            parts.append(run_table(tables()[name], seed, not args.no_standalone))
            with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
                print(parts[-1].to_string(index=False), flush=True)
    results = pd.concat(parts, ignore_index=True)
    if args.csv:
        results.to_csv(args.csv, index=False)
    for column in [c for c in results if c.endswith(" within")]:
        within = results[column].astype(bool)
        every_seed = int(within.groupby([results["table"], results["task"]]).all().sum())
        print(f"{column[:-7]}: within on {int(within.sum())}/{len(results)} task-seeds, on every seed for "
              f"{every_seed}/{results.groupby(['table', 'task']).ngroups} tasks")


if __name__ == "__main__":
    main()
