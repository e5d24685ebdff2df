"""Run directories that cannot be corrupted from outside or by accident (issue 14 items 1, 3, 7): a resumed copy
never touches the original, one process at a time per run directory, artifacts readable under the umask."""
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dnn_cool_catalyst import Project
from dnn_cool_catalyst.atomic import atomic_write_bytes, atomic_write_json
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.run.lock import LOCK_NAME, acquire, read_holder, release, run_lock
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "_train_script.py"


def make_runner(project_dir, name="run", **kwargs):
    torch.manual_seed(0)
    df = numbers_frame(160, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    return project.runner(numbers_model(define_flows(project), hidden=8), name, batch_size=32, **kwargs)


def digests(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


# -- item 1: checkpoint bookkeeping --------------------------------------------------------------------------------

def test_resuming_a_copied_run_leaves_the_original_byte_identical(tmp_path):
    original = tmp_path / "original"
    make_runner(original).train(num_epochs=2, lr=3e-3)
    index = json.loads((original / "run" / "checkpoints" / "runner.storage.json").read_text())
    assert [entry["logpath"] for entry in index["storage"]] == [os.path.basename(entry["logpath"])
                                                               for entry in index["storage"]]  # relative names
    assert "logdir" not in index
    before = digests(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    # Resuming for several epochs makes the copy drop (delete) checkpoints of earlier epochs, and copy its best.
    make_runner(copy).train(num_epochs=5, lr=3e-3, resume=True)
    assert digests(original) == before
    copied_index = json.loads((copy / "run" / "checkpoints" / "runner.storage.json").read_text())
    assert all((copy / "run" / "checkpoints" / e["logpath"]).is_file() for e in copied_index["storage"])
    assert torch.load(copy / "run" / "checkpoints" / "runner.last.pth", weights_only=True)["epoch_step"] == 5


def test_an_index_of_an_older_version_with_paths_into_its_own_directory_still_resumes(tmp_path):
    runner = make_runner(tmp_path)
    runner.train(num_epochs=1)
    path = Path(runner.checkpoint_dir, "runner.storage.json")
    saved = json.loads(path.read_text())
    saved["storage"] = [{"logpath": os.path.abspath(os.path.join(runner.checkpoint_dir, e["logpath"])),
                         "metric": e["metric"]} for e in saved["storage"]]
    path.write_text(json.dumps(saved))
    make_runner(tmp_path).train(num_epochs=2, resume=True)
    assert torch.load(Path(runner.checkpoint_dir, "runner.last.pth"), weights_only=True)["epoch_step"] == 2


# -- item 3: the run lock ------------------------------------------------------------------------------------------

def _child(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_processes_training_into_one_run_directory_one_runs_the_other_fails_at_once(tmp_path):
    marker = tmp_path / "stalled"
    first = _child(tmp_path, "stall", 3, 2, marker)  # trains, then waits mid-epoch 2 until killed
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert first.poll() is None, first.communicate()[1].decode()[-3000:]
            assert time.time() < deadline, "the first trainer never got going"
            time.sleep(0.1)
        started = time.time()
        second = _child(tmp_path, "full", 3)
        _, err = second.communicate(timeout=120)
        assert second.returncode != 0
        message = err.decode()
        assert f"RunnerError: run directory {tmp_path / 'run'} is in use by pid {first.pid} on host " \
               f"{socket.gethostname()} (train, since" in message, message[-3000:]
        assert time.time() - started < 60  # no waiting for the first one
        assert "epochs.log" in os.listdir(tmp_path)
        epochs = (tmp_path / "epochs.log").read_text().split()
        assert str(second.pid) not in epochs[::2]  # the second never ran an epoch
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    # The killed holder left its lock behind: it is stale (same host, dead pid) and taken over.
    assert read_holder(str(tmp_path / "run" / LOCK_NAME))["pid"] == first.pid
    third = _child(tmp_path, "resume", 3)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err.decode()[-3000:]
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released at the end


def test_the_lock_is_released_when_training_fails(tmp_path):
    runner = make_runner(tmp_path)
    with pytest.raises(RunnerError, match="num_epochs must be a positive int"):
        runner.train(num_epochs=0)
    assert not Path(runner.run_dir, LOCK_NAME).exists()

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom()

    runner.load_checkpoint = explode
    with pytest.raises(Boom):
        runner.infer()
    assert not Path(runner.run_dir, LOCK_NAME).exists()


def test_a_live_holder_blocks_and_a_dead_or_unreadable_one_is_taken_over(tmp_path):
    path = tmp_path / LOCK_NAME
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "purpose": "infer",
                                    "started": "2026-01-01T00:00:00+00:00"}))
        with pytest.raises(RunnerError, match=rf"is in use by pid {sleeper.pid} on host .*\(infer, since 2026"):
            acquire(str(tmp_path), "train")
    finally:
        sleeper.kill()
        sleeper.wait()
    with run_lock(str(tmp_path), "train"):  # the sleeper is dead now: stale
        assert read_holder(str(path))["pid"] == os.getpid()
    assert not path.exists()
    path.write_text(json.dumps({"pid": 1, "host": "another-host.example", "purpose": "train"}))
    with pytest.raises(RunnerError, match="pid 1 on host another-host.example .*delete .*\\.lock"):
        acquire(str(tmp_path), "train")  # another host's process cannot be checked: never taken over
    path.write_text("")  # a creator killed between creating and writing the file...
    with pytest.raises(RunnerError, match="still writing the lock"):
        acquire(str(tmp_path), "train")
    os.utime(path, (time.time() - 60, time.time() - 60))  # ...long ago: stale
    release(acquire(str(tmp_path), "train"))
    assert not path.exists()


def test_nested_use_in_one_process_is_not_a_conflict(tmp_path):
    with run_lock(str(tmp_path), "train"):
        with run_lock(str(tmp_path), "infer"):
            pass
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


# -- item 7: permissions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_respect_the_umask_and_stay_atomic(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        atomic_write_bytes(tmp_path / "a.json", b"{}")  # replacing keeps the mode the umask gives
        assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == mode
        assert (tmp_path / "a.json").read_bytes() == b"{}"
        assert os.listdir(tmp_path) == ["a.json"]  # no temporary file left
    finally:
        os.umask(previous)


def test_a_whole_run_directory_is_readable_by_the_group_under_umask_022(tmp_path):
    previous = os.umask(0o022)
    try:
        runner = make_runner(tmp_path)
        runner.train(num_epochs=1)
        runner.infer(splits=["valid"])
        runner.tune()
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")
             if p.is_file()}
    for name in ("converters.json", "run/flow.json", "run/splits.json", "run/tuned.json",
                 "run/checkpoints/runner.best.pth", "run/checkpoints/runner.storage.json"):
        assert modes[name] == 0o644, (name, oct(modes[name]))
    assert all(mode & 0o044 == 0o044 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}


