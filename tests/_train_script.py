"""Child process for tests/test_recovery.py (not collected: no ``test_`` prefix).

    python tests/_train_script.py PROJECT_DIR full|resume EPOCHS
    python tests/_train_script.py PROJECT_DIR stall EPOCHS STALL_EPOCH MARKER

``full`` trains from scratch, ``resume`` continues from ``runner.last.pth``; both then infer, tune and evaluate
(the runner writes ``evaluation_test_gt.csv``). ``stall`` trains from scratch and, in the middle of epoch
``STALL_EPOCH``'s training loader, creates ``MARKER`` and sleeps until the parent SIGKILLs it.
"""
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from catalyst.core.callback import Callback, CallbackOrder  # noqa: E402

from dnn_cool_catalyst import Project  # noqa: E402
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model  # noqa: E402

SAMPLES, HIDDEN, BATCH, LR = 240, 16, 32, 3e-3


class StallMidEpoch(Callback):
    """Signals the parent after the second training batch of ``epoch``, then waits to be killed."""

    def __init__(self, epoch: int, marker: str):
        super().__init__(order=CallbackOrder.External)
        self.epoch, self.marker = epoch, marker

    def on_batch_end(self, runner):
        if runner.is_train_loader and runner.epoch_step == self.epoch and runner.loader_batch_step == 2:
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(1)


class EpochLog(Callback):
    """Appends each epoch this process runs to ``<project_dir>/epochs.log``, so the parent can tell a resume
    from a restart (a restart from scratch would also end with the same weights)."""

    def __init__(self, path: str):
        super().__init__(order=CallbackOrder.External)
        self.path = path

    def on_epoch_start(self, runner):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {runner.epoch_step}\n")


def numbers_run(project_dir: str, samples: int, hidden: int, batch: int):
    """The seeded numbers project and its runner ``run`` that this script and ``_kill_script.py`` train."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    df = numbers_frame(samples, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=hidden), "run", batch_size=batch, seed=0)


def main(project_dir: str, mode: str, epochs: int, *stall) -> None:
    runner = numbers_run(project_dir, SAMPLES, HIDDEN, BATCH)
    callbacks = {"epochs": EpochLog(os.path.join(project_dir, "epochs.log"))}
    if mode == "stall":
        callbacks["stall"] = StallMidEpoch(int(stall[0]), stall[1])
    runner.train(num_epochs=epochs, lr=LR, resume=mode == "resume", callbacks=callbacks)
    runner.infer(checkpoint="last")
    runner.tune()
    runner.evaluate()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
