"""Interpreting stored inference outputs: best/worst samples, explanation trees, PR curves; functions over a
runner (:class:`~dnn_cool_catalyst.runners.DnnCoolSupervisedRunner` delegates to them).

``runner.interpretation_k`` samples are logged per task and kind during validation and after inference (0 turns
the logging off); ``runner.interpretation_every`` says at which validation epochs (None: when the validation metric
improves, and the last; n: every n-th and the last); ``runner.publishers`` chooses how input columns are shown
(``runner.publishers.col_mapping["title"] = ...``) and which boxes are drawn (``runner.publishers.boxes``).
"""
from __future__ import annotations

import glob
import os
import textwrap
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import RunnerError
from ..outputs import inference
from ..run.layout import infer_tensorboard_name
from ..run.tuned import tuned_choice_lines, tuned_point_rows
from ..safe_read import read_json
from .explain import render_tree
from .pr_curves import log_pr_curves
from .publishers import Publishers
from .sample_views import sample_views
from .samples import SampleSource
from .selection import OVERALL, losses_from_stored, rank
from .tensorboard import losses_by_position, open_writer, picked_positions, publish_extremes, select_extremes

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


#: Characters per line of an explanation tree in TensorBoard: a preformatted line does not wrap, and a longer one
#: runs past its card (about 110 characters fit a card on a 1400-pixel-wide window).
TREE_WIDTH = 100


def _wrap_tree_line(line: str, width: int = TREE_WIDTH) -> List[str]:
    """A tree line cut between words to ``width``, its continuations indented under the node's text.

    >>> for part in _wrap_tree_line("│   └── door_open = 1 (activation 0.998 >= threshold 0.500, logit 6.1)", 40):
    ...     print(part)
    │   └── door_open = 1 (activation 0.998
    │           >= threshold 0.500, logit
    │           6.1)
    """
    body = line.lstrip(" │├└─")
    prefix = line[:len(line) - len(body)]
    if len(line) <= width or not body:
        return [line]
    under = prefix.replace("├──", "│  ").replace("└──", "   ") + "    "
    return textwrap.wrap(body, width=max(width, len(under) + 20), initial_indent=prefix, subsequent_indent=under,
                         break_long_words=False, break_on_hyphens=False) or [line]


def _preformatted(text: str) -> str:
    # TensorBoard renders text as markdown; four leading spaces keep a tree's lines and box characters.
    return "\n".join("    " + part for line in text.rstrip("\n").split("\n") for part in _wrap_tree_line(line))


def publishers(runner: "DnnCoolSupervisedRunner") -> Publishers:
    """The runner's publishers (how input columns are shown, which boxes are drawn), made on first use."""
    if getattr(runner, "_publishers", None) is None:
        runner._publishers = Publishers()
    return runner._publishers


# -- best and worst samples ------------------------------------------------------------------------------
def _split_of(runner: "DnnCoolSupervisedRunner", loader: str) -> str:
    if loader not in runner.splits and loader.startswith("infer_") and loader[len("infer_"):] in runner.splits:
        return loader[len("infer_"):]
    return loader


def _task_key(runner: "DnnCoolSupervisedRunner", task: str) -> str:
    if task == OVERALL or task in runner.flow.tasks:
        return task
    by_path = {path: name for name, path in runner.flow.task_paths.items()}
    if task in by_path:
        return by_path[task]
    raise RunnerError(f"unknown task '{task}'; use 'overall' or one of {list(runner.flow.task_paths.values())}")


def _examples(runner: "DnnCoolSupervisedRunner", loader: str, task: str, n: int, worst: bool) -> pd.DataFrame:
    key = _task_key(runner, task)
    losses = losses_from_stored(inference.stored_outputs(runner, _split_of(runner, loader))[3])
    values, index = losses.get(key, (np.zeros(0), np.zeros(0, dtype=np.int64)))
    source = SampleSource(runner.dataset)
    picked = rank(values, index, n, worst)
    return pd.DataFrame({"row_id": [source.row_id(i) for i, _ in picked],
                         "loss": [loss for _, loss in picked],
                         "index": [i for i, _ in picked]}, columns=["row_id", "loss", "index"])


