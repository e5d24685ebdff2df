"""Child process for tests/test_recovery.py's kill-and-rerun checks (not collected: no ``test_`` prefix).

    python tests/_kill_script.py PROJECT_DIR cv|stages [KILL_POINT]

``cv`` runs ``runner.cross_validate`` (2 folds), ``stages`` runs ``runner.train(stages=..., resume=True)`` then
infers, tunes and evaluates; both are set up to stop early. With ``KILL_POINT`` the process SIGKILLs itself there
(no ``finally``, no ``atexit``, as ``kill -9`` from outside), the first time it gets there:

- ``train``: in the middle of the second epoch's training loader (the first training of the call);
- ``after_train``: when the first ``infer()`` starts (the first fold, or the staged run, has trained);
- ``infer``: inside the first ``infer()``, its outputs computed and not yet stored;
- ``tune``: right after the first ``tune()`` has written ``tuned.json``;
- ``stage_end``: after the first stage has trained, before ``stages.json`` records it as complete;
- ``ensemble``: when the fold ensemble starts tuning on the out-of-fold predictions.
"""
import functools
import os
import signal
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from catalyst.core.callback import Callback, CallbackOrder  # noqa: E402

from _train_script import numbers_run  # noqa: E402  (this folder is the script's sys.path[0])
from dnn_cool_catalyst.run import artifacts  # noqa: E402
from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner  # noqa: E402
from dnn_cool_catalyst.experiments import cross_validation  # noqa: E402
from dnn_cool_catalyst.training import stages as stages_module  # noqa: E402

SAMPLES, HIDDEN, BATCH, LR, EPOCHS, PATIENCE = 160, 8, 32, 0.3, 20, 1
STAGES = [{"name": "warm", "num_epochs": 12}, {"name": "all", "num_epochs": 4, "lr": 0.01}]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillMidEpoch(Callback):
    def __init__(self):
        super().__init__(order=CallbackOrder.External)

    def on_batch_end(self, runner):
        if runner.is_train_loader and runner.epoch_step == 2 and runner.loader_batch_step == 2:
            die()


def kill_on_first_call(owner, name: str, after: bool = False, call: int = 1) -> None:
    """Replace ``owner.name`` with a wrapper that dies on its ``call``-th call (before it runs, or after)."""
    original, calls = getattr(owner, name), []

    @functools.wraps(original)  # inspect.signature(runner.tune) still sees tune's parameters
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call and not after:
            die()
        result = original(*args, **kwargs)
        if len(calls) == call and after:
            die()
        return result

    setattr(owner, name, wrapper)


def arm(point: str) -> dict:
    """Set up the kill at ``point``; returns the extra train() arguments it needs."""
    if point == "train":
        return {"callbacks": {"kill": KillMidEpoch()}}
    if point == "after_train":
        kill_on_first_call(DnnCoolSupervisedRunner, "infer")
    elif point == "infer":
        kill_on_first_call(artifacts, "save_split")
    elif point == "tune":
        kill_on_first_call(DnnCoolSupervisedRunner, "tune", after=True)
    elif point == "stage_end":
        kill_on_first_call(stages_module.StagedRun, "_write_plan", call=2)
    elif point == "ensemble":
        kill_on_first_call(cross_validation, "_tune_ensemble")
    elif point:
        raise SystemExit(f"unknown kill point {point!r}")
    return {}


def main(project_dir: str, mode: str, point: str = "") -> None:
    runner = numbers_run(project_dir, SAMPLES, HIDDEN, BATCH)
    extra = arm(point)
    if mode == "cv":
        runner.cross_validate(folds=2, num_epochs=EPOCHS, lr=LR, early_stopping_patience=PATIENCE, **extra)
    else:
        runner.train(stages=STAGES, lr=LR, early_stopping_patience=PATIENCE, resume=True, **extra)
        runner.infer()
        runner.tune()
        runner.evaluate()


if __name__ == "__main__":
    main(*sys.argv[1:])
