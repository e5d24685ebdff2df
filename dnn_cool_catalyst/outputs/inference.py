"""``infer()``: a checkpoint's outputs on every split, stored under ``infer/`` with a manifest, and read back only
when that manifest still matches the split, the files and the checkpoint (see ``artifacts.py``); functions over a
runner.

``load_checkpoint("best")`` of a run that selected per task keeps the model taking each task from its own best
epoch on the runner (``runner._selected_model``) for :func:`inference_model`.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Dict, Iterable

import torch

from .. import compat
from ..run.checkpoints import CheckpointError, is_inside, read_checkpoint
from ..errors import RunnerError
from ..measures.evaluation import split_masks
from ..graph.module import decode_condition_sources
from ..interpretation.samples import SampleSource
from ..kept_batches import keep
from ..parallel import gather_samples, to_device
from ..parallel import world as parallel_world
from ..run import artifacts
from ..training import task_selection
from ..run.lock import run_lock
from ..run.claim import check_own_folder
from ..run.splits import SPLITS
from ..training.engine import is_ddp
from . import tta as tta_of

if TYPE_CHECKING:
    from ..runners.runner import DnnCoolSupervisedRunner


def load_checkpoint(runner: "DnnCoolSupervisedRunner", which: str = "best") -> str:
    """Load ``checkpoints/runner.<which>.pth`` (``"best"`` or ``"last"``, or an epoch such as ``"0003"``) into
    ``runner.model`` and return its path. Only the run directory's own checkpoints are read (a symlink leading
    elsewhere is refused), with ``weights_only`` loading; a missing, damaged or mismatched file is a
    :class:`~dnn_cool_catalyst.errors.RunnerError`. ``infer()`` calls it for you.

    Example:
        >>> import tempfile
        >>> from dnn_cool_catalyst import Project
        >>> from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model
        >>> project = Project(numbers_frame(60, seed=0), "number", ["is_interesting", "is_even",
        ...                   "predict_positive", "multiple_three"], project_dir=tempfile.mkdtemp())
        >>> runner = project.runner(numbers_model(define_flows(project), hidden=4), "exp")
        >>> runner.load_checkpoint()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dnn_cool_catalyst.errors.RunnerError: no checkpoint .../exp/checkpoints/runner.best.pth; train first (runner.train())
        >>> path = runner.train(num_epochs=1, verbose=False).load_checkpoint("last")
        >>> os.path.relpath(path, runner.run_dir)
        'checkpoints/runner.last.pth'
    """
    path = runner.run_layout.checkpoint(str(which))  # str: an int stays as spelled, not padded
    check_own_folder(runner.run_dir, runner.checkpoint_dir)
    if not os.path.exists(path):
        raise RunnerError(f"no checkpoint {path}; train first (runner.train())")
    if not is_inside(path, runner.checkpoint_dir):
        raise RunnerError(f"checkpoint {path} leads outside {runner.checkpoint_dir} (a symlink?); only the run "
                          f"directory's own checkpoints are read")
    runner._materialize()
    try:
        state = read_checkpoint(path)
    except CheckpointError as e:
        raise RunnerError(str(e)) from None
    try:
        runner.model.load_state_dict(state["model_state_dict"])
    except (KeyError, RuntimeError) as e:
        raise RunnerError(f"checkpoint {path} does not fit this model: {e}") from None
    # train(task_selection=...): "best" is each task at its own best epoch (training/task_selection.py).
    runner._selected_model = (task_selection.selected_model(runner.model, runner.flow.graph, runner.checkpoint_dir)
                              if which == "best" else None)
    return path


def inference_model(runner: "DnnCoolSupervisedRunner") -> torch.nn.Module:
    """The model ``infer``, ``predict`` and ``export`` run after :func:`load_checkpoint`: ``runner.model``, or,
    for the best checkpoint of a run that selected per task, the model taking each task from its own best
    epoch (:class:`~dnn_cool_catalyst.graph.selected.TaskSelectedModel`)."""
    return runner._selected_model if runner._selected_model is not None else runner.model


def infer(runner: "DnnCoolSupervisedRunner", splits: Iterable[str] = SPLITS, checkpoint: str = "best",
          verbose: bool = False, engine=None, tta=None) -> dict:
    """Run the ``checkpoint`` weights on every split and store logits, activations, targets, both masks and
    per-sample losses under ``infer/``. Decoded masks use the tuned thresholds when ``tuned.json`` exists.
    Returns the index (split → number of samples).

    With a ``DistributedDataParallelEngine`` (given here or to the constructor) the engine's processes each
    infer a slice of every batch; rank 0 gathers the samples (padding dropped, in split order) and writes.
    The run directory is locked meanwhile, as in :meth:`~dnn_cool_catalyst.runners.DnnCoolSupervisedRunner.train`.

    ``tta=["hflip", ...]``: test-time augmentation, activations averaged over the original and each view
    (README, "Augmentation, test-time augmentation and class balancing"; ``outputs/tta.py``)."""
    with tta_of.tta_context(runner, tta), run_lock(runner.run_dir, "infer", enabled=runner._writes_files(),
                                                   owner=runner):
        return _infer_job_or_local(runner, list(splits), checkpoint, verbose, engine)


def _infer_job_or_local(runner: "DnnCoolSupervisedRunner", splits, checkpoint: str, verbose: bool, engine) -> dict:
    engine = engine or runner._engine_arg
    if is_ddp(engine):
        # The spawned processes get the runner (and with it the test-time augmentation plan) pickled.
        engine.spawn(functools.partial(_infer_local, runner, engine, splits, checkpoint))
        index = artifacts.read_index(runner.infer_dir)
    else:
        index = _infer(runner, splits, checkpoint, verbose)
    runner.log_interpretation(splits)  # PR curves, best/worst samples, trees
    return index


def _infer_local(runner: "DnnCoolSupervisedRunner", engine, splits, checkpoint: str, local_rank: int,
                 world_size: int) -> None:
    """One DDP process of :func:`infer` (what ``engine.spawn`` runs)."""
    compat.apply()
    engine.setup(local_rank=local_rank, world_size=world_size)
    try:
        _infer(runner, splits, checkpoint, verbose=False, device=engine.device)
    finally:
        engine.cleanup()


def inference_device(runner: "DnnCoolSupervisedRunner") -> torch.device:
    """The engine's device when the runner was given one (a CPU engine infers on the CPU), else CUDA if any."""
    return getattr(runner._engine_arg, "device", None) or torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()  # without it every kept output would hold its batch's whole autograd graph
