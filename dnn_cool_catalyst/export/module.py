"""The module that gets exported: raw input columns in, decoded and gated predictions out.

It wraps the user's model with the two things a deployment would otherwise have to rebuild by hand:

- the input preprocessing that is tensor maths: a numeric column converted with ``missing="indicator"`` takes
  its raw values with NaN where missing and gets the training median and the was-missing column here, exactly as
  :class:`~dnn_cool_catalyst.data.inputs.NumericInput` builds them (other columns go to the model as they are:
  categorical columns as int64 codes, standardisation inside the model stays inside it);
- the decoding: every task's own ``decode`` (tuned thresholds, regression back to label units, class ids) and
  the decoded gating of the flow (:func:`~dnn_cool_catalyst.graph.module.decoded_gating_masks`), so a task whose
  preconditions do not hold on the model's own predictions is reported as not applying.

The tasks' decoding parameters are plain Python numbers, so tracing bakes them in as constants.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from ..graph.batch import output_logits
from ..graph.graph import CompiledGraph
from ..graph.module import decoded_gating_masks


class DeployableModule(nn.Module):
    """``forward(inputs)`` -> ``{"values": {task: decoded}, "applies": {task: bool (N,)}}``.

    ``inputs`` maps each input column to a tensor whose first dimension is the batch. ``imputed`` maps the
    columns whose NaN are filled here to their fill value (the training median).

    Example:
        >>> import torch
        >>> from dnn_cool_catalyst import TaskFlow
        >>> from dnn_cool_catalyst.tasks import BinaryTask
        >>> def gate(flow, x, out):
        ...     out += flow.door_open(x.features)
        ...     out += flow.door_locked(x.features) | ~out.door_open
        ...     return out
        >>> flow = TaskFlow.from_function(gate, [BinaryTask("door_open", 1), BinaryTask("door_locked", 1)])
        >>> heads = flow.torch()
        >>> with torch.no_grad():
        ...     for head, bias in ((heads.heads["door_open"], 5.0), (heads.heads["door_locked"], 5.0)):
        ...         _ = head.weight.fill_(0.0), head.bias.fill_(bias)
        >>> out = DeployableModule(heads, flow.graph, {}).eval()({"features": torch.zeros(2, 1)})
        >>> out["values"]["door_open"].tolist(), out["applies"]["door_locked"].tolist()
        ([1.0, 1.0], [False, False])
    """

    def __init__(self, model: nn.Module, graph: CompiledGraph, imputed: Mapping[str, float]):
        super().__init__()
        self.model = model
        self.graph = graph
        self.imputed: Dict[str, float] = {column: float(value) for column, value in imputed.items()}

    def features(self, inputs: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The model's inputs from the raw columns (median fill and was-missing column where converted so)."""
        features = dict(inputs)
        for column, median in self.imputed.items():
            raw = inputs[column].to(torch.float32)
            missing = torch.isnan(raw)
            filled = torch.where(missing, torch.full_like(raw, median), raw)
            features[column] = torch.stack([filled, missing.to(torch.float32)], dim=1)
        return features

    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
        first = next(iter(inputs.values()))
        logits = output_logits(self.graph, self.model(self.features(inputs)), first.shape[0])
        values = {name: task.decode(logits[name]) for name, task in self.graph.tasks.items()}
        applies = decoded_gating_masks(self.graph, logits)
        return {"values": values, "applies": {name: applies[name] for name in self.graph.tasks}}


class FlatOutputs(nn.Module):
    """The same module with positional inputs and a flat tuple of outputs, as ONNX graphs have them: inputs in
    ``columns`` order, outputs ``value.<task>`` then ``applies.<task>`` per task in flow order."""

    def __init__(self, deployable: DeployableModule, columns: List[str]):
        super().__init__()
        self.deployable = deployable
        self.columns = list(columns)

    def output_names(self) -> List[str]:
        """Names of the flat outputs, in order."""
        return [f"{kind}.{name}" for name in self.deployable.graph.tasks for kind in ("value", "applies")]

    def forward(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.deployable(dict(zip(self.columns, tensors)))
        return tuple(out[kind][name] for name in self.deployable.graph.tasks
                     for kind in ("values", "applies"))
