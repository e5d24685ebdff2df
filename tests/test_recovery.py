"""Reliability: kill-and-resume, atomic artifacts, determinism and safe loading (issue #7; issue 26: kill -9 at
any point of cross_validate and train(stages=...), then the same call again)."""
import ast
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnn_cool_catalyst import Project, atomic
from dnn_cool_catalyst.run.checkpoints import CheckpointError, read_checkpoint
from dnn_cool_catalyst.callbacks.early_stopping import HOLD_FACTOR
from dnn_cool_catalyst.data import ConverterError
from dnn_cool_catalyst.runners import RunnerError
from dnn_cool_catalyst.run.splits import make_splits
from dnn_cool_catalyst.synthetic.numbers import define_flows, numbers_frame, numbers_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "_train_script.py"


def make_runner(project_dir, name="run", samples=160, seed=0, hidden=8, **kwargs):
    torch.manual_seed(seed)
    df = numbers_frame(samples, seed=0)
    project = Project(df, "number", list(df.columns[1:]), project_dir=project_dir)
    flow = define_flows(project)
    return project.runner(numbers_model(flow, hidden=hidden), name, batch_size=32, seed=seed, **kwargs)


def last_state(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoints", "runner.last.pth"), weights_only=True)


# -- interrupted training ------------------------------------------------------------------------------------------

def _child(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process, timeout=300):
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()[-3000:]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    epochs, stall_epoch = 4, 3
    marker = tmp_path / "stalled"
    straight = _child(tmp_path / "straight", "full", epochs)  # runs alongside the doomed one
    doomed = _child(tmp_path / "killed", "stall", epochs, stall_epoch, marker)
    deadline = time.time() + 240
    while not marker.exists():
        assert doomed.poll() is None, doomed.communicate()[1].decode()[-3000:]
        assert time.time() < deadline, "the child never reached the middle of the epoch"
        time.sleep(0.1)
    # Mid-epoch 3: epoch 2's checkpoint is on disk, epoch 3's is not.
    assert last_state(tmp_path / "killed" / "run")["epoch_step"] == stall_epoch - 1
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=60)
    assert doomed.returncode == -signal.SIGKILL
    _finish(_child(tmp_path / "killed", "resume", epochs))
    _finish(straight)

    def epochs_by_process(run):
        lines = [line.split() for line in (tmp_path / run / "epochs.log").read_text().splitlines()]
        return [[int(e) for p, e in lines if p == pid] for pid in dict.fromkeys(p for p, _ in lines)]

    assert epochs_by_process("straight") == [[1, 2, 3, 4]]
    assert epochs_by_process("killed") == [[1, 2, 3], [3, 4]]  # the resume redid only the interrupted epoch
    a, b = last_state(tmp_path / "straight" / "run"), last_state(tmp_path / "killed" / "run")
    assert a["epoch_step"] == b["epoch_step"] == epochs
    assert a["valid_history"] == b["valid_history"]
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key
    tables = [pd.read_csv(tmp_path / run / "run" / "evaluation_test_gt.csv") for run in ("straight", "killed")]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    tuned = [json.loads((tmp_path / run / "run" / "tuned.json").read_text())["params"]
             for run in ("straight", "killed")]
    assert tuned[0] == tuned[1]


def test_resume_restores_the_early_stopping_counter(tmp_path):
    # lr=0 keeps the validation loss constant, so every epoch after the first is "no improvement": with
    # patience 3 an uninterrupted run stops after epoch 4, or, while the untrained model leaves a task at its
    # majority-class baseline, once the hold ends (3 x patience: epoch 10). Catalyst alone would restart the count
    # on resume and stop 2 epochs later.
    straight = make_runner(tmp_path / "a")
    straight.train(num_epochs=20, lr=0.0, early_stopping_patience=3)
    stopped = last_state(straight.run_dir)["epoch_step"]
    assert stopped in (4, 10)
    make_runner(tmp_path / "b").train(num_epochs=2, lr=0.0, early_stopping_patience=3)
    resumed = make_runner(tmp_path / "b")
    resumed.train(num_epochs=20, lr=0.0, early_stopping_patience=3, resume=True)
    assert last_state(resumed.run_dir)["epoch_step"] == stopped
    assert len(last_state(resumed.run_dir)["valid_history"]) == stopped


