"""Deployable export of a trained flow model: one artifact that runs with torch alone (``torch.export``) or in
ONNX Runtime, holding the model, the input preprocessing that is tensor maths, the tuned thresholds, regression
un-scaling and the decoded gating; plus a JSON beside it with the input signature and the labels.
See README, "Deployable export"."""
from .build import check_format, check_target, export_model, make_parent, sidecar_path
from .errors import ExportError
from .module import DeployableModule, FlatOutputs
from .writers import EXTENSIONS, FORMATS

__all__ = ["DeployableModule", "EXTENSIONS", "ExportError", "FORMATS", "FlatOutputs", "check_format", "check_target", "make_parent",
           "export_model", "sidecar_path"]
