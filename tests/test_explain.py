"""Explanation trees: gated on decoded predictions, walking the graph, rendered with treelib."""
import pytest
import torch

from dnn_cool_catalyst import BinaryTask, ClassificationTask, MultilabelTask, RegressionTask, TaskError, TaskFlow
from dnn_cool_catalyst.interpretation.explain import render_tree


def security_flow():
    tasks = [BinaryTask("camera_blocked", 4), BinaryTask("door_open", 4), BinaryTask("door_locked", 4),
             BinaryTask("person_present", 4),
             ClassificationTask("shirt_type", 3, class_names=["red", "green", "blue"], top_k=2, in_features=4),
             RegressionTask("face_x", 4), MultilabelTask("facial", 2, class_names=["glasses", "beard"], in_features=4),
             ClassificationTask("glasses_type", 2, class_names=["round", "square"], in_features=4)]

    def face(flow, x, out):
        out += flow.face_x(x.features)
        out += flow.facial(x.features)
        out += flow.glasses_type(x.features) | (out.facial == "glasses")
        return out

    def security(flow, x, out):
        out += flow.camera_blocked(x.features)
        out += flow.door_open(x.features) | ~out.camera_blocked
        out += flow.door_locked(x.features) | ~out.door_open
        out += flow.person_present(x.features) | out.door_open
        out += flow.shirt_type(x.features) | out.person_present | ~out.camera_blocked
        out += flow.face(x) | out.person_present
        return out

    nested = TaskFlow.from_function(face, tasks)
    return TaskFlow.from_function(security, tasks, flows={"face": nested})


LOGITS = {
    "camera_blocked": torch.tensor([2.0, -2.0, -2.0]),
    "door_open": torch.tensor([0.0, -1.0, 3.0]),
    "door_locked": torch.tensor([0.0, 1.0, 0.0]),
    "person_present": torch.tensor([0.0, 0.0, 1.0]),
    "shirt_type": torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 1.0]]),
    "face_x": torch.tensor([0.0, 0.0, -3.25]),
    "facial": torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, -1.0]]),
    "glasses_type": torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.5]]),
}

EXPECTED = [
    """security [a]
└── camera_blocked = 1 (activation 0.881 >= threshold 0.500, logit 2.000)
""",
    """security [b]
└── camera_blocked = 0 (activation 0.119 < threshold 0.500, logit -2.000)
    └── door_open = 0 (activation 0.269 < threshold 0.500, logit -1.000) | given ~camera_blocked
        └── door_locked = 1 (activation 0.731 >= threshold 0.500, logit 1.000) | given ~door_open
""",
    """security [c]
└── camera_blocked = 0 (activation 0.119 < threshold 0.500, logit -2.000)
    └── door_open = 1 (activation 0.953 >= threshold 0.500, logit 3.000) | given ~camera_blocked
        └── person_present = 1 (activation 0.731 >= threshold 0.500, logit 1.000) | given door_open
            ├── shirt_type = 'red' (top-2: 'red' 0.665 (logit 2.000), 'blue' 0.245 (logit 1.000)) \
| given person_present & ~camera_blocked
            └── face [flow] | given person_present
                ├── face_x = -3.250 (activation -3.250, logit -3.250)
                └── facial = {glasses} (glasses: 1, activation 0.881 >= threshold 0.500, logit 2.000; beard: 0, \
activation 0.269 < threshold 0.500, logit -1.000)
                    └── glasses_type = 'square' (top-2: 'square' 0.622 (logit 0.500), 'round' 0.378 (logit 0.000)) \
| given facial == 'glasses'
""",
]


def test_trees_of_a_hand_built_batch_match_the_expected_rendering():
    trees = security_flow().get_treelib_explainer()(LOGITS, labels=["a", "b", "c"])
    assert [render_tree(t) for t in trees] == EXPECTED


def test_tuned_threshold_changes_which_children_appear():
    flow = security_flow()
    flow.tasks["door_open"].threshold = 0.99  # sample c's door (p=0.953) is now predicted closed
    tree = flow.get_treelib_explainer()(LOGITS)[2]
    assert render_tree(tree).split("\n")[2:4] == [
        "    └── door_open = 0 (activation 0.953 < threshold 0.990, logit 3.000) | given ~camera_blocked",
        "        └── door_locked = 1 (activation 0.500 >= threshold 0.500, logit 0.000) | given ~door_open"]
    assert not tree.contains("person_present") and not tree.contains("face.face_x")


