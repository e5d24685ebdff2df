"""Models that are several models at once (TabM's k members): one member axis, reduced in one place.

A trunk that imitates ``k`` members gives features ``(N, k, F)``; the flow module then applies each head to them
(``FlowModule(..., members=True)``) and gets per-member logits ``(N, k, ...)``. Everything after the model reads
ordinary logits, so the member axis is reduced right there, once:

- ``outputs["logits"]``: each task's member **activations** (probabilities, rescaled values) averaged over
  members and turned back into logits with the task's ``inverse_activation`` -- the same rule fold ensembles and
  test-time augmentation use. Decoding, metrics, tuning, interpretation, ``predict`` and export see one model.
- ``outputs[MEMBER_LOGITS_KEY]`` (training mode only): the per-member logits. The loss averages each member's
  masked loss over the members (:func:`member_element_loss`); in eval mode the model's output is exactly that of
  a single model (same keys and shapes, so ONNX and ``.pt2`` keep their interface), and the validation loss is
  the loss of the averaged prediction, the one a user gets.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from ..tasks.base import Task, TaskError, without_inverse_activation

MEMBER_LOGITS_KEY = "member_logits"


def members_as_samples(member_logits: torch.Tensor) -> torch.Tensor:
    """``(N, k, ...)`` -> ``(N * k, ...)``: each member's logits as samples of their own (a view when possible)."""
    return member_logits.reshape(-1, *member_logits.shape[2:])


def repeat_for_members(values: torch.Tensor, k: int) -> torch.Tensor:
    """A per-sample tensor ``(N, ...)`` repeated for each member, in the order of :func:`members_as_samples`.

    >>> repeat_for_members(torch.tensor([1., 2.]), 3).tolist()
    [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    """
    return values.unsqueeze(1).expand(values.shape[0], k, *values.shape[1:]).reshape(-1, *values.shape[1:])


def check_member_tasks(tasks: Mapping[str, Task]) -> None:
    """Members need every task's ``inverse_activation`` (their activations are averaged); raise naming the rest."""
    missing = without_inverse_activation(dict(tasks))
    if missing:
        raise TaskError(f"task(s) {missing} define no inverse_activation(), which a model with members (e.g. TabM) "
                        f"needs to average their predictions; use a single-member model for them")


def check_member_logits(task: Task, raw: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A head's output on member features ``(N, k, ...)`` in the task's canonical shape per member."""
    if raw.dim() < 2 or raw.shape[0] != batch_size:
        raise TaskError(f"{task.type_name} task '{task.name}': a model with members must give logits of shape "
                        f"({batch_size}, k, ...), got {tuple(raw.shape)}")
    k = raw.shape[1]
    canonical = task.check_logits(members_as_samples(raw), batch_size * k)
    return canonical.reshape(batch_size, k, *canonical.shape[1:])


def average_members(task: Task, member_logits: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, ...)`` of the members' averaged activations, in the members' dtype. The average is taken in
    float64, so a probability near 0 or 1 keeps the logit it had (float32 sigmoids saturate near logit 17).

    >>> from dnn_cool_catalyst.tasks import BinaryTask
    >>> member_logits = torch.tensor([[0.0, 2.0], [-1.0, -1.0]])  # 2 samples, 2 members
    >>> average_members(BinaryTask("door_open", 4), member_logits)  # sigmoid(0)=0.5 and sigmoid(2)=0.88 -> 0.69
    tensor([ 0.8020, -1.0000])
    """
    n, k = member_logits.shape[:2]
    activations = task.activation(members_as_samples(member_logits).double())
    mean = activations.reshape(n, k, *activations.shape[1:]).mean(dim=1)
    return task.inverse_activation(mean).to(member_logits.dtype)


def member_element_loss(task: Task, member_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's element loss averaged over members, in the target's shape: its masked mean is the mean over
    members of each member's masked mean loss (every member has the same mask)."""
    n, k = member_logits.shape[:2]
    element = task.element_loss(members_as_samples(member_logits), repeat_for_members(target, k))
    return element.reshape(n, k, *element.shape[1:]).mean(dim=1)


def member_loss(task: Task, member_logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A task's own ``loss`` over all members at once, each member seeing the same targets and mask: the mean of
    the members' masked losses for a loss that is a masked mean."""
    k = member_logits.shape[1]
    return task.loss(members_as_samples(member_logits), repeat_for_members(target, k), repeat_for_members(mask, k))


def output_member_logits(graph, outputs, batch_size: int) -> Optional[Dict[str, torch.Tensor]]:
    """Per-member logits ``(N, k, ...)`` by task name when the model gave them (training mode), else ``None``."""
    members = outputs.get(MEMBER_LOGITS_KEY) if isinstance(outputs, Mapping) else None
    if members is None:
        return None
    missing = [leaf.path for leaf in graph.leaves if leaf.name not in members]
    if missing:
        raise TaskError(f"flow '{graph.name}': the model output's '{MEMBER_LOGITS_KEY}' has no logits for task(s) "
                        f"{missing}")
    return {leaf.name: check_member_logits(leaf.task, members[leaf.name], batch_size) for leaf in graph.leaves}
