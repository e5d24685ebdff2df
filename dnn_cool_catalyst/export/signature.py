"""What an exported artifact takes and returns, written to the JSON file beside it.

Inputs: one tensor per input column, batch first, in raw units (the model's own input columns, as the project's
converters build them from a DataFrame, except that a numeric column converted with ``missing="indicator"`` takes
its raw values with NaN: the artifact fills the median itself). Categorical columns take int64 codes; the
vocabulary that maps strings to codes is in the JSON, as are the class names and binary labels that map the
outputs back to label values.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch

from ..data.inputs import CategoricalInput, ImageInput, NumericInput
from ..graph.graph import CompiledGraph
from ..tasks.base import class_labels

#: Bumped when the JSON's meaning changes, so a deployment can refuse a file it does not understand.
SIGNATURE_VERSION = 1

_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
                torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.uint8: "uint8",
                torch.bool: "bool"}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the name ``getattr(torch, name)`` gives back)."""
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def imputed_columns(converters: Mapping[str, object], columns: List[str]) -> Dict[str, float]:
    """Input columns whose NaN the artifact fills, with the median fitted on the project's rows."""
    return {column: float(converters[column].median) for column in columns
            if isinstance(converters.get(column), NumericInput) and converters[column].mode == "indicator"}


def raw_example(batch_inputs: Mapping[str, torch.Tensor], imputed: Mapping[str, float]) -> Dict[str, torch.Tensor]:
    """A converted batch of inputs back in raw units: the imputed columns' (value, was-missing) pairs become the
    value with NaN where it was missing (what the artifact takes)."""
    raw = {}
    for column, tensor in batch_inputs.items():
        if column in imputed:
            tensor = torch.where(tensor[:, 1] > 0.5, torch.full_like(tensor[:, 0], float("nan")), tensor[:, 0])
        raw[column] = tensor.contiguous()
    return raw


def input_spec(column: str, example: torch.Tensor, converter, imputed: Mapping[str, float]) -> dict:
    """One input column's entry: dtype, shape (``"batch"`` first), what its values are and any vocabulary."""
    spec = {"name": column, "dtype": dtype_name(example.dtype), "shape": ["batch", *example.shape[1:]]}
    if column in imputed:
        spec.update(kind="numeric", missing="NaN allowed: filled with the training median inside the artifact",
                    median=imputed[column])
    elif isinstance(converter, NumericInput):
        spec.update(kind="numeric", missing="not allowed (the column was converted with missing='error')")
    elif isinstance(converter, CategoricalInput):
        spec.update(kind="categorical", vocab=list(converter.vocab or []),
                    codes={"unknown": CategoricalInput.UNKNOWN, "missing": CategoricalInput.MISSING,
                           "first_vocab": CategoricalInput.FIRST},
                    encode="code = 2 + vocab.index(value); 1 for a missing value; 0 for a value not in vocab")
    elif isinstance(converter, ImageInput):
        spec.update(kind="image", encode="RGB, channels first, float32 in [0, 1], at the size the model was "
                                         "trained on")
    else:
        spec.update(kind=getattr(converter, "type_name", "tensor"))
    return spec


def output_spec(graph: CompiledGraph, name: str, value: torch.Tensor) -> dict:
    """One task's entry: its value's dtype and shape, what the value means and how it maps to label values."""
    leaf = next(leaf for leaf in graph.leaves if leaf.name == name)
    task = leaf.task
    spec = {"path": leaf.path, "type": task.type_name, "dtype": dtype_name(value.dtype),
            "shape": ["batch", *value.shape[1:]],
            "condition": leaf.full_condition.render() if leaf.full_condition is not None else None,
            "decoder_params": task.get_decoder_params()}
    names: Optional[list] = getattr(task, "class_names", None)
    if names is not None:
        spec["class_names"] = class_labels(task)  # as the label column holds them, like runner.predict
    if task.type_name == "binary":
        spec["labels"] = task.typed_labels()
        spec["value"] = "1.0 where the positive label (labels[1]) is predicted, else 0.0 (labels[0])"
    elif task.type_name == "classification":
        spec["value"] = "class id: class_names[id] is the label"
    elif task.type_name == "multilabel":
        spec["value"] = "0/1 per class, in class_names order"
    elif task.type_name == "bounded_regression":
        spec.update(value="label units, in [lo, hi]", lo=task.lo, hi=task.hi)
    elif task.type_name == "regression":
        spec.update(value="label units", fitted=task.get_fitted_state())
    else:
        spec["value"] = f"the {task.type_name} task's decoded value"
    return spec


def signature(graph: CompiledGraph, fmt: str, artifact: str, inputs: List[dict], outputs: Dict[str, dict],
              checkpoint: str, tuned: bool, onnx_outputs: Optional[List[str]] = None) -> dict:
    """The whole JSON document."""
    doc = {"signature_version": SIGNATURE_VERSION, "format": fmt, "artifact": artifact, "flow": graph.name,
           "checkpoint": checkpoint, "tuned": tuned, "inputs": inputs, "outputs": outputs,
           "returns": ("{'values': {task: value}, 'applies': {task: bool (batch,)}}" if fmt == "torch" else
                       "flat outputs 'value.<task>' and 'applies.<task>', in the order of output_names"),
           "applies": "True where every precondition of the task holds on the model's own decoded predictions; "
                      "where False the task does not apply and its value means nothing"}
    if onnx_outputs is not None:
        doc["input_names"] = [spec["name"] for spec in inputs]
        doc["output_names"] = onnx_outputs
    return doc
