"""Does choosing each task's own best epoch pay? Per-task model selection and one model per task, measured.

A run trains one shared trunk; kept at one epoch (the best summed validation loss), every task gets that epoch's
weights. On the tables of ``bench_quality.py`` this script compares, per task and seed, on the same splits and
test rows:

- ``shared``: one run, its one best epoch on the summed validation loss for every task
  (``train(task_selection=False)``; what the library did before per-task selection);
- ``per-task epoch``: the same run, but each task scored with the weights of the epoch where *its own* validation
  loss was lowest (every epoch's weights kept in memory; ``train(task_selection=True)``, the default for
  ``tabular_model`` since, does the same with files and one model copy per distinct epoch at inference);
- ``one model per task``: a separate run per task, the other tasks' loss weights 0 (``loss_weights``), so each
  model learns and is selected on one task only (what a user gets by training T models);
- ``head refit`` (``--head-refit``): the shared run's best weights, then the trunk frozen and only the flow's
  heads trained on (AdamW, lr 1e-3, 30 epochs on loans, 60 on the smaller tables), each head kept at its own best
  validation loss. With a frozen trunk the heads are independent, so this per-task choice is one model.

Each is judged with ``bench_quality``'s rule (accuracy within 0.02, MAE within 5% of the better scikit-learn
model on the same rows).

    python benchmarks/bench_selection.py [--tables penguins,labour,affairs,loans] [--seeds 0,1,2]
                                         [--no-standalone] [--head-refit] [--csv out.csv]
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


def validation_pass(runner, model, loader, optimizer=None) -> dict:
    """``{task: mean masked loss}`` over ``loader``; with ``optimizer``, a training pass (one step per batch)."""
    import torch

    sums, counts = {}, {}
    for batch in loader:
        with torch.set_grad_enabled(optimizer is not None):
            per_task, count = runner.flow_loss.terms(model(batch["inputs"]), batch)
            if optimizer is not None:
                optimizer.zero_grad()
                runner.flow_loss.combine(per_task, count).backward()
                optimizer.step()
        for name in per_task:
            sums[name] = sums.get(name, 0.0) + float(per_task[name].detach()) * float(count[name])
            counts[name] = counts.get(name, 0.0) + float(count[name])
    return {name: sums[name] / counts[name] if counts[name] else float("inf") for name in sums}


def refit_heads(runner, epochs: int) -> None:
    """Train the heads of ``runner.model`` (its best weights, trunk frozen, eval mode) and keep each head at the
    epoch of its own lowest validation loss."""
    import torch

    model = runner.model.cpu().eval()
    heads = model.flow.heads
    for parameter in model.parameters():
        parameter.requires_grad_(parameter in set(heads.parameters()))
    optimizer = torch.optim.AdamW(heads.parameters(), lr=1e-3)
    train, valid = runner.split_loader("train", shuffle=True), runner.split_loader("valid")
    best = validation_pass(runner, model, valid)
    kept = {name: copy.deepcopy(heads[name].state_dict()) for name in best}
    for _ in range(epochs):
        validation_pass(runner, model, train, optimizer)
        for name, loss in validation_pass(runner, model, valid).items():
            if loss < best[name]:
                best[name], kept[name] = loss, copy.deepcopy(heads[name].state_dict())
    for name, state in kept.items():
        heads[name].load_state_dict(state)


def run_table(table, seed: int, standalone: bool, head_refit: bool = False) -> pd.DataFrame:
    df = load_table(table, seed, None)
    with tempfile.TemporaryDirectory() as folder:
        project = make_project(table, df, folder)
        flow = project.get_full_flow()
        runner = project.runner(model=bq.model_for(project, seed, None), runner_name="shared", seed=seed)
        snapshots = epoch_snapshots_callback()
        # task_selection=False: the shared run's one best epoch (the library's per-task selection is what the
        # "per-task epoch" column reproduces by hand)
        runner.train(verbose=False, callbacks={"epoch_snapshots": snapshots}, task_selection=False)
        scores = bq.baseline_scores(table, df, project, runner.splits, seed)
        shared = test_scores(runner, scores)
        best_path = runner.load_checkpoint("best")
        best_state = copy.deepcopy(runner.model.state_dict())
        runner.load_checkpoint = lambda which: best_path  # infer() the weights put into the model below
        per_task, chosen = {}, {}
        for name, path in flow.task_paths.items():
            history = [losses.get(f"loss/{path}", float("inf")) for losses in snapshots.losses]
            chosen[path] = min(range(len(history)), key=history.__getitem__)
            runner.model.load_state_dict(snapshots.states[chosen[path]])
            per_task[path] = test_scores(runner, scores)[path]
        refit = {}
        if head_refit:
            runner.model.load_state_dict(best_state)
            refit_heads(runner, epochs=30 if table.name == "loans" else 60)
            refit = test_scores(runner, scores)
        alone = {}
        if standalone:
            for name, path in flow.task_paths.items():
                weights = {other: float(other == name) for other in flow.tasks}
                single = project.runner(model=bq.model_for(project, seed, None), runner_name=f"alone_{name}",
                                        seed=seed, loss_weights=weights)
                single.train(verbose=False, task_selection=False)
                alone[path] = test_scores(single, scores)[path]
    rows = []
    for path, (kind, metric, test_rows, by_model) in scores.items():
        reference = (min if kind == "regression" else max)(by_model.values())
        row = {"table": table.name, "seed": seed, "task": path, "metric": metric, "test rows": test_rows,
               "best baseline": reference, "shared": shared[path], "per-task epoch": per_task[path],
               "epoch chosen": chosen[path], "epochs": len(snapshots.losses)}
        if standalone:
            row["one model per task"] = alone[path]
        if head_refit:
            row["head refit"] = refit[path]
        for column in ["shared", "per-task epoch"] + (["one model per task"] if standalone else []) + (
                ["head refit"] if head_refit else []):
            row[f"{column} within"] = bq.is_within(kind, row[column], reference)
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="penguins,labour,affairs,loans")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-standalone", action="store_true", help="skip the one-model-per-task runs")
    parser.add_argument("--head-refit", action="store_true", help="also refit the heads on the frozen trunk")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    parts = []
    for name in args.tables.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            parts.append(run_table(tables()[name], seed, not args.no_standalone, args.head_refit))
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
