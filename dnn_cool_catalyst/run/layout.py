"""Every path and file name under a run directory, in one place: :class:`RunDir`.

Layout of a run directory (each file's format is documented in the module named next to it)::

    <run_dir>/
      .lock                             held while a process trains or infers into the run (run/lock.py)
      flow.json                         the flow the run was trained for; it marks a run directory (run/claim.py)
      run_config.json                   settings and train arguments of a Python run (run/run_config.py)
      config.yml                        the config a ``dnn-cool-run`` run ran, to rebuild it (config/saved.py)
      splits.json                       each split's row labels (run/splits.py)
      fitted_targets.json               state fitted on the training split, e.g. regression scaling (run/fitted.py)
      checkpoints/
        runner.best.pth runner.last.pth   the best and the last epoch (callbacks/checkpoint.py)
        runner.NNNN.pth                   kept epochs; runner.storage.json indexes them (run/checkpoints.py)
        runner.task.NNNN.pth              each task's best weights with train(task_selection=...);
        runner.tasks.json                 which file is whose (callbacks/task_checkpoints.py)
        stages.json                       train(stages=...): the stage names and which are complete
        <stage>/                          a stage's own checkpoints, named as above; the last stage's best and
                                          last are copied to checkpoints/runner.{best,last}.pth at its end
      tensorboard/                      what ``tensorboard --logdir`` is given
        run-<N>/<loader>/                 one TensorBoard run per runner object (run/tensorboard.py)
        run-<N>/<stage>/<loader>/         a stage's loaders
        run-<N>/infer_<split>/            interpretation of the stored outputs of a split
        lr_find/                          lr_find()'s curve
      infer/                            stored outputs (run/artifacts.py)
        index.json
        <split>/manifest.json <split>/<task>.npz
      tuned.json                        tuned decoding parameters (run/tuned.py)
      evaluation_<split>_<gating>.csv   an evaluation table (``gating``: ``gt`` or ``decoded``)
      export/                           ``export()``'s default place; the only folder outputs may be written to

A fold group (``cross_validate()``) is a run directory with, besides ``flow.json``, ``splits.json``,
``tuned.json`` and its ensemble's evaluation tables, ``cv.json`` (settings and each fold's status),
``cv_summary.csv``, ``ensemble/{oof,test}/`` (stored like ``infer/<split>/``) and one run directory per fold,
``fold_<k>/``. The development subset ``dev=N`` of a run is the sibling run directory ``<run_dir>-dev<N>``.

A :class:`RunDir` is a value: it names paths and touches nothing on disk. ``.stage(name)`` is the same run seen
from a stage of ``train(stages=...)`` (its checkpoints and TensorBoard folders are the stage's), ``.fold(k)`` and
``.dev(n)`` are other run directories.

Example:
    >>> run = RunDir("projects/exp1")
    >>> run.checkpoint("best"), run.evaluation("test", "decoded")
    ('projects/exp1/checkpoints/runner.best.pth', 'projects/exp1/evaluation_test_decoded.csv')
    >>> warmup = run.stage("warmup")
    >>> warmup.checkpoint("last"), warmup.stages_json
    ('projects/exp1/checkpoints/warmup/runner.last.pth', 'projects/exp1/checkpoints/stages.json')
    >>> run.with_tensorboard_run("run-3").stage("warmup").tensorboard
    'projects/exp1/tensorboard/run-3/warmup'
    >>> run.fold(2).tuned, run.dev(200).splits, run.infer_split("valid")
    ('projects/exp1/fold_2/tuned.json', 'projects/exp1-dev200/splits.json', 'projects/exp1/infer/valid')
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

LOCK_NAME = ".lock"
RUN_MARKER = "flow.json"  # written into every run directory (and fold group) when its runner is made
RUN_CONFIG_FILE = "run_config.json"
CONFIG_FILE = "config.yml"
SPLITS_FILE = "splits.json"
FITTED_FILE = "fitted_targets.json"
TUNED_FILE = "tuned.json"
CHECKPOINTS_DIR = "checkpoints"
#: The checkpoint callback's ``mode``: its files are ``runner.<which>.pth`` and ``runner.storage.json``.
CHECKPOINT_MODE = "runner"
STAGES_FILE = "stages.json"
TASKS_FILE = "runner.tasks.json"
TENSORBOARD_DIR = "tensorboard"
#: TensorBoard runs are ``run-<N>`` folders of ``tensorboard/``.
RUN_PREFIX = "run-"
LR_FIND_DIR = "lr_find"
INFER_DIR = "infer"
EVALUATION_PREFIX = "evaluation_"
EXPORT_DIR = "export"
CV_FILE = "cv.json"
FOLD_PREFIX = "fold_"
CV_SUMMARY = "cv_summary.csv"
ENSEMBLE_DIR = "ensemble"


def checkpoint_name(which: Union[str, int], mode: str = CHECKPOINT_MODE) -> str:
    """``runner.best.pth``, ``runner.last.pth``; an int is an epoch's own file (``runner.0007.pth``)."""
    return f"{mode}.{which:04d}.pth" if isinstance(which, int) else f"{mode}.{which}.pth"