# -- issue 26: the lock inside one process, a lock that cannot be written or is not a file -------------------------

def test_the_lock_holds_between_threads_and_between_runner_objects_of_one_process(tmp_path):
    owner_a, owner_b = object(), object()
    with run_lock(str(tmp_path), "train", owner=owner_a):
        with run_lock(str(tmp_path), "infer", owner=owner_a):  # the same runner nesting its own calls: fine
            pass
        with pytest.raises(RunnerError, match=r"is in use by another runner or thread of this process \(pid \d+, "
                                              r"train, since"):
            acquire(str(tmp_path), "train", owner=owner_b)  # another runner object, same thread
        caught = []

        def other_thread():
            try:
                acquire(str(tmp_path), "train", owner=owner_a)  # the same object, but from another thread
            except RunnerError as e:
                caught.append(str(e))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(caught) == 1 and "another runner or thread of this process" in caught[0]
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()
    release(acquire(str(tmp_path), "train", owner=owner_b))  # free again for anyone


def test_two_runners_training_one_run_directory_in_two_threads_one_trains_the_other_fails(tmp_path):
    from catalyst.core.callback import Callback, CallbackOrder

    first, second = make_runner(tmp_path), make_runner(tmp_path)
    started, go_on = threading.Event(), threading.Event()

    class Pause(Callback):
        def __init__(self):
            super().__init__(order=CallbackOrder.External)

        def on_epoch_start(self, runner):
            started.set()
            go_on.wait(60)

    thread = threading.Thread(target=lambda: first.train(num_epochs=1, callbacks={"pause": Pause()}))
    thread.start()
    try:
        assert started.wait(120)
        for call in (lambda: second.train(num_epochs=1), lambda: second.infer()):
            with pytest.raises(RunnerError, match="in use by another runner or thread of this process"):
                call()
    finally:
        go_on.set()
        thread.join(120)
    assert torch.load(Path(first.run_dir) / "checkpoints" / "runner.last.pth", weights_only=True)["epoch_step"] == 1
    assert not (Path(first.run_dir) / LOCK_NAME).exists()
    second.train(num_epochs=1)  # once the first is done, the second may


def test_a_lock_that_cannot_be_written_leaves_nothing_and_says_so(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    with pytest.raises(RunnerError, match=r"cannot write the run lock .*\.lock \(No space left on device\).*no lock "
                                          r"was left behind; free space"):
        acquire(str(tmp_path), "train")
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert sorted(os.listdir(tmp_path)) == []  # neither an empty .lock nor a temporary file
    release(acquire(str(tmp_path), "train"))  # space freed: the run goes on at once


@pytest.mark.parametrize("content", ["", json.dumps({"pid": 2 ** 70, "host": socket.gethostname()}),
                                     json.dumps({"pid": True, "host": socket.gethostname()})])
def test_an_empty_or_impossible_lock_is_taken_over_once_its_grace_has_passed(tmp_path, content):
    (tmp_path / LOCK_NAME).write_text(content)
    assert read_holder(str(tmp_path / LOCK_NAME)) is None  # never an OverflowError from os.kill
    with pytest.raises(RunnerError, match="still writing the lock"):
        acquire(str(tmp_path), "train")
    os.utime(tmp_path / LOCK_NAME, (time.time() - 60, time.time() - 60))
    release(acquire(str(tmp_path), "train"))
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_a_lock_that_is_not_a_file_is_refused_clearly_and_left_alone(tmp_path, kind):
    path = tmp_path / LOCK_NAME
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_text("x")
    else:
        (tmp_path / "target").write_text("x")
        os.symlink(tmp_path / "target", path)
    with pytest.raises(RunnerError, match=rf"the run lock .*\.lock is a {kind}, not a lock file this library wrote"
                                          rf".*remove"):
        acquire(str(tmp_path), "train")
    assert os.path.lexists(path) and (kind == "symlink" or (path / "keep").exists())


def test_predict_cli_refuses_an_out_among_the_runs_own_files_and_leaves_them_intact(tmp_path, capsys):
    from dnn_cool_catalyst.prediction.cli import main

    runner = make_runner(tmp_path)
    runner.train(num_epochs=1)
    best = Path(runner.run_dir) / "checkpoints" / "runner.best.pth"
    before = digests(runner.run_dir)
    numbers_frame(5, seed=1)[["number"]].to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(SystemExit) as exited:
        main(["--run-dir", runner.run_dir, "--csv", str(tmp_path / "new.csv"), "--out", str(best)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn-cool-predict: error: --out ") and "as 'checkpoints/runner.best.pth'" in err
    assert digests(runner.run_dir) == before