# -- atomic artifacts ----------------------------------------------------------------------------------------------

class DiskFull(OSError):
    pass


@pytest.fixture
def failing_writes(monkeypatch):
    """While active, every library write puts half its bytes on disk and then fails."""

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        raise DiskFull("No space left on device (simulated)")

    def activate():
        monkeypatch.setattr(atomic, "_write_all", half_then_fail)

    def deactivate():
        monkeypatch.setattr(atomic, "_write_all", lambda f, data: f.write(data))

    return activate, deactivate


def leftovers(directory):
    return [p for p in Path(directory).rglob("*.tmp")]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, failing_writes):
    fail, _ = failing_writes
    target = tmp_path / "state.json"
    atomic.atomic_write_json(target, {"version": 1})
    fail()
    with pytest.raises(DiskFull):
        atomic.atomic_write_json(target, {"version": 2, "padding": "x" * 10_000})
    assert json.loads(target.read_text()) == {"version": 1}
    with pytest.raises(DiskFull):
        atomic.atomic_write_bytes(tmp_path / "new.bin", b"abc" * 1000)
    assert not (tmp_path / "new.bin").exists()
    assert leftovers(tmp_path) == []


def test_a_process_killed_mid_write_leaves_the_old_file_intact(tmp_path):
    # A real crash: the child writes half of the new content, then SIGKILLs itself (no cleanup can run).
    target = tmp_path / "tuned.json"
    target.write_text('{"params": {"old": 1}}')
    code = ("import os, signal, sys; from dnn_cool_catalyst import atomic\n"
            "def die(f, data):\n"
            "    f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "atomic._write_all = die\n"
            "atomic.atomic_write_json(sys.argv[1], {'params': {'new': 'x' * 100000}})\n")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"params": {"old": 1}}
    # The half-written data went to a hidden temporary name, which nothing reads.
    (partial,) = leftovers(tmp_path)
    assert partial.name.startswith(".tuned.json.") and 0 < partial.stat().st_size < 100000


def test_converter_state_is_not_left_truncated(tmp_path, failing_writes):
    fail, heal = failing_writes
    df = numbers_frame(40)
    fail()
    with pytest.raises(DiskFull):
        Project(df, "number", list(df.columns[1:]), project_dir=tmp_path)
    assert not (tmp_path / "converters.json").exists() and leftovers(tmp_path) == []
    heal()
    Project(df, "number", list(df.columns[1:]), project_dir=tmp_path)
    assert "is_even" in json.loads((tmp_path / "converters.json").read_text())["columns"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runner = make_runner(tmp_path_factory.mktemp("atomic"))
    runner.train(num_epochs=1)
    runner.infer()
    runner.tune()
    runner.evaluate()
    return runner


def test_failed_writes_of_run_artifacts_keep_the_previous_versions(trained, failing_writes):
    fail, heal = failing_writes
    run = Path(trained.run_dir)
    before = {p: p.read_bytes() for p in [run / "tuned.json", run / "evaluation_test_gt.csv",
                                          run / "infer" / "index.json", run / "infer" / "test" / "is_even.npz"]}
    fail()
    with pytest.raises(DiskFull):
        trained.tune()
    with pytest.raises(DiskFull):
        trained.evaluate()
    with pytest.raises(DiskFull):
        trained.infer(splits=["test"])
    heal()
    for path, data in before.items():
        assert path.read_bytes() == data, path
    assert leftovers(run) == []
    trained.load_tuned()
    assert len(trained.evaluate()) > 0  # the kept artifacts are complete and still read back


def test_failed_checkpoint_write_keeps_the_last_good_checkpoint(tmp_path, failing_writes):
    fail, heal = failing_writes
    make_runner(tmp_path).train(num_epochs=1)
    checkpoints = Path(tmp_path) / "run" / "checkpoints"
    good = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    fail()
    with pytest.raises(DiskFull):
        make_runner(tmp_path).train(num_epochs=2, resume=True)
    heal()
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir() if p.name in good} == good
    assert leftovers(checkpoints) == []
    assert read_checkpoint(str(checkpoints / "runner.last.pth"))["epoch_step"] == 1
    resumed = make_runner(tmp_path)
    resumed.train(num_epochs=2, resume=True)
    assert last_state(resumed.run_dir)["epoch_step"] == 2