def storage_index_name(mode: str = CHECKPOINT_MODE) -> str:
    """``runner.storage.json``: the kept epochs and their scores."""
    return f"{mode}.storage.json"


def task_file(epoch: int) -> str:
    """``runner.task.0007.pth``: the name of an epoch's weights kept for a task."""
    return f"runner.task.{epoch:04d}.pth"


# Paths in a checkpoints folder a callback was given (Catalyst hands callbacks a ``logdir``, not a RunDir).
def checkpoint_path(folder: str, which: Union[str, int], mode: str = CHECKPOINT_MODE) -> str:
    return os.path.join(folder, checkpoint_name(which, mode))


def storage_index_path(folder: str, mode: str = CHECKPOINT_MODE) -> str:
    return os.path.join(folder, storage_index_name(mode))


def task_selection_path(folder: str) -> str:
    """``runner.tasks.json``: which kept weights each task uses."""
    return os.path.join(folder, TASKS_FILE)


def task_weights_path(folder: str, name: str) -> str:
    """The kept weights ``name`` (a :func:`task_file` name) of the checkpoints folder ``folder``."""
    return os.path.join(folder, name)


def infer_tensorboard_name(split: str) -> str:
    """``infer_<split>``: the TensorBoard loader of a split's stored outputs."""
    return f"infer_{split}"


def evaluation_name(split: str, gating: str) -> str:
    """``evaluation_<split>_<gating>.csv``."""
    return f"{EVALUATION_PREFIX}{split}_{gating}.csv"


def is_evaluation_name(name: str) -> bool:
    """Whether a file name is an evaluation table's (any split and gating)."""
    return name.startswith(EVALUATION_PREFIX) and name.endswith(".csv")


