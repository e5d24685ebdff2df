import pytest
import torch

from dnn_cool_catalyst import (BinaryTask, BoundedRegressionTask, ClassificationTask, FlowDefinitionError,
                               RegressionTask, TaskError, TaskFlow)
from helpers import numbers_flows


def tasks():
    return [BinaryTask("a", 2), BinaryTask("b", 2), RegressionTask("r", 2), BoundedRegressionTask("br", 0, 10, 2),
            ClassificationTask("shirt", 3, ["red", "green", "blue"], 2)]


def trace(fn, flows=None):
    return TaskFlow.from_function(fn, tasks(), flows=flows)


def test_graph_is_traced_once_and_keeps_order_and_conditions():
    calls = []

    def f(flow, x, out):
        calls.append(1)
        out += flow.a(x.features)
        out += flow.b(x.other) | ~out.a
        out += flow.r(x.features) | out.a | (out.shirt == "blue")
        out += flow.shirt(x.features)
        return out

    with pytest.raises(FlowDefinitionError, match="'shirt', which is added later"):
        trace(f)

    def g(flow, x, out):
        calls.append(1)
        out += flow.a(x.features)
        out += flow.shirt(x.features)
        out += flow.b(x.other) | ~out.a
        out += flow.r(x.features) | out.a | (out.shirt == "blue")

    calls.clear()
    flow = trace(g)
    flow.torch()
    flow.get_loss()
    assert len(calls) == 1
    described = {t["path"]: (t["input"], t["condition"]) for t in flow.describe()["tasks"]}
    assert described == {"a": ("features", None), "shirt": ("features", None), "b": ("other", "~a"),
                         "r": ("features", "(a & shirt == 'blue')")}


def test_nested_flow_condition_applies_to_every_inner_task():
    flow, _ = numbers_flows()
    conditions = {t["path"]: t["condition"] for t in flow.describe()["tasks"]}
    assert conditions == {
        "is_interesting": None,
        "numerical_flow.is_even": "is_interesting",
        "numerical_flow.predict_positive": "(is_interesting & is_even)",
        "numerical_flow.multiple_three": "(is_interesting & predict_positive)",
    }


@pytest.mark.parametrize("body, message", [
    (lambda flow, x, out: out.__iadd__(flow.nope(x.f)), "unknown task or flow 'nope'"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | out.zzz), "out.zzz refers to an unknown task"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | out.b), "'b', which this flow never adds"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | out.a), "conditioned on its own task 'a' \\(cycle\\)"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | out.r), "regression task 'r' does not support"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | ~out.br), "bounded_regression task 'br' does not support"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | out.shirt), "use out.shirt == <value>"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | (out.shirt == "purple")), "no class named 'purple'"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | (out.shirt == 7)), "no class named 7: .*labels are"),
    (lambda flow, x, out: out.__iadd__(flow.a(torch.zeros(2))), "must be called with one input of x"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f) | flow.b(x.f)), "must be a condition on out"),
    (lambda flow, x, out: out.__iadd__(flow.a(x.f)).__iadd__(flow.a(x.f)), "task 'a' is added twice"),
    (lambda flow, x, out: out.__iadd__(flow.a), "out \\+= expects"),
    (lambda flow, x, out: None, "adds no task"),
])
def test_definition_errors(body, message):
    def bad(flow, x, out):
        body(flow, x, out)

    # Flow errors are FlowDefinitionError, condition errors TaskError; both are ValueErrors.
    with pytest.raises((FlowDefinitionError, TaskError), match=message):
        trace(bad)


def test_precondition_on_task_added_later():
    def later(flow, x, out):
        out += flow.b(x.f) | out.a
        out += flow.a(x.f)
        return out

    with pytest.raises(FlowDefinitionError, match="'b' has a precondition on task 'a', which is added later"):
        trace(later)


def test_nested_flow_must_get_whole_x_and_cannot_contain_itself():
    def inner(flow, x, out):
        out += flow.a(x.f)

    nested = trace(inner)

    def outer(flow, x, out):
        out += flow.inner(x.f)

    with pytest.raises(FlowDefinitionError, match="nested flow 'inner' must be called with the whole x"):
        trace(outer, flows={"inner": nested})

    def selfish(flow, x, out):
        out += flow.selfish(x)

    with pytest.raises(FlowDefinitionError, match="calls itself.*cycle"):
        trace(selfish)

    def twice(flow, x, out):
        out += flow.inner(x)
        out += flow.a(x.f)

    with pytest.raises(FlowDefinitionError, match="task 'a' is added twice"):
        trace(twice, flows={"inner": nested})


def test_python_boolean_operators_are_rejected_with_a_hint():
    def f(flow, x, out):
        out += flow.a(x.f)
        out += flow.b(x.f) | (out.a and out.a)

    with pytest.raises(TypeError, match="combine conditions with &, \\| and ~"):
        trace(f)
