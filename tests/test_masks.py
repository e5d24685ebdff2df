import torch

from dnn_cool_catalyst import BinaryTask, ClassificationTask, TaskFlow
from helpers import bits, numbers_batch, numbers_flows, tensor_bits


def test_acceptance_training_masks():
    flow, _ = numbers_flows()
    masks = flow.get_masks(batch=numbers_batch(), gating="gt")
    assert {k: bits(v) for k, v in masks.items()} == {
        "is_interesting": "11111111",
        "is_even": "11000111",
        "predict_positive": "10000010",
        "multiple_three": "00000010",
    }
    assert flow.task_paths["multiple_three"] == "numerical_flow.multiple_three"


def test_missing_parent_label_switches_children_off():
    flow, _ = numbers_flows()
    # Row 6 loses its is_interesting label, row 0 its is_even label.
    masks = flow.get_masks(batch=numbers_batch(missing=[("is_interesting", 6), ("is_even", 0)]), gating="gt")
    assert bits(masks["is_interesting"]) == "11111101"
    assert bits(masks["is_even"]) == "01000101"
    assert bits(masks["predict_positive"]) == "00000000"
    assert bits(masks["multiple_three"]) == "00000000"


def test_decoded_gating_reads_predictions_not_labels():
    flow, _ = numbers_flows()
    # Predictions: interesting everywhere except row 1, even on rows 0-3, positive on rows 2 and 3.
    logits = {
        "is_interesting": torch.tensor([5., -5, 5, 5, 5, 5, 5, 5]),
        "is_even": torch.tensor([5., 5, 5, 5, -5, -5, -5, -5]),
        "predict_positive": torch.tensor([-5., -5, 5, 5, 5, 5, 5, 5]),
        "multiple_three": torch.zeros(8),
    }
    masks = flow.get_masks(outputs={"logits": logits}, gating="decoded")
    assert bits(masks["is_interesting"]) == "11111111"
    assert bits(masks["is_even"]) == "10111111"
    assert bits(masks["predict_positive"]) == "10110000"
    assert bits(masks["multiple_three"]) == "00110000"
    module_masks = flow.torch().eval()  # the module computes the same masks from its own logits
    assert set(module_masks({"features": torch.zeros(8, 1)})["masks"]) == set(logits)


def make_flow(fn, tasks):
    return TaskFlow.from_function(fn, tasks)


def test_negation_and_or_and_chained_given():
    tasks = [BinaryTask(n, 1) for n in "abcdef"]

    def f(flow, x, out):
        out += flow.a(x.f)
        out += flow.b(x.f)
        out += flow.c(x.f) | ~out.a                   # a labelled and false
        out += flow.d(x.f) | out.a | out.b            # chained: a and b
        out += flow.e(x.f) | (out.a | out.b)          # or
        out += flow.f(x.f) | (out.a & ~out.b)
        return out

    flow = make_flow(f, tasks)
    a = torch.tensor([1., 1, 0, 0, 0])
    b = torch.tensor([1., 0, 1, 0, 0])
    avail_a = tensor_bits("11110")  # row 4: a unknown
    batch = {"targets": {"a": a, "b": b, **{k: torch.zeros(5) for k in "cdef"}},
             "available": {"a": avail_a, **{k: torch.ones(5, dtype=torch.bool) for k in "bcdef"}}}
    masks = {k: bits(v) for k, v in flow.get_masks(batch=batch).items()}
    assert masks["c"] == "00110"   # unknown a does not count as "not a"
    assert masks["d"] == "10000"
    assert masks["e"] == "11100"
    assert masks["f"] == "01000"


def test_negated_compound_is_three_valued():
    tasks = [BinaryTask(n, 1) for n in "abc"]

    def f(flow, x, out):
        out += flow.a(x.f)
        out += flow.b(x.f)
        out += flow.c(x.f) | ~(out.a & out.b)
        return out

    flow = make_flow(f, tasks)
    batch = {"targets": {"a": torch.tensor([1., 1, 0, 0]), "b": torch.tensor([1., 0, 0, 0]), "c": torch.zeros(4)},
             "available": {"a": tensor_bits("1110"), "b": tensor_bits("1111"), "c": tensor_bits("1111")}}
    # Row 3: a unknown and b false -> (a & b) is known false, so ~(a & b) holds.
    assert bits(flow.get_masks(batch=batch)["c"]) == "0111"


def test_condition_on_class_value_by_id_and_name():
    shirt = ClassificationTask("shirt_type", 3, class_names=["red", "green", "blue"], in_features=1)
    tasks = [shirt, BinaryTask("is_blue_bright", 1), BinaryTask("is_red_faded", 1)]

    def f(flow, x, out):
        out += flow.shirt_type(x.f)
        out += flow.is_blue_bright(x.f) | (out.shirt_type == "blue")
        out += flow.is_red_faded(x.f) | (out.shirt_type == "red")
        return out

    flow = make_flow(f, tasks)
    batch = {"targets": {"shirt_type": torch.tensor([0, 1, 2, 2]), "is_blue_bright": torch.zeros(4),
                         "is_red_faded": torch.zeros(4)},
             "available": {"shirt_type": tensor_bits("1110"), "is_blue_bright": tensor_bits("1111"),
                           "is_red_faded": tensor_bits("1111")}}
    masks = flow.get_masks(batch=batch)
    assert bits(masks["is_blue_bright"]) == "0010"
    assert bits(masks["is_red_faded"]) == "1000"
    logits = {"shirt_type": torch.tensor([[0., 0, 9], [9., 0, 0], [0., 9, 0], [0., 0, 9]]),
              "is_blue_bright": torch.zeros(4), "is_red_faded": torch.zeros(4)}
    decoded = flow.get_masks(outputs=logits, gating="decoded")
    assert bits(decoded["is_blue_bright"]) == "1001"
    assert bits(decoded["is_red_faded"]) == "0100"


def test_multilabel_per_class_availability_combines_with_condition():
    from dnn_cool_catalyst import MultilabelTask

    tasks = [BinaryTask("person", 1), MultilabelTask("traits", 2, class_names=["glasses", "beard"], in_features=1)]

    def f(flow, x, out):
        out += flow.person(x.f)
        out += flow.traits(x.f) | out.person
        return out

    flow = make_flow(f, tasks)
    batch = {"targets": {"person": torch.tensor([1., 0, 1]), "traits": torch.zeros(3, 2)},
             "available": {"person": tensor_bits("111"),
                           "traits": torch.tensor([[True, False], [True, True], [True, True]])}}
    assert flow.get_masks(batch=batch)["traits"].tolist() == [[True, False], [False, False], [True, True]]