def worst_examples(runner: "DnnCoolSupervisedRunner", loader: str = "valid", task: str = OVERALL,
                   n: int = 5) -> pd.DataFrame:
    """The ``n`` samples of the stored ``loader`` outputs with the highest loss for ``task`` (a task name or
    path, or ``"overall"``), highest first: columns ``row_id`` (the DataFrame's index label), ``loss`` and
    ``index`` (the dataset position). Only samples where the task is valid (ground-truth gating) count; a task
    with none gives an empty frame."""
    return _examples(runner, loader, task, n, worst=True)


def best_examples(runner: "DnnCoolSupervisedRunner", loader: str = "valid", task: str = OVERALL,
                  n: int = 5) -> pd.DataFrame:
    """Like :func:`worst_examples`, lowest loss first."""
    return _examples(runner, loader, task, n, worst=False)


# -- explanations ----------------------------------------------------------------------------------------
def explain(runner: "DnnCoolSupervisedRunner", loader: str, rows: Iterable, render: bool = True) -> Dict:
    """Explanation trees of the samples with DataFrame row ids ``rows`` from the stored ``loader`` outputs
    (gated on the decoded predictions, with the tuned thresholds when ``tuned.json`` exists).

    Returns ``{row_id: text}`` (``render=False``: ``{row_id: treelib.Tree}``) in the order asked. A rendered
    text ends, when the thresholds were tuned, with how each was chosen: ``Thresholds tuned on valid:`` and one
    line per threshold with its best interval on that split, or why it was kept."""
    split = _split_of(runner, loader)
    data = inference.stored_outputs(runner, split)[3]
    runner.load_tuned_if_any()
    rows = list(rows)
    source = SampleSource(runner.dataset)
    positions = next(iter(data.values()))["index"].numpy()
    where = {source.row_id(int(p)): i for i, p in enumerate(positions)}
    missing = [r for r in rows if r not in where]
    if missing:
        raise RunnerError(f"row id(s) {missing[:5]} are not in the stored '{split}' outputs "
                          f"({len(positions)} samples)")
    trees = _trees(runner, data, [where[r] for r in rows], rows, render)
    footer = _tuned_choices(runner) if render else ""
    return {row: text + footer for row, text in trees.items()} if footer else trees


def _tuned_choices(runner: "DnnCoolSupervisedRunner") -> str:
    """The lines :func:`explain` ends a rendered tree with (empty without ``tuned.json``)."""
    path, saved = _tuned_file(runner)
    lines = tuned_choice_lines(path, saved.get("report")) if saved is not None else []
    if not lines:
        return ""
    tuned_on = saved.get("loader") if isinstance(saved.get("loader"), str) else "the tuning split"
    return f"Thresholds tuned on {tuned_on}:\n" + "".join(f"  {line}\n" for line in lines)


def _trees(runner: "DnnCoolSupervisedRunner", data, at: Sequence[int], rows: Sequence, render: bool) -> Dict:
    at = np.asarray(at, dtype=np.int64)
    logits = {name: fields["logits"][at] for name, fields in data.items()}
    # The stored labels next to each prediction (what "why is this wrong?" needs).
    labels = ({name: fields["targets"][at] for name, fields in data.items()},
              {name: fields["available"][at] for name, fields in data.items()})
    trees = runner.flow.get_treelib_explainer()(logits, labels=[f"row {r}" for r in rows], targets=labels) \
        if len(at) else []
    return {row: render_tree(tree) if render else tree for row, tree in zip(rows, trees)}