# -- determinism ---------------------------------------------------------------------------------------------------

def _evaluate(project_dir, seed):
    runner = make_runner(project_dir, seed=seed)
    runner.train(num_epochs=2, lr=3e-3)
    runner.infer(splits=["valid", "test"])
    runner.tune()
    return runner, runner.evaluate()


def test_same_seed_same_evaluation_and_different_seed_different_splits(tmp_path):
    first, table_a = _evaluate(tmp_path / "a", seed=0)
    second, table_b = _evaluate(tmp_path / "b", seed=0)
    pd.testing.assert_frame_equal(table_a, table_b, check_exact=True)
    assert {k: v.tolist() for k, v in first.splits.items()} == {k: v.tolist() for k, v in second.splits.items()}
    for key, value in last_state(first.run_dir)["model_state_dict"].items():
        assert torch.equal(value, last_state(second.run_dir)["model_state_dict"][key]), key
    other = make_runner(tmp_path / "c", seed=1)
    assert {k: v.tolist() for k, v in other.splits.items()} != {k: v.tolist() for k, v in first.splits.items()}
    assert sorted(np.concatenate(list(other.splits.values()))) == sorted(np.concatenate(list(first.splits.values())))
    assert make_splits(500, seed=3) == make_splits(500, seed=3) != make_splits(500, seed=4)


# -- safe loading --------------------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this would create a file: the proof that a load executed code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    runner = make_runner(tmp_path)
    runner._materialize()
    marker = tmp_path / "code_ran"
    path = tmp_path / "run" / "checkpoints" / "runner.best.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model_state_dict": runner.model.state_dict(), "extra": _Payload(marker)}, path)
    with pytest.raises(RunnerError, match=re.escape(str(path)) + ".*weights-only"):
        runner.load_checkpoint("best")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_checkpoint(str(path))
    assert not marker.exists()


def test_inference_outputs_with_pickled_objects_are_refused(trained):
    path = Path(trained.infer_dir) / "valid" / "is_even.npz"
    original = path.read_bytes()
    try:
        np.savez(path, logits=np.array([_Payload("never")], dtype=object))
        with pytest.raises(RunnerError, match=re.escape(str(path)) + ".*run runner.infer\\(\\) again"):
            trained.tune()
    finally:
        path.write_bytes(original)


# Unpickling that is not about files: DDP peers exchange metric states in memory (trusted processes of one job).
IN_MEMORY_PICKLE = {("distributed.py", "all_gather")}


def _unsafe_loads(tree, filename):
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) \
                    and isinstance(child.func.value, ast.Name):
                call = f"{child.func.value.id}.{child.func.attr}"
                keywords = {k.arg: getattr(k.value, "value", None) for k in child.keywords}
                if call == "torch.load" and keywords.get("weights_only") is not True:
                    found.append(f"{filename}:{child.lineno} torch.load without weights_only=True")
                if call in ("np.load", "numpy.load") and keywords.get("allow_pickle") is not False:
                    found.append(f"{filename}:{child.lineno} np.load without allow_pickle=False")
                if call in ("pickle.load", "pickle.loads", "dill.load", "cloudpickle.load") \
                        and (filename, name) not in IN_MEMORY_PICKLE:
                    found.append(f"{filename}:{child.lineno} {call}")
            visit(child, name)

    visit(tree, None)
    return found


def test_library_never_unpickles_what_it_reads():
    # Every read of our own artifacts goes through JSON, NumPy without pickle, or weights-only torch.load.
    planted = ast.parse("torch.load(p)\nnp.load(p)\npickle.load(f)\ntorch.load(p, weights_only=True)")
    assert len(_unsafe_loads(planted, "planted.py")) == 3  # the checker itself sees each kind
    offenders = []
    for source in sorted((ROOT / "dnn_cool_catalyst").rglob("*.py")):
        offenders += _unsafe_loads(ast.parse(source.read_text()), source.name)
    assert offenders == []


def test_converter_state_is_plain_json(tmp_path):
    df = numbers_frame(40)
    Project(df, "number", list(df.columns[1:]), project_dir=tmp_path)
    (tmp_path / "converters.json").write_text('{"columns": {"is_even": {"role": "output", "type": "binary", '
                                              '"state": {"__reduce__": "os.system"}}}}')
    with pytest.raises(ConverterError, match="is_even.*converters.json"):
        Project(df, "number", list(df.columns[1:]), project_dir=tmp_path)


