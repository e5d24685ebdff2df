import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from dnn_cool_catalyst import FlowDefinitionError, TaskError
from dnn_cool_catalyst.data import ConverterError, Converters
from dnn_cool_catalyst.project import Project
from helpers import bits

NAN = float("nan")


def numbers_frame():
    x = np.arange(8)
    return pd.DataFrame({
        "number": x.astype(float),
        "is_interesting": [1, 1, 0, 0, 0, 1, 1, 1],
        "is_even": (x % 2 == 0).astype(int),
        "predict_positive": (x > 0).astype(int),
        "multiple_three": (x % 3 == 0).astype(int),
    })


def numbers_project(df, tmp_path, call_form=False):
    project = Project(df, input_col="number", output_col=list(df.columns[1:]), project_dir=tmp_path)
    register = project.add_flow() if call_form else project.add_flow

    @register
    def numerical_flow(flow, x, out):
        out += flow.is_even(x.number)
        out += flow.predict_positive(x.number) | out.is_even
        out += flow.multiple_three(x.number) | out.predict_positive
        return out

    @project.add_flow
    def is_interesting(flow, x, out):
        out += flow.is_interesting(x.number)
        out += flow.numerical_flow(x) | out.is_interesting
        return out

    return project


def one_batch(flow):
    return next(iter(DataLoader(flow.get_dataset(), batch_size=64, shuffle=False)))


@pytest.mark.parametrize("call_form", [False, True])
def test_acceptance_masks_from_a_dataframe(tmp_path, call_form):
    flow = numbers_project(numbers_frame(), tmp_path, call_form).get_full_flow()
    assert flow.name == "is_interesting"
    masks = flow.get_masks(batch=one_batch(flow))
    assert {k: bits(v) for k, v in masks.items()} == {"is_interesting": "11111111", "is_even": "11000111",
                                                      "predict_positive": "10000010", "multiple_three": "00000010"}


def test_nan_parent_label_switches_children_off(tmp_path):
    df = numbers_frame().astype({"is_interesting": float})
    df.loc[6, "is_interesting"] = NAN
    flow = numbers_project(df, tmp_path).get_full_flow()
    masks = flow.get_masks(batch=one_batch(flow))
    assert bits(masks["is_interesting"]) == "11111101"
    assert bits(masks["is_even"]) == "11000101"
    assert bits(masks["predict_positive"]) == "10000000"
    assert bits(masks["multiple_three"]) == "00000000"


def test_flow_trains_on_the_dataset(tmp_path):
    torch.manual_seed(0)
    flow = numbers_project(numbers_frame(), tmp_path).get_full_flow()
    heads = flow.torch()
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh())
    params = list(model.parameters()) + list(heads.parameters())
    batch = one_batch(flow)
    loss_fn = flow.get_loss()
    feats = {"number": model(batch["inputs"]["number"][:, None] / 7)}
    heads(feats)  # materialise the lazy heads before building the optimizer
    opt = torch.optim.Adam(params, lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(heads({"number": model(batch["inputs"]["number"][:, None] / 7)}), batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_flow_names_are_unique_and_full_flow_needs_a_flow(tmp_path):
    project = Project(numbers_frame(), "number", ["is_even"], project_dir=tmp_path)
    with pytest.raises(FlowDefinitionError, match="no flow has been added"):
        project.get_full_flow()

    def evens(flow, x, out):
        out += flow.is_even(x.number)

    project.add_flow(evens)
    with pytest.raises(FlowDefinitionError, match="flow named 'evens' is already added"):
        project.add_flow(evens)
    with pytest.raises(FlowDefinitionError, match="unknown task or flow 'is_interesting'"):
        project.add_flow(lambda flow, x, out: out.__iadd__(flow.is_interesting(x.number)), name="other")


def test_converter_state_is_reloaded_so_ids_stay_the_same(tmp_path):
    df = pd.DataFrame({"f": [0.0, 1.0, 2.0], "shirt": ["red", "blue", "green"]})
    first = Project(df, "f", "shirt", project_dir=tmp_path)
    assert first.tasks["shirt"].class_names == ["blue", "green", "red"]
    later = Project(pd.DataFrame({"f": [5.0], "shirt": ["red"]}), "f", "shirt", project_dir=tmp_path)
    assert later.tasks["shirt"].class_names == ["blue", "green", "red"]
    assert later.data.targets["shirt"].tolist() == [2]
    assert (tmp_path / "converters.json").exists()


def test_type_mapping_through_project(tmp_path):
    df = pd.DataFrame({"f": [0.0, 1.0, 2.0], "size": [1, 2, 3], "tags": ["a,b", "", NAN]})
    converters = Converters()
    converters.type.type_mapping.update({"size": "continuous", "tags": "multilabel"})
    project = Project(df, "f", ["size", "tags"], converters=converters, project_dir=tmp_path)
    assert project.tasks["size"].type_name == "bounded_regression"
    assert project.data.available["tags"].tolist() == [[True, True], [True, True], [False, False]]


@pytest.mark.parametrize("df, inputs, outputs, message", [
    (numbers_frame(), "number", ["is_even", "typo"], "'typo'"),
    (numbers_frame().assign(is_even=["yes"] * 8), "number", ["is_even"], "is_even.*'yes'"),
    (numbers_frame().assign(is_even=[NAN] * 8), "number", ["is_even"], "is_even.*all values are NaN"),
    (numbers_frame(), "missing_input", ["is_even"], "'missing_input'"),
])
def test_bad_dataframes_name_the_column(tmp_path, df, inputs, outputs, message):
    with pytest.raises(ConverterError, match=message):
        Project(df, inputs, outputs, project_dir=tmp_path)


def test_model_outputs_of_mismatched_length_name_the_task(tmp_path):
    flow = numbers_project(numbers_frame(), tmp_path).get_full_flow()
    batch = one_batch(flow)
    outputs = {k: torch.zeros(7) for k in flow.tasks}  # 7 predictions for 8 samples
    with pytest.raises(TaskError, match="'is_interesting': expected logits of shape \\(8,\\)"):
        flow.get_loss()(outputs, batch)