# -- TensorBoard after inference -------------------------------------------------------------------------
def log_interpretation(runner: "DnnCoolSupervisedRunner", splits: Iterable[str],
                       step: int = 0) -> Dict[str, List[str]]:
    """For each stored split, write to ``<tensorboard_dir>/infer_<split>/``: PR curves of thresholded tasks
    (``pr_curve/<task_path>[/<class>]``), the tuned thresholds' precision/recall when tuned (``pr_curve/tuned``,
    saying on which split they were measured), the ``interpretation_k`` best and worst samples per task
    (captioned with targets and predictions), and the explanation trees of the worst samples overall, with
    their labels (``explanation/worst/<rank>``). Inferring a split again replaces what this runner wrote for
    it. Returns the tags written per split."""
    written = {}
    k = int(runner.interpretation_k)
    source = SampleSource(runner.dataset)
    for split in splits:
        data = inference.stored_outputs(runner, split)[3]
        view = runner.tensorboard_layout
        directory = view.infer_tensorboard(split)
        # This runner's own TensorBoard run: an earlier infer() of the split is replaced, not appended to.
        for old in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
            os.remove(old)
        writer = open_writer(view.tensorboard, infer_tensorboard_name(split))
        try:
            tags = list(log_pr_curves(writer, runner.flow, data, step=step))
            tuned = _tuned_points_table(runner, split)
            if tuned:
                writer.add_text("pr_curve/tuned", tuned, global_step=step)
                tags.append("pr_curve/tuned")
            if k > 0:
                losses = losses_from_stored(data)
                selection = select_extremes(losses, k, source)
                views = _stored_views(runner, data, selection, losses)
                tags += publish_extremes(writer, selection, source, runner.publishers.for_columns(source.types),
                                         runner.flow.task_paths, step, views=views, boxes=runner.publishers.boxes,
                                         single_step=True)  # infer_<split>: replaced, never appended to
                tags += _log_worst_trees(runner, writer, data, selection.get(OVERALL, {}).get("worst", []), step)
        finally:
            writer.close()
        written[split] = tags
    return written


def _stored_views(runner: "DnnCoolSupervisedRunner", data, selection, losses) -> dict:
    """Targets and predictions of the selected samples from the stored outputs (see :mod:`.sample_views`)."""
    positions = picked_positions(selection)
    where = {int(p): i for i, p in enumerate(next(iter(data.values()))["index"].numpy())}
    at = np.asarray([where[p] for p in positions], dtype=np.int64)
    views = sample_views(runner.flow.graph, {name: fields["logits"][at] for name, fields in data.items()},
                         {name: fields["targets"][at] for name, fields in data.items()},
                         {name: fields["available"][at] for name, fields in data.items()}, positions)
    for position, task_losses in losses_by_position(losses, positions).items():
        views[position].losses = task_losses
    return views


def _log_worst_trees(runner: "DnnCoolSupervisedRunner", writer, data, worst, step) -> List[str]:
    positions = next(iter(data.values()))["index"].numpy()
    where = {int(p): i for i, p in enumerate(positions)}
    trees = _trees(runner, data, [where[i] for i, _, _ in worst], [row for _, row, _ in worst], render=True)
    tags = []
    for position, (_, row, loss) in enumerate(worst, start=1):
        tag = f"explanation/worst/{position}"
        writer.add_text(tag, f"row {row}, overall loss {loss:.4g}\n\n{_preformatted(trees[row])}",
                        global_step=step)
        tags.append(tag)
    return tags


def _tuned_file(runner: "DnnCoolSupervisedRunner"):
    """``(path, contents)`` of ``tuned.json``; contents None when the run has none."""
    path = runner.run_layout.tuned
    try:
        saved = read_json(path)
    except FileNotFoundError:
        return path, None
    except (OSError, ValueError) as e:
        raise RunnerError(f"tuned parameters file {path} is corrupted ({e}); run runner.tune() again") from None
    if not isinstance(saved, dict):
        raise RunnerError(f"tuned parameters file {path}: field '(top level)' must be an object; run "
                          f"runner.tune() again")
    return path, saved


def _tuned_points_table(runner: "DnnCoolSupervisedRunner", split: str) -> Optional[str]:
    """The tuned thresholds' precision/recall and how each was chosen (its best interval, or why it was kept;
    from ``tuned.json``) as a markdown table under a line saying where they were measured (the tuning loader,
    usually not ``split``), or None."""
    path, saved = _tuned_file(runner)
    if saved is None:
        return None
    lines = tuned_point_rows(path, saved.get("report"))
    if not lines:
        return None
    tuned_on = saved.get("loader") if isinstance(saved.get("loader"), str) else "the tuning split"
    where = (f"Thresholds tuned on **{tuned_on}**; precision, recall and intervals below were measured on "
             f"{tuned_on}" + ("." if _split_of(runner, tuned_on) == split else f", not on {split} (see its PR "
                                                                               f"curves)."))
    return "\n".join([where, "", f"| curve | tuned threshold | precision ({tuned_on}) | recall ({tuned_on}) | "
                                 f"choice ({tuned_on}) |", "|---|---|---|---|---|"] + lines)