# -- NaN guard -----------------------------------------------------------------------------------------------------

def _guard_runner(step, logits, loss, index):
    from types import SimpleNamespace

    return SimpleNamespace(batch={"index": index, "outputs": {"logits": logits}}, batch_metrics={"loss": loss},
                           loader_batch_step=step, loader_batch_size=4, loader_batch_len=3, loader_key="train",
                           epoch_step=7, dataset=None)


def _batches(flow, poison_step=None, poison_task=None, poison_loss=False):
    for step in (1, 2, 3):
        logits = {name: torch.randn(4) for name in flow.tasks}
        if step == poison_step and poison_task:
            logits[poison_task][2] = float("inf")
        loss = torch.tensor(float("nan") if step == poison_step and poison_loss else 0.5)
        yield _guard_runner(step, logits, loss, torch.arange(4) + 10 * step)


@pytest.fixture
def no_host_reads(monkeypatch):
    """Any device->host read of a tensor value fails while active."""
    def forbid(*args, **kwargs):
        raise AssertionError("host read of a tensor value inside the training step")

    def activate():
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu"):
            monkeypatch.setattr(torch.Tensor, name, forbid)

    return activate, monkeypatch.undo


def test_nan_guard_reads_nothing_per_batch_and_names_the_first_bad_task_and_batch(no_host_reads):
    from dnn_cool_catalyst.callbacks.nan_guard import NanGuardCallback, NonFiniteError
    from helpers import numbers_flows

    flow, _ = numbers_flows()
    for read_on_cpu in (False, True):  # the device path (CPU tensors standing in), then the CPU's own
        guard = NanGuardCallback(flow)
        guard.read_on_cpu = read_on_cpu
        forbid, allow = no_host_reads
        runners = list(_batches(flow, poison_step=2, poison_task="predict_positive"))
        if not read_on_cpu:
            forbid()
        for runner in runners:
            guard.on_batch_end(runner)
        allow()
        with pytest.raises(NonFiniteError, match="task 'numerical_flow.predict_positive' produced NaN or inf logits "
                                                 "in loader 'train', epoch 7, batch 2 of 3, samples at dataset "
                                                 "positions \\[22\\]"):
            guard.on_loader_end(runners[-1])
        clean = NanGuardCallback(flow)
        clean.read_on_cpu = read_on_cpu
        for runner in _batches(flow):
            clean.on_batch_end(runner)
        clean.on_loader_end(runner)  # nothing to report
        assert clean._step is None or int(clean._step) < 0


def test_nan_guard_reports_a_bad_loss_and_can_check_every_n_batches():
    from dnn_cool_catalyst.callbacks.nan_guard import NanGuardCallback, NonFiniteError
    from helpers import numbers_flows

    flow, _ = numbers_flows()
    guard = NanGuardCallback(flow, check_every=2)
    runners = iter(_batches(flow, poison_step=1, poison_loss=True))
    guard.on_batch_end(next(runners))  # batch 1 is bad, but is only read at batch 2
    with pytest.raises(NonFiniteError, match="the total loss is NaN or inf.*batch 1 of 3.*\\[10, 11, 12, 13\\]"):
        guard.on_batch_end(next(runners))


def test_nan_guard_without_gathered_logits_still_checks_the_loss():
    from dnn_cool_catalyst.callbacks.nan_guard import NanGuardCallback, NonFiniteError
    from helpers import numbers_flows

    flow, _ = numbers_flows()
    guard = NanGuardCallback(flow)
    for runner in _batches(flow, poison_step=3, poison_loss=True):
        del runner.batch["outputs"]  # as when the loss is reduced on DataParallel replicas
        guard.on_batch_end(runner)
    with pytest.raises(NonFiniteError, match="the total loss.*batch 3 of 3"):
        guard.on_loader_end(runner)


# -- kill -9 anywhere in cross_validate / train(stages=...), then the same call again (issue 26, bug 2) --------------

KILL_SCRIPT = ROOT / "tests" / "_kill_script.py"
# Bookkeeping that differs by design between two runs: times, logs of the epochs each process ran (TensorBoard,
# Catalyst's CSV logger), the lock's takeover guard (left where a killed holder's lock was taken over).
NOT_COMPARED = ("tensorboard", "csv_logger", "logs", "run_config.json", ".lock.takeover")