def test_tree_nodes_are_exactly_the_decoded_gating_masks_for_random_outputs():
    flow = security_flow()
    torch.manual_seed(0)
    outputs = flow.torch().eval()({"features": torch.randn(64, 4) * 3})  # the module's output is accepted too
    trees = flow.get_treelib_explainer()(outputs)
    masks = outputs["masks"]
    for i, tree in enumerate(trees):
        shown = {path for name, path in flow.task_paths.items() if tree.contains(path)}
        assert shown == {path for name, path in flow.task_paths.items() if masks[name][i]}, i
        assert tree.contains("face") == bool(masks["face_x"][i])  # the nested flow node follows its condition


def test_or_condition_hangs_under_the_parent_that_holds():
    tasks = [BinaryTask("a"), BinaryTask("b"), BinaryTask("c"), BinaryTask("d")]

    def either(flow, x, out):
        out += flow.a(x.f)
        out += flow.b(x.f) | ~out.a
        out += flow.c(x.f) | (out.a | out.b)
        out += flow.d(x.f) | out.c
        return out

    flow = TaskFlow.from_function(either, tasks)
    logits = {"a": torch.tensor([3.0, -3.0]), "b": torch.tensor([0.0, 3.0]), "c": torch.tensor([1.0, 1.0]),
              "d": torch.tensor([1.0, -1.0])}
    first, second = flow.get_treelib_explainer()(logits)
    assert first.parent("c").identifier == "a" and first.parent("d").identifier == "c"  # b is not reached
    assert second.parent("c").identifier == "b" and second.parent("b").identifier == "a"


def test_custom_tasks_can_format_their_own_nodes_and_bad_input_is_named():
    class Dial(RegressionTask):
        def explain_value(self, logits, activation, decoded):
            return f"{float(decoded):.1f} degrees"

    flow = TaskFlow.from_function(lambda flow, x, out: out.__iadd__(flow.dial(x.f)), [Dial("dial")], name="dials")
    explainer = flow.get_treelib_explainer()
    assert render_tree(explainer({"dial": torch.tensor([12.34])})[0]) == "dials\n└── dial = 12.3 degrees\n"
    with pytest.raises(ValueError, match="flow 'dials': 2 labels for a batch of 1 inputs"):
        explainer({"dial": torch.tensor([1.0])}, labels=["x", "y"])
    with pytest.raises(TaskError, match="no logits for task 'dial'"):
        explainer({"other": torch.tensor([1.0])})


@pytest.mark.parametrize("top_k", [1, 3])
def test_views_of_many_samples_read_as_each_sample_described_alone(top_k):
    from dnn_cool_catalyst.interpretation.explain import describe_target, describe_value
    from dnn_cool_catalyst.interpretation.sample_views import sample_views

    def flow_fn(flow, x, out):
        out += flow.kind(x.features)
        out += flow.door(x.features) | (out.kind == "van")
        return out

    kind = ClassificationTask("kind", 4, class_names=["car", "van", "bus", "bike"], in_features=3)
    kind.top_k = top_k
    flow = TaskFlow.from_function(flow_fn, [kind, BinaryTask("door", 3)])
    gen = torch.Generator().manual_seed(1)
    n = 9
    logits = {"kind": torch.randn(n, 4, generator=gen), "door": torch.randn(n, generator=gen)}
    targets = {"kind": torch.randint(0, 4, (n,), generator=gen).float(), "door": torch.ones(n)}
    available = {"kind": torch.rand(n, generator=gen) > 0.3, "door": torch.ones(n, dtype=torch.bool)}
    views = sample_views(flow.graph, {"logits": logits}, targets, available, list(range(50, 50 + n)))
    for i in range(n):
        view = views[50 + i].tasks["kind"]
        activation = torch.softmax(logits["kind"][i], -1)
        assert view.prediction == describe_value(kind, logits["kind"][i], activation, logits["kind"][i].argmax())
        assert view.target == describe_target(kind, targets["kind"][i], available["kind"][i])
        assert view.target_value is None and view.predicted_value is None
    assert f"(top-{max(top_k, 2)}: " in views[50].tasks["kind"].prediction
    assert {views[50 + i].tasks["kind"].target for i in range(n)} - {"'car'", "'van'", "'bus'", "'bike'"} == {
        "not labelled"}
