"""A user-defined task plugs into flows, losses, metrics and conditions without any change in the core."""
import torch

from dnn_cool_catalyst import BinaryTask, TaskFlow
from dnn_cool_catalyst.functional.metrics import safe_div
from dnn_cool_catalyst.tasks import Task
from helpers import bits


class CountTask(Task):
    """Poisson regression of a count; ``out.n_people == k`` gates on an exact count."""

    condition_kinds = frozenset({"eq"})
    type_name = "count"
    metric_names = ["mae"]

    def out_features(self):
        return 1

    def check_logits(self, logits, batch_size):
        return logits.reshape(batch_size)

    def activation(self, logits):
        return logits.exp()

    def decode(self, logits):
        return logits.exp().round()

    def element_loss(self, logits, target):
        return torch.nn.functional.poisson_nll_loss(logits, target, reduction="none")

    def condition(self, value, kind, arg):
        return value.round() == arg

    def metric_stats(self, logits, target, mask):
        err = torch.where(mask, (self.decode(logits) - target).abs(), 0.0)
        return torch.stack([err.sum(), mask.sum()]).double()

    def metric_values(self, stats):
        return {"mae": safe_div(stats[0], stats[1])}


def test_custom_task_works_end_to_end():
    def f(flow, x, out):
        out += flow.n_people(x.f)
        out += flow.crowd_alarm(x.f) | (out.n_people == 2)
        return out

    flow = TaskFlow.from_function(f, [CountTask("n_people", 3), BinaryTask("crowd_alarm", 3)])
    module = flow.torch()
    batch = {"targets": {"n_people": torch.tensor([2.0, 1.0, 2.0]), "crowd_alarm": torch.tensor([1.0, 0.0, 0.0])},
             "available": {"n_people": torch.tensor([True, True, False]),
                           "crowd_alarm": torch.tensor([True, True, True])}}
    out = module({"f": torch.randn(3, 3)})
    assert bits(flow.get_masks(batch=batch)["crowd_alarm"]) == "100"
    loss = flow.get_loss()(out, batch)
    loss.backward()
    assert module.heads["n_people"].weight.grad is not None
    metrics = flow.get_metrics()
    metrics.update(out, batch)
    assert set(metrics.compute()["n_people"]) == {"mae"}