def fold_name(k: int) -> str:
    """``fold_<k>``: a fold's run directory inside its group."""
    return f"{FOLD_PREFIX}{k}"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring for the layout).

    ``stage_name``: the view of a stage of ``train(stages=...)`` (its checkpoints and TensorBoard subfolders);
    ``tensorboard_run``: the name of the TensorBoard run (``run-<N>``) this view's loaders write under.
    """

    path: str
    stage_name: Optional[str] = None
    tensorboard_run: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- views -----------------------------------------------------------------------------------------------
    def stage(self, name: Optional[str]) -> "RunDir":
        """The same run seen from the stage ``name`` (``None``: the whole run)."""
        return dataclasses.replace(self, stage_name=name)

    def with_tensorboard_run(self, name: Optional[str]) -> "RunDir":
        """This view writing its TensorBoard loaders under ``tensorboard/<name>`` (a ``run-<N>`` claimed by
        :func:`~dnn_cool_catalyst.run.tensorboard.claim_tensorboard_run`)."""
        return dataclasses.replace(self, tensorboard_run=name)

    @classmethod
    def of_tensorboard_run(cls, path: str) -> "RunDir":
        """The view naming the TensorBoard run ``<run_dir>/tensorboard/run-<N>`` (a path
        :func:`~dnn_cool_catalyst.run.tensorboard.tensorboard_run` returned) in its run directory.

        >>> RunDir.of_tensorboard_run("projects/exp1/tensorboard/run-2").stage("s1").tensorboard
        'projects/exp1/tensorboard/run-2/s1'
        """
        root, name = os.path.split(os.fspath(path).rstrip(os.sep))
        if os.path.basename(root) != TENSORBOARD_DIR:
            raise ValueError(f"{path}: not a TensorBoard run (<run_dir>/{TENSORBOARD_DIR}/{RUN_PREFIX}<N>)")
        return cls(os.path.dirname(root), tensorboard_run=name)

    def fold(self, k: int) -> "RunDir":
        """The run directory of fold ``k`` of this fold group."""
        return RunDir(self._file(fold_name(k)))

    def dev(self, n: int) -> "RunDir":
        """The run directory of the development subset of ``n`` rows: the sibling ``<run_dir>-dev<n>``."""
        return RunDir(f"{self.path.rstrip(os.sep)}-dev{n}")

    # -- files of the run ------------------------------------------------------------------------------------
    @property
    def lock(self) -> str:
        return self._file(LOCK_NAME)

    @property
    def flow_json(self) -> str:
        return self._file(RUN_MARKER)

    @property
    def run_config(self) -> str:
        return self._file(RUN_CONFIG_FILE)

    @property
    def config_yml(self) -> str:
        return self._file(CONFIG_FILE)

    @property
    def splits(self) -> str:
        return self._file(SPLITS_FILE)

    @property
    def fitted(self) -> str:
        return self._file(FITTED_FILE)

    @property
    def tuned(self) -> str:
        return self._file(TUNED_FILE)

    def evaluation(self, split: str, gating: str) -> str:
        return self._file(evaluation_name(split, gating))

    @property
    def export(self) -> str:
        return self._file(EXPORT_DIR)

    def exported_model(self, extension: str) -> str:
        """``export/model<extension>``: where ``export()`` writes without a path."""
        return os.path.join(self.export, f"model{extension}")

    # -- checkpoints -----------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> str:
        """``checkpoints/``, or ``checkpoints/<stage>/`` for a stage's view."""
        root = self._file(CHECKPOINTS_DIR)
        return root if self.stage_name is None else os.path.join(root, self.stage_name)

    def checkpoint(self, which: Union[str, int]) -> str:
        """``checkpoints/runner.<which>.pth`` (``"best"``, ``"last"``, an epoch) of this view."""
        return checkpoint_path(self.checkpoints, which)

    def checkpoint_file(self, name: str) -> str:
        """The file ``name`` of this view's checkpoints folder (as an inference manifest records it)."""
        return os.path.join(self.checkpoints, os.path.basename(name))

    @property
    def storage_index(self) -> str:
        return storage_index_path(self.checkpoints)

    @property
    def task_selection(self) -> str:
        return task_selection_path(self.checkpoints)

    @property
    def stages_json(self) -> str:
        """``checkpoints/stages.json``, the whole run's (also from a stage's view)."""
        return os.path.join(self._file(CHECKPOINTS_DIR), STAGES_FILE)

    # -- TensorBoard -----------------------------------------------------------------------------------------
    @property
    def tensorboard_root(self) -> str:
        """``tensorboard/``: what ``tensorboard --logdir`` should be given."""
        return self._file(TENSORBOARD_DIR)

    @property
    def tensorboard(self) -> str:
        """The folder this view's loaders write under: ``tensorboard/run-<N>``, or ``tensorboard/run-<N>/<stage>``
        for a stage's view (``ValueError`` until :meth:`with_tensorboard_run` names the run)."""
        if self.tensorboard_run is None:
            raise ValueError(f"{self.path}: no TensorBoard run named (RunDir.with_tensorboard_run)")
        root = os.path.join(self.tensorboard_root, self.tensorboard_run)
        return root if self.stage_name is None else os.path.join(root, self.stage_name)

    def infer_tensorboard(self, split: str) -> str:
        """``tensorboard/run-<N>/infer_<split>``: the interpretation of a split's stored outputs."""
        return os.path.join(self.tensorboard, infer_tensorboard_name(split))

    @property
    def lr_find(self) -> str:
        return os.path.join(self.tensorboard_root, LR_FIND_DIR)

    # -- stored outputs --------------------------------------------------------------------------------------
    @property
    def infer(self) -> str:
        return self._file(INFER_DIR)

    def infer_split(self, split: str) -> str:
        return os.path.join(self.infer, split)

    # -- fold groups -----------------------------------------------------------------------------------------
    @property
    def cv_json(self) -> str:
        return self._file(CV_FILE)

    @property
    def cv_summary(self) -> str:
        return self._file(CV_SUMMARY)

    @property
    def ensemble(self) -> str:
        return self._file(ENSEMBLE_DIR)
