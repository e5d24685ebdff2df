"""One model whose tasks come from different epochs of the same run: each task's weights from the epoch where its
own validation loss was lowest (``train(task_selection=True)``, :mod:`dnn_cool_catalyst.callbacks.task_checkpoints`).

Tasks that share a trunk do not reach their best at the same epoch: on small tables a 5-class head can be past its
best while a conditional regression is still improving, and one epoch chosen on the summed loss is a compromise
for all of them. :class:`TaskSelectedModel` holds one copy of the model per distinct chosen epoch and takes each
task's logits from its own copy; the gating masks are computed again from the combined logits, so a gated task is
reached where its parents' *selected* predictions say so. It returns what the flow module returns (``logits``, and
``masks`` in eval mode), so inference, tuning, ``predict`` and export see one ordinary model (ONNX and ``.pt2``
trace it as such); it costs one forward per distinct epoch.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence

import torch
from torch import nn

from .batch import output_logits
from .graph import CompiledGraph
from .module import decoded_gating_masks


def _batch_size(outputs) -> int:
    logits = outputs.get("logits", outputs) if isinstance(outputs, Mapping) else None
    first = next(iter(logits.values()), None) if isinstance(logits, Mapping) else None
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"the model must return the flow module's output (a dict with 'logits'), got "
                        f"{type(outputs).__name__}")
    return first.shape[0]


class TaskSelectedModel(nn.Module):
    """``models[i]`` is the run's model at one epoch; task ``t`` reads its logits from ``models[sources[t]]``.

    Example:
        >>> from dnn_cool_catalyst import TaskFlow
        >>> from dnn_cool_catalyst.tasks import BinaryTask
        >>> def gate(flow, x, out):
        ...     out += flow.door_open(x.features)
        ...     out += flow.door_locked(x.features) | ~out.door_open
        ...     return out
        >>> flow = TaskFlow.from_function(gate, [BinaryTask("door_open", 3), BinaryTask("door_locked", 3)])
        >>> early, late = flow.torch(), flow.torch()
        >>> model = TaskSelectedModel(flow.graph, [early, late], {"door_open": 0, "door_locked": 1}).eval()
        >>> x = {"features": torch.randn(2, 3)}
        >>> bool(torch.equal(model(x)["logits"]["door_locked"], late(x)["logits"]["door_locked"]))
        True
    """

    def __init__(self, graph: CompiledGraph, models: Sequence[nn.Module], sources: Mapping[str, int]):
        super().__init__()
        missing = [name for name in graph.tasks if name not in sources]
        if missing or any(not 0 <= i < len(models) for i in sources.values()):
            raise ValueError(f"TaskSelectedModel: every task needs the index of one of the {len(models)} models; "
                             f"missing {missing}, got {dict(sources)}")
        self.graph = graph
        self.models = nn.ModuleList(models)
        self.sources: Dict[str, int] = {name: int(sources[name]) for name in graph.tasks}
        self._tasks_of = [[name for name, i in self.sources.items() if i == k] for k in range(len(models))]

    def forward(self, inputs) -> dict:
        logits = {}
        for model, tasks in zip(self.models, self._tasks_of):
            if not tasks:
                continue
            outputs = model(inputs)
            own = output_logits(self.graph, outputs, _batch_size(outputs))
            logits.update({name: own[name] for name in tasks})
        result = {"logits": {name: logits[name] for name in self.graph.tasks}}
        if not self.training:
            result["masks"] = decoded_gating_masks(self.graph, result["logits"])
        return result