def _infer(runner: "DnnCoolSupervisedRunner", splits, checkpoint: str, verbose: bool, device=None) -> dict:
    rank, world = parallel_world()
    runner._use_fitted_targets()
    path = runner.load_checkpoint(checkpoint)
    # The digest of the weights the outputs come from; readers compare it with the checkpoint then on disk.
    checkpoint_sha256 = task_selection.checkpoint_digest(path) if rank == 0 else None
    runner.load_tuned_if_any()
    device = device or inference_device(runner)
    model = runner.inference_model().to(device).eval()
    graph = runner.flow.graph
    try:  # splits inferred earlier stay listed; the ones run now are overwritten
        earlier = artifacts.read_index(runner.infer_dir)["splits"]
    except (FileNotFoundError, KeyError, ValueError):
        earlier = {}
    index = {"checkpoint": path, "splits": dict(earlier), "fields": list(artifacts.FIELDS)}
    for split in splits:
        loader = runner._placed_loader(runner.split_loader(split), device, rank, world)
        if verbose:
            from tqdm.auto import tqdm
            loader = tqdm(loader, desc=f"infer {split}")
        collected = {name: {"logits": [], "targets": [], "available": []} for name in graph.tasks}
        positions, valid = [], []
        for batch in loader:
            inputs = to_device(batch["inputs"], device)
            n = batch["index"].shape[0]
            logits = tta_of.batch_logits(runner, model, inputs, n)
            for name in graph.tasks:
                keep(collected[name]["logits"], logits[name].float().cpu())
                keep(collected[name]["targets"], batch["targets"][name].cpu())
                keep(collected[name]["available"], batch["available"][name].cpu())
            keep(positions, batch["index"].cpu())
            keep(valid, batch["valid"].cpu())
        stored = _finish_split(runner.flow, collected, torch.cat(positions))
        if world > 1:
            stored = _gather_split(stored, torch.cat(valid), runner.splits[split])
        if rank == 0:
            source = SampleSource(runner.dataset)
            positions = next(iter(stored.values()))["index"].tolist()
            artifacts.save_split(runner.infer_dir, split, stored, os.path.basename(path), checkpoint_sha256,
                                 source.row_ids(positions), **tta_of.tta_manifest(runner))
        index["splits"][split] = int(len(runner.splits[split]))
    if rank == 0:
        artifacts.write_index(runner.infer_dir, index)
    return index


def stored_outputs(runner: "DnnCoolSupervisedRunner", split: str):
    """The stored outputs of ``split`` as ``(logits, targets, available, fields)``, after checking that they
    are complete, are this split's rows and come from the checkpoint now on disk (see run/artifacts.py).
    Anything else is one RunnerError saying to run infer() again."""
    try:
        data = checked_outputs(runner, split)
    except artifacts.ArtifactError as e:
        raise RunnerError(str(e)) from None
    return ({k: v["logits"] for k, v in data.items()}, {k: v["targets"] for k, v in data.items()},
            {k: v["available"] for k, v in data.items()}, data)


