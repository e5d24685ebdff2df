"""Every identifier that is a valid task name works (issue 14 item 5), including names of nn.Module attributes;
'_'-prefixed names and 'overall' are refused at definition with a clear error."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dnn_cool_catalyst import BinaryTask, Project, TaskFlow
from dnn_cool_catalyst.graph.module import TaskHeads, head_key
from dnn_cool_catalyst.tasks.base import TaskError

MODULE_ATTRIBUTES = ["type", "values", "training", "forward", "to", "cuda", "keys", "state_dict"]


class Model(nn.Module):
    def __init__(self, flow_module):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(1, 8), nn.ReLU())
        self.flow = flow_module

    def forward(self, inputs):
        return self.flow({"features": self.trunk(inputs["x"].float().reshape(-1, 1) / 100)})


def test_tasks_named_like_module_attributes_train_infer_and_evaluate(tmp_path):
    rng = np.random.default_rng(0)
    x = np.arange(200.0)
    df = pd.DataFrame({"x": x, **{name: ((x + i) % 3 == 0).astype(float) for i, name in enumerate(MODULE_ATTRIBUTES)}})
    df.loc[rng.choice(200, 20, replace=False), "values"] = np.nan
    project = Project(df, "x", MODULE_ATTRIBUTES, project_dir=tmp_path)

    @project.add_flow
    def everything(flow, x, out):
        out += flow.type(x.features)
        out += flow.values(x.features) | out.type
        out += flow.training(x.features) | ~out.values
        for name in MODULE_ATTRIBUTES[3:]:
            out += getattr(flow, name)(x.features)
        return out

    flow = project.get_full_flow()
    module = flow.torch()
    assert isinstance(module.heads, TaskHeads)
    assert sorted(module.heads.keys()) == sorted(f"task:{name}" for name in MODULE_ATTRIBUTES)
    assert "type" in module.heads and isinstance(module.heads["type"], nn.Linear)
    assert module.training is True and callable(module.heads.values)  # the module's own attributes are intact
    torch.manual_seed(0)
    runner = project.runner(Model(module), "names", batch_size=32)
    runner.train(num_epochs=1)
    runner.infer()
    runner.tune()
    table = runner.evaluate()
    assert set(table["task_path"]) == set(MODULE_ATTRIBUTES)
    assert table.loc[table["task_path"] == "values", "num_samples"].iloc[0] > 0
    assert list(runner.worst_examples("test", "forward", n=3).columns)[:2] == ["row_id", "loss"]
    state = torch.load(runner.checkpoint_dir + "/runner.best.pth", weights_only=True)["model_state_dict"]
    assert "flow.heads.task:type.weight" in state
    fresh = Model(flow.torch())
    fresh.load_state_dict(state)  # the escaped keys load into a fresh module
    assert torch.equal(fresh.flow.heads["cuda"].weight, state["flow.heads.task:cuda.weight"])


def test_only_names_that_need_it_are_escaped_so_existing_checkpoints_keep_their_keys():
    tasks = [BinaryTask("door_open", 4), BinaryTask("heads", 4), BinaryTask("graph", 4), BinaryTask("type", 4)]

    def gate(flow, x, out):
        for task in tasks:
            out += getattr(flow, task.name)(x.features)
        return out

    keys = list(TaskFlow.from_function(gate, tasks).torch().state_dict())
    assert keys == ["heads.door_open.weight", "heads.door_open.bias", "heads.heads.weight", "heads.heads.bias",
                    "heads.graph.weight", "heads.graph.bias", "heads.task:type.weight", "heads.task:type.bias"]
    assert [head_key(n) for n in ("door_open", "add_module", "parameters")] == \
        ["door_open", "task:add_module", "task:parameters"]


@pytest.mark.parametrize("name, pattern", [
    ("_hidden", "task name '_hidden' starts with '_': such names are reserved"),
    ("__init__", "task name '__init__' starts with '_'"),
    ("overall", "task name 'overall' is reserved: worst_examples\\(split, 'overall'\\)"),
    ("not valid", "task name must be a Python identifier, got 'not valid'"),
])
def test_reserved_names_are_refused_at_definition(name, pattern):
    with pytest.raises(TaskError, match=pattern):
        BinaryTask(name, 4)


def test_a_flow_named_like_a_task_does_not_hide_the_task_in_later_flows(tmp_path):
    df = pd.DataFrame({"x": np.arange(10.0), "a": [0.0, 1.0] * 5, "b": [1.0, 0.0] * 5})
    project = Project(df, "x", ["a", "b"], project_dir=tmp_path)

    @project.add_flow
    def a(flow, x, out):  # named like its first task, as the README's is_interesting flow
        out += flow.a(x.x)
        return out

    @project.add_flow
    def outer(flow, x, out):
        out += flow.a(x.x)
        out += flow.b(x.x) | out.a  # the task a, not "a nested flow cannot be a precondition"
        return out

    assert project.get_full_flow().task_paths == {"a": "a", "b": "b"}
    assert project.get_full_flow().describe()["tasks"][1]["condition"] == "a"