def _kill_child(project_dir, mode, point=""):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(KILL_SCRIPT), str(project_dir), mode, point], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _results(run_dir: Path) -> dict:
    """The run's files, paths written into them made relative to the run (infer/index.json names its checkpoint)."""
    return {str(p.relative_to(run_dir)): p.read_bytes().replace(str(run_dir).encode(), b"<run>")
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and not set(p.relative_to(run_dir).parts) & set(NOT_COMPARED)}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_file(name: str, a: bytes, b: bytes) -> bool:
    """Byte for byte; a checkpoint value for value (pickle shares equal strings by object identity, so two equal
    states may differ in a few bytes)."""
    if a == b:
        return True
    if name.endswith("manifest.json"):  # it names its checkpoint by the file's sha256: those bytes may differ too
        a, b = json.loads(a), json.loads(b)
        a["checkpoint"].pop("sha256"), b["checkpoint"].pop("sha256")
        return a == b
    return name.endswith(".pth") and _equal(torch.load(io.BytesIO(a), weights_only=True),
                                            torch.load(io.BytesIO(b), weights_only=True))


def _killed_then_rerun_equals_uninterrupted(tmp_path, mode, points):
    straight = _kill_child(tmp_path / "straight", mode)
    doomed = {point: _kill_child(tmp_path / point, mode, point) for point in points}
    for point, process in doomed.items():
        _, err = process.communicate(timeout=600)
        assert process.returncode == -signal.SIGKILL, (point, err.decode()[-3000:])
    _finish(straight, timeout=600)
    reruns = {point: _kill_child(tmp_path / point, mode) for point in points}
    for process in reruns.values():
        _finish(process, timeout=600)
    expected = _results(tmp_path / "straight" / "run")
    for point in points:
        got = _results(tmp_path / point / "run")
        assert sorted(got) == sorted(expected), (point, set(got) ^ set(expected))
        differ = [name for name in expected if not _same_file(name, got[name], expected[name])]
        assert not differ, (point, differ)
    return expected


def test_cross_validate_killed_anywhere_then_run_again_equals_an_uninterrupted_run(tmp_path):
    expected = _killed_then_rerun_equals_uninterrupted(tmp_path, "cv", ["train", "after_train", "infer", "tune",
                                                                        "ensemble"])
    for k in range(2):  # the folds stopped early: resuming one must not train it on
        state = torch.load(io.BytesIO(expected[f"fold_{k}/checkpoints/runner.last.pth"]), weights_only=True)
        assert state["early_stopped"] is True and state["epoch_step"] < 20  # EPOCHS in _kill_script.py
    assert "cv_summary.csv" in expected and "ensemble/test/manifest.json" in expected


def test_staged_training_killed_anywhere_then_run_again_equals_an_uninterrupted_run(tmp_path):
    expected = _killed_then_rerun_equals_uninterrupted(tmp_path, "stages", ["train", "stage_end", "after_train",
                                                                            "infer", "tune"])
    state = torch.load(io.BytesIO(expected["checkpoints/warm/runner.last.pth"]), weights_only=True)
    assert state["early_stopped"] is True and state["epoch_step"] < 12  # the first stage stopped early
    assert "evaluation_test_gt.csv" in expected


def test_resuming_a_run_that_stopped_early_trains_no_further_epoch(tmp_path):
    straight = make_runner(tmp_path / "a")
    straight.train(num_epochs=10, lr=0.0, early_stopping_patience=2)  # lr 0: no improvement after epoch 1
    before = last_state(straight.run_dir)
    # lr 0: a task stays at its trivial baseline, so stopping is held to its cap (HOLD_FACTOR x patience epochs
    # without improvement after epoch 1)
    assert before["epoch_step"] == 1 + HOLD_FACTOR * 2 and before["early_stopped"] is True
    files = {p.name: p.read_bytes() for p in Path(straight.run_dir, "checkpoints").iterdir()}
    make_runner(tmp_path / "a").train(num_epochs=10, lr=0.0, early_stopping_patience=2, resume=True)
    assert {p.name: p.read_bytes() for p in Path(straight.run_dir, "checkpoints").iterdir()} == files