def checked_outputs(runner: "DnnCoolSupervisedRunner", split: str) -> Dict[str, Dict[str, torch.Tensor]]:
    """The stored fields of ``split`` per task (see :func:`stored_outputs`), read after the manifest was checked."""
    again = artifacts.AGAIN
    split_dir = runner.run_layout.infer_split(split)
    try:
        manifest = artifacts.read_manifest(runner.infer_dir, split, list(runner.flow.tasks),
                                           len(runner.splits.get(split, ())))
    except FileNotFoundError:
        if os.path.isdir(split_dir):
            raise RunnerError(f"the inference outputs in {split_dir} are incomplete (no {artifacts.MANIFEST}: "
                              f"infer() was interrupted, or they were written by an older version); "
                              f"{again}") from None
        if not os.path.isdir(runner.infer_dir):
            raise RunnerError(f"no inference outputs in {runner.infer_dir}; run runner.infer() first") from None
        names = os.listdir(runner.infer_dir)
        if any(n.startswith((f".{split}.new-", f".{split}.old-")) for n in names):
            raise RunnerError(f"the inference outputs of split '{split}' in {runner.infer_dir} are incomplete "
                              f"(infer() was interrupted while writing them); {again}") from None
        known = f" (splits are {list(runner.splits)})" if split not in runner.splits else ""
        inferred = sorted(n for n in names if not n.startswith(".")
                          and os.path.isfile(artifacts.manifest_path(runner.run_layout.infer_split(n))))
        raise RunnerError(f"split '{split}' was not inferred; inferred splits: {inferred}{known}") from None
    manifest_path = artifacts.manifest_path(split_dir)
    rows = manifest["rows"]
    expected = runner.splits.get(split)
    if expected is None or sorted(rows["positions"]) != sorted(int(p) for p in expected):
        raise RunnerError(f"the inference outputs in {split_dir} are not those of split '{split}': their rows "
                          f"(field 'rows.positions' of {manifest_path}) differ from the split's; {again}")
    source = SampleSource(runner.dataset)
    labels = [artifacts.row_label(label) for label in source.row_ids(rows["positions"])]
    if labels != rows["labels"]:
        first = next(i for i, (a, b) in enumerate(zip(labels, rows["labels"])) if a != b)
        raise RunnerError(f"the inference outputs in {split_dir} were computed for other rows: position "
                          f"{rows['positions'][first]} holds row {labels[first]!r} now but "
                          f"{rows['labels'][first]!r} in field 'rows.labels' of {manifest_path} (a changed "
                          f"or reordered DataFrame); {again}")
    checkpoint = runner.run_layout.checkpoint_file(manifest["checkpoint"]["file"])
    try:
        current = task_selection.checkpoint_digest(checkpoint)
    except FileNotFoundError:
        raise RunnerError(f"the inference outputs in {split_dir} were computed from {checkpoint}, which no "
                          f"longer exists, so they cannot be checked against the model; {again}") from None
    if current != manifest["checkpoint"]["sha256"]:
        raise RunnerError(f"the inference outputs in {split_dir} are stale: {checkpoint} changed since they were "
                          f"written (retrained?); {again}")
    data = getattr(runner.dataset, "data", None)
    targets_like = getattr(data, "targets", None) if data is not None else None
    return artifacts.load_split(runner.infer_dir, split, list(runner.flow.tasks), manifest,
                                targets_like if isinstance(targets_like, dict) else None)


def _gather_split(stored, valid, split_indices) -> Dict[str, Dict[str, torch.Tensor]]:
    """Every process's stored rows of a split, padding dropped, in the split's order (as one process stores it)."""
    position_in_split = torch.full((int(max(split_indices)) + 1,), -1, dtype=torch.long)
    position_in_split[torch.as_tensor(split_indices)] = torch.arange(len(split_indices))
    any_task = next(iter(stored.values()))
    key = position_in_split[any_task["index"]]
    fields = {(task, field): value for task, values in stored.items() for field, value in values.items()}
    flat = gather_samples({str(i): value for i, value in enumerate(fields.values())}, key=key, valid=valid)
    gathered = {task: {} for task in stored}
    for i, (task, field) in enumerate(fields):
        gathered[task][field] = flat[str(i)]
    return gathered


def _finish_split(flow, collected, positions) -> Dict[str, Dict[str, torch.Tensor]]:
    """Concatenate a split's batches and derive activations, both masks and per-sample losses."""
    logits = {k: torch.cat(v["logits"]) for k, v in collected.items()}
    targets = {k: torch.cat(v["targets"]) for k, v in collected.items()}
    available = {k: torch.cat(v["available"]) for k, v in collected.items()}
    gt = split_masks(flow, logits, targets, available, "gt")
    n = positions.shape[0]
    reach = flow.graph.masks(decode_condition_sources(flow.graph, logits), None, n)
    stored = {}
    for name, task in flow.tasks.items():
        stored[name] = {
            "logits": logits[name], "activations": task.activation(logits[name]), "targets": targets[name],
            "available": available[name], "mask_gt": gt[name], "mask_decoded": reach[name],
            "per_sample_loss": task.per_sample_loss(logits[name], targets[name], gt[name]), "index": positions,
        }
    return stored
