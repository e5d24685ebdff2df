"""The compat patches that make Catalyst 22.4 work on accelerate 1.x as on 0.28-0.33: run under whichever version
is installed (the suite is run on both: 0.33 in the main environment, 1.x in a second one)."""
import os
import subprocess
import sys
import tempfile

import accelerate
import pytest
import torch
from catalyst import dl
from torch.utils.data import DataLoader, TensorDataset

from dnn_cool_catalyst import compat
from dnn_cool_catalyst.training.engine import default_engine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAJOR = int(accelerate.__version__.split(".")[0])


def test_the_patches_that_accelerate_1_needs_are_applied_there():
    compat.apply()
    applied = compat.applied()
    if MAJOR >= 1:
        assert {"engine_xla_enum", "ddp_cpu_processes", "loader_wrapper_attributes"} <= applied
    # the CPU-DDP fix is needed exactly where accelerate wants Accelerator(cpu=True) for a CPU process group
    assert ("ddp_cpu_processes" in applied) == compat.accelerate._cpu_ddp_needs_cpu_flag()
    assert compat.apply() == []  # idempotent


def test_overfit_runs(tmp_path):
    """train(overfit=True) wraps accelerate-prepared loaders in Catalyst's BatchLimitLoaderWrapper (crashed at loader
    start on accelerate >= 0.34: 'NoneType' object has no attribute 'batch_size')."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    loaders = {"train": DataLoader(TensorDataset(x, y), batch_size=8),
               "valid": DataLoader(TensorDataset(x, y), batch_size=8)}
    model = torch.nn.Linear(3, 2)
    seen = []

    class CountBatches(dl.Callback):
        def __init__(self):
            super().__init__(order=dl.CallbackOrder.External)

        def on_batch_end(self, runner):
            seen.append((runner.loader_key, int(runner.batch["features"].shape[0])))

    runner = dl.SupervisedRunner()
    runner.train(model=model, criterion=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), 0.1),
                 loaders=loaders, num_epochs=1, overfit=True, engine=default_engine("cpu"),
                 callbacks=[CountBatches()], logdir=str(tmp_path), verbose=False)
    assert seen == [("train", 8)] * 8 + [("valid", 8)] * 8


DDP_SETUP = """
import accelerate, torch.distributed as dist
from accelerate.state import AcceleratorState, DistributedType
from catalyst import dl
from dnn_cool_catalyst import compat
compat.apply()
engine = dl.DistributedDataParallelEngine(port={port}, world_size=1, process_group_kwargs={{"backend": "gloo"}})
engine.setup(0, 1)
print(engine.distributed_type == DistributedType.MULTI_CPU, engine.num_processes, engine.process_index)
engine.cleanup()
"""


def test_cpu_ddp_processes_see_the_process_group():
    """On a machine without CUDA, a spawned DDP process must be MULTI_CPU; accelerate 1.x made it a single process
    (num_processes 1), so every process trained the whole data on its own."""
    if torch.cuda.is_available():
        pytest.skip("the patch is about machines without CUDA")
    from test_ddp import free_port

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-c", DDP_SETUP.format(port=free_port())], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "1", "0"]


def test_zero_grad_asks_the_signature_once_and_behaves_as_accelerate(monkeypatch):
    """accelerate's zero_grad built inspect.signature(optimizer.zero_grad) on every step; the patch asks once per
    zero_grad function and otherwise does what accelerate does (set_to_none by default, zeros when asked,
    optimizers without the argument)."""
    import inspect

    from accelerate.optimizer import AcceleratedOptimizer

    compat.apply()
    assert "accelerate_zero_grad_signature" in compat.applied()
    monkeypatch.setattr(compat.accelerate, "_TAKES_SET_TO_NONE", {})  # earlier tests may have asked about SGD already
    asked = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", 
                        lambda f, *a, **k: (getattr(f, "__name__", "") == "zero_grad" and asked.append(f))
                        or signature(f, *a, **k))
    weight = torch.nn.Parameter(torch.ones(3))

    class NoSetToNone(torch.optim.SGD):
        def zero_grad(self):  # an old-style optimizer
            super().zero_grad(set_to_none=False)

    engine = default_engine("cpu")
    for make, after_default in ((torch.optim.SGD, None), (NoSetToNone, 0.0)):
        wrapped = engine.prepare(make([weight], lr=0.1))
        assert isinstance(wrapped, AcceleratedOptimizer)
        for _ in range(3):
            weight.sum().backward()
            wrapped.zero_grad()
            assert weight.grad is None if after_default is None else torch.equal(weight.grad, torch.zeros(3))
        weight.sum().backward()
        if after_default is None:
            wrapped.zero_grad(set_to_none=False)
            assert torch.equal(weight.grad, torch.zeros(3))
        else:
            with pytest.raises(ValueError, match="set_to_none"):
                wrapped.zero_grad(set_to_none=True)
    assert len(asked) == 2  # once per zero_grad function, not per call
