"""``runner.cross_validate()``: one run per fold, a fold summary, and the fold ensemble evaluated on the test split.

The runner's run directory becomes a FOLD GROUP (README, "Cross-validation and development subsets"; its files:
run/layout.py). ``cv.json`` holds the settings and each fold's status ("running" | "failed" | "done"); the group's
test split is held out of every fold, and fold ``k`` is an ordinary run directory whose train split is the other
folds, valid fold ``k`` and test the group's test split. The group's ``tuned.json`` holds thresholds tuned on the
out-of-fold predictions, its evaluation tables the ensemble's on the test split (both gatings).

Each fold trains, infers its held-out fold (``valid``), tunes its thresholds there, infers the test split and
evaluates it. ``cv_summary.csv`` (task_path, metric_name, mean, std, fold_0..fold_{K-1}, num_samples) summarises
the folds' ``evaluation_test_gt.csv``: every fold model judged on the same test rows, so the ensemble's row in
``evaluation_test_gt.csv`` compares with the folds' mean.

The ensemble averages the folds' stored test activations (each fold's own fitted regression scaling already
applied), turns the average back into logits with the tasks' ``inverse_activation`` under the group's fitted
state, and decodes them with thresholds tuned on the out-of-fold predictions (every row outside the test split,
predicted by the fold model that did not train on it), through the runner's own tuning and evaluation code.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write_text
from ..measures.evaluation import GATINGS
from ..messages import warn_user
from ..tasks.base import TaskError, without_inverse_activation
from ..safe_read import read_csv
from ..spreadsheet import spreadsheet_safe
from ..run import artifacts, fitted
from . import folds as fold_files
from ..errors import RunnerError
from ..interpretation.samples import SampleSource
from ..outputs.decoding import check_tune_limits, evaluate_outputs, tune_outputs
from ..outputs.inference import _finish_split
from ..run.layout import RunDir, fold_name
from ..run.lock import run_lock
from ..run.splits import SPLITS, encode_labels

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def cross_validate(runner: "DnnCoolSupervisedRunner", folds: int = 5, stratify: Optional[str] = None,
                   num_epochs: Optional[int] = None, tune_kwargs: Optional[dict] = None,
                   **train_kwargs) -> pd.DataFrame:
    """Train one model per fold, evaluate each on the test split, ensemble them; return the fold summary.

    The rows outside this run's test split are dealt into ``folds`` seeded folds (by row identity, with the
    runner's ``seed``; ``stratify`` names a binary/classification task whose classes are dealt evenly). Fold
    ``k`` trains in ``<run_dir>/fold_<k>`` on the other folds, selects its best epoch and tunes its thresholds
    on fold ``k``. ``num_epochs`` (default: :meth:`train`'s step budget, from each fold's own training batches) and
    ``train_kwargs`` go to every fold's :meth:`train`, ``tune_kwargs`` to
    every :meth:`tune` (the folds' and the ensemble's). Every fold starts from a copy of this runner's model.

    Calling it again resumes: done folds are skipped, interrupted ones resume from their last checkpoint.
    Returns (and saves as ``cv_summary.csv``) ``task_path, metric_name, mean, std`` (sample standard
    deviation over folds), ``fold_0 .. fold_{K-1}`` and ``num_samples``, from each fold's
    ``evaluation_test_gt.csv``. The ensemble's evaluation is saved as ``evaluation_test_<gating>.csv``.
    """
    tune_kwargs = _checked_tune_kwargs(runner, tune_kwargs)
    fixed = sorted(set(train_kwargs) & {"resume", "loaders"})
    if fixed:
        raise RunnerError(f"cross_validate() sets {fixed} itself (each fold trains on its own splits and resumes "
                          f"when it was interrupted); leave them out")
    if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, int)
                                   or num_epochs < 1):
        raise RunnerError(f"num_epochs must be a positive int or None (each fold's step budget), got "
                          f"{num_epochs!r}")
    plan = runner.fold_splits(folds, stratify)
    _check_ensemble_possible(runner.flow)
    checkpoints = runner.checkpoint_dir
    if os.path.isdir(checkpoints) and os.listdir(checkpoints):
        raise RunnerError(f"{runner.run_dir} holds a single run's checkpoints ({checkpoints}); cross-validation "
                          f"makes its run directory a fold group: use another runner_name")
    k_folds = len(plan)
    settings = fold_files.settings_of(k_folds, runner.split_seed, stratify, float(runner.split_fractions[2]))
    writes = runner._writes_files()
    with run_lock(runner.run_dir, "cross_validate", enabled=writes, owner=runner):
        state = fold_files.load_or_start(runner.run_dir, settings, write=writes)
        # Lazy heads get their weights here, once: otherwise each fold draws them when it starts training, from
        # a random state that depends on what this process ran before (a rerun skips the finished folds).
        runner._materialize()
        initial_model = copy.deepcopy(runner.model)
        decoders = {name: task.get_decoder_params() for name, task in runner.flow.tasks.items()}
        runners = []
        try:
            for k, splits in enumerate(plan):
                _forget_vanished_fold(runner.run_dir, k, state, writes)
                fold = _fold_runner(runner, k, k_folds, splits, initial_model, stratify)
                runners.append(fold)
                if state["status"].get(fold_name(k)) != "done":
                    _apply_decoders(runner.flow, decoders)  # not the previous fold's thresholds
                    _run_fold(runner.run_dir, fold, k, state, num_epochs, tune_kwargs, train_kwargs, writes)
            summary = _fold_summary(runner, runners)
            _apply_decoders(runner.flow, decoders)  # a task the out-of-fold tuning cannot move keeps these
            _ensemble(runner, runners, tune_kwargs)
        finally:
            runner._use_fitted_targets()  # the shared task objects back to this runner's own state
    return summary


# -- before anything is trained ------------------------------------------------------------------------------
def _checked_tune_kwargs(runner: "DnnCoolSupervisedRunner", tune_kwargs) -> dict:
    tune_kwargs = dict(tune_kwargs or {})
    if "loader" in tune_kwargs:
        raise RunnerError("tune_kwargs must not set 'loader': folds tune on their held-out fold, the ensemble "
                          "on the out-of-fold predictions")
    try:
        bound = inspect.signature(runner.tune).bind(**tune_kwargs)
    except TypeError as e:
        raise RunnerError(f"tune_kwargs {sorted(tune_kwargs)} do not fit runner.tune(): {e}") from None
    bound.apply_defaults()
    check_tune_limits(bound.arguments["min_samples"], bound.arguments["min_per_class"])
    return tune_kwargs


def fold_splits(runner: "DnnCoolSupervisedRunner", folds: int = 5,
                stratify: Optional[str] = None) -> List[Dict[str, list]]:
    """The splits :meth:`cross_validate` gives each fold, as DataFrame index labels: ``train`` (the other
    folds), ``valid`` (this fold) and ``test`` (this run's test split, the same for every fold). Checks
    ``folds`` and ``stratify`` (see :mod:`~dnn_cool_catalyst.experiments.folds`); writes nothing."""
    labels = encode_labels(runner._row_ids())
    test = [labels[p] for p in runner.splits["test"]]
    rest = sorted((p for name in ("train", "valid") for p in runner.splits[name]))
    k_folds = fold_files.check_folds(folds, len(rest), len(test))
    strata = None
    if stratify is not None:
        every = runner._strata(stratify)  # validates the task name and type
        strata = [every[p] for p in rest]
        task = runner.flow.tasks[stratify]
        fold_files.check_strata(strata, k_folds, stratify, lambda cls: _class_name(task, cls))
    members = fold_files.fold_labels([labels[p] for p in rest], k_folds, runner.split_seed, strata)
    plan = []
    order = {label: i for i, label in enumerate(labels)}
    for k in range(k_folds):
        train = [label for j, fold in enumerate(members) if j != k for label in fold]
        plan.append({"train": sorted(train, key=order.__getitem__), "valid": members[k], "test": test})
    return plan


def _check_ensemble_possible(flow) -> None:
    missing = [f"'{name}' ({type(flow.tasks[name]).__name__})" for name in without_inverse_activation(flow.tasks)]
    if missing:
        raise RunnerError(f"task(s) {', '.join(missing)} define no inverse_activation(), which the fold "
                          f"ensemble needs to evaluate averaged activations; add it to the task class")


# -- one fold ------------------------------------------------------------------------------------------------
def _fold_runner(runner: "DnnCoolSupervisedRunner", k: int, k_folds: int, splits: Dict[str, list], initial_model,
                 stratify):
    """A runner over ``<run_dir>/fold_<k>`` sharing this one's flow, data and settings: a shallow copy with
    its own directory, splits, fitted state, model and loss (so constructor options added to the runner
    carry over without being listed here)."""
    fold = copy.copy(runner)
    # Containers of its own (Catalyst fills e.g. experiment_metrics in place): a fold must not write into
    # this runner's or another fold's.
    fold.__dict__.update({key: copy.copy(value) for key, value in vars(runner).items()
                          if isinstance(value, (dict, list, set))})
    fold.run_dir = runner.run_layout.fold(k).path
    fold.model = copy.deepcopy(initial_model)
    try:
        fold.flow_loss = runner.flow.get_loss(runner.loss_weights)
    except TaskError as e:
        raise RunnerError(str(e)) from None
    fold._claim_run_dir()
    fold_files.write_or_check_fold_splits(fold.run_layout.splits, splits, runner.split_seed,
                                          stratify, k, k_folds, write=runner._writes_files())
    position = {label: i for i, label in enumerate(encode_labels(runner._row_ids()))}
    fold.splits = {name: np.array([position[label] for label in splits[name]], dtype=np.int64) for name in SPLITS}
    try:
        fold.fitted_targets = fitted.load_or_fit(fold.run_dir, runner.flow, runner.dataset, fold.splits["train"],
                                                 write=runner._writes_files())
    except fitted.FittedStateError as e:
        raise RunnerError(str(e)) from None
    fold._fit_model_inputs()  # the fold's own training rows
    return fold


def _forget_vanished_fold(run_dir: str, k: int, state: dict, writes: bool) -> None:
    """A fold ``cv.json`` lists as done or trained whose folder is gone (deleted, as the errors advise, to train
    it again) is trained again: the status alone must not skip it."""
    name, group = fold_name(k), RunDir(run_dir)
    if os.path.isdir(group.fold(k).path):
        return
    if state["status"].get(name) is None and name not in state["trained"]:
        return
    warn_user(f"{group.cv_json} lists {name} as {state['status'].get(name, 'trained')}, but {group.fold(k).path} "
              f"is gone: training it again")
    state["status"].pop(name, None)
    state["trained"] = [n for n in state["trained"] if n != name]
    if writes:
        fold_files.save_state(run_dir, state)


def _run_fold(run_dir: str, fold, k: int, state: dict, num_epochs: int, tune_kwargs: dict, train_kwargs: dict,
              writes: bool) -> None:
    name = fold_name(k)

    def mark(status: str) -> None:
        state["status"][name] = status
        if writes:
            fold_files.save_state(run_dir, state)

    mark("running")
    try:
        if name not in state["trained"]:
            # A fold killed mid-training resumes; one that had finished (all epochs, or stopped early) trains
            # no further epoch (its last checkpoint says so, callbacks/checkpoint.py).
            resume = os.path.exists(fold.run_layout.checkpoint("last"))
            fold.train(num_epochs=num_epochs, resume=resume, **train_kwargs)
            state["trained"].append(name)
            mark("running")  # saves "trained": a kill from here on does not even look at the training again
        # A tuned.json left by an interrupted attempt would decode the valid outputs with its thresholds, which
        # the uninterrupted run infers before tuning: gone, so both store the same outputs.
        with contextlib.suppress(FileNotFoundError):
            if writes:
                os.remove(fold.run_layout.tuned)
        fold.infer(splits=["valid"])
        fold.tune(loader="valid", **tune_kwargs)
        fold.infer(splits=["test"])  # with the tuned thresholds: the stored decoded masks use them
        for gating in GATINGS:
            fold.evaluate(loader="test", gating=gating)
    except BaseException:
        mark("failed")
        raise
    mark("done")


# -- summary and ensemble -------------------------------------------------------------------------------------
def _fold_summary(runner: "DnnCoolSupervisedRunner", runners) -> pd.DataFrame:
    """The folds' ``evaluation_test_gt.csv`` side by side, with mean and std over folds."""
    tables = []
    for k, fold in enumerate(runners):
        path = fold.run_layout.evaluation("test", "gt")  # every fold model judged on the same test rows
        try:
            table = read_csv(path)
        except (OSError, ValueError) as e:
            raise RunnerError(f"cannot read {path} ({e}); delete {fold.run_dir} and run cross_validate "
                              f"again") from None
        tables.append(table.rename(columns={"metric_res": fold_name(k),
                                            "num_samples": f"_n{k}"}))
    keys = ["task_path", "metric_name"]
    merged = tables[0]
    for table in tables[1:]:
        merged = merged.merge(table, on=keys, how="outer")
    # An outer merge sorts the keys: back to the evaluation tables' order (flow order).
    order = pd.concat([t[keys] for t in tables]).drop_duplicates()
    merged = order.merge(merged, on=keys, how="left")
    names = [fold_name(k) for k in range(len(runners))]
    values = merged[names].astype(float)
    # Under ground-truth gating every fold judges the same test rows: the counts agree.
    counts = merged[[f"_n{k}" for k in range(len(runners))]]
    summary = pd.DataFrame({"task_path": merged["task_path"], "metric_name": merged["metric_name"],
                            "mean": values.mean(axis=1), "std": values.std(axis=1, ddof=1)})
    for name in names:
        summary[name] = values[name]
    summary["num_samples"] = counts.max(axis=1).astype(int)
    if runner._writes_files():
        atomic_write_text(runner.run_layout.cv_summary, spreadsheet_safe(summary).to_csv(index=False))
    return summary


def _ensemble(runner: "DnnCoolSupervisedRunner", runners, tune_kwargs: dict) -> None:
    """Tune on the out-of-fold predictions, then evaluate the averaged test activations (both gatings)."""
    runner._use_fitted_targets()  # inverse_activation and evaluation in one (the group's) logit space
    first = next(iter(runner.flow.tasks))
    oof = [fold._stored("valid")[3] for fold in runners]
    tests = [fold._stored("test")[3] for fold in runners]
    for fold, data in zip(runners, tests):
        if not torch.equal(data[first]["index"], tests[0][first]["index"]):
            raise RunnerError(f"the stored test outputs of {fold.run_dir} list other rows than those of "
                              f"{runners[0].run_dir}; delete the fold group and run cross_validate again")
    # Out of fold: every row predicted once, by the model that did not train on it. Test: the folds' mean.
    activations = {
        "oof": {name: torch.cat([p[name]["activations"].double() for p in oof]) for name in runner.flow.tasks},
        "test": {name: torch.stack([p[name]["activations"].double() for p in tests]).mean(0)
                 for name in runner.flow.tasks}}
    collected = {
        split: {name: {"logits": [task.inverse_activation(activations[split][name])],
                       "targets": [torch.cat([p[name]["targets"] for p in parts])],
                       "available": [torch.cat([p[name]["available"] for p in parts])]}
                for name, task in runner.flow.tasks.items()}
        for split, parts in (("oof", oof), ("test", tests[:1]))}
    positions = {"oof": torch.cat([p[first]["index"] for p in oof]), "test": tests[0][first]["index"]}
    logits = {split: {name: c["logits"][0] for name, c in collected[split].items()} for split in collected}
    targets = {split: {name: c["targets"][0] for name, c in collected[split].items()} for split in collected}
    available = {split: {name: c["available"][0] for name, c in collected[split].items()} for split in collected}
    _tune_ensemble(runner, logits["oof"], targets["oof"], available["oof"], tune_kwargs)
    if runner._writes_files():  # stored like infer/<split>/, decoded masks with the tuned thresholds
        digest = artifacts.sha256_bytes(json.dumps(
            [artifacts.sha256_file(fold.run_layout.checkpoint("best")) for fold in runners]
        ).encode("utf-8"))
        source = SampleSource(runner.dataset)
        for split in ("oof", "test"):
            stored = _finish_split(runner.flow, collected[split], positions[split])
            for name in stored:
                stored[name]["activations"] = activations[split][name].float()  # the exact average
            artifacts.save_split(runner.run_layout.ensemble, split, stored, "fold_ensemble",
                                 digest, source.row_ids(positions[split].tolist()))
    for gating in GATINGS:
        evaluate_outputs(runner, "test", gating, logits["test"], targets["test"], available["test"])


def _tune_ensemble(runner: "DnnCoolSupervisedRunner", logits, targets, available, tune_kwargs: dict) -> None:
    args = inspect.signature(runner.tune).bind(**tune_kwargs)
    args.apply_defaults()
    a = args.arguments
    tune_outputs(runner, "oof", logits, targets, available, a["metric"], a["min_recall"], a["min_samples"],
                 a["min_per_class"], alpha=a["alpha"])


def _apply_decoders(flow, params: dict) -> None:
    for name, task_params in params.items():
        flow.tasks[name].set_decoder_params(task_params)


def _class_name(task, cls: int):
    """The label of class id ``cls`` as the user wrote it in the DataFrame, where the task knows it."""
    names = getattr(task, "class_names", None) or getattr(task, "labels", None)
    if names is not None and 0 <= cls < len(names):
        return names[cls]
    return cls
