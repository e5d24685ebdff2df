"""Small builders shared by tests."""
import torch

from dnn_cool_catalyst import BinaryTask, TaskFlow


def bits(mask: torch.Tensor) -> str:
    return "".join("1" if bool(v) else "0" for v in mask)


def tensor_bits(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text])


def numbers_flows(in_features=1):
    """The acceptance example: is_interesting, then numerical_flow | out.is_interesting."""
    tasks = [BinaryTask(n, in_features) for n in ("is_interesting", "is_even", "predict_positive", "multiple_three")]

    def numerical_flow(flow, x, out):
        out += flow.is_even(x.features)
        out += flow.predict_positive(x.features) | out.is_even
        out += flow.multiple_three(x.features) | out.predict_positive
        return out

    def is_interesting(flow, x, out):
        out += flow.is_interesting(x.features)
        out += flow.numerical_flow(x) | out.is_interesting
        return out

    nested = TaskFlow.from_function(numerical_flow, tasks)
    return TaskFlow.from_function(is_interesting, tasks, flows={"numerical_flow": nested}), tasks


def numbers_batch(values=range(8), interesting=(1, 1, 0, 0, 0, 1, 1, 1), missing=None):
    """Labels for inputs 0..7 chosen so the training masks are those of the acceptance example."""
    x = torch.tensor(list(values), dtype=torch.float32)
    targets = {
        "is_interesting": torch.tensor(interesting, dtype=torch.float32),
        "is_even": (x % 2 == 0).float(),
        "predict_positive": (x > 0).float(),
        "multiple_three": (x % 3 == 0).float(),
    }
    available = {k: torch.ones(len(x), dtype=torch.bool) for k in targets}
    for task, row in (missing or []):
        available[task][row] = False
    return {"inputs": {"features": x[:, None]}, "targets": targets, "available": available,
            "index": torch.arange(len(x))}


def read_scalar_tags(path: str) -> dict:
    """``{tag: [values]}`` from a TensorBoard event file."""
    scalars = {}
    for event in _events(path):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def _events(path: str):
    """Every Event of one TensorBoard event file (the library's own reader, used by the experiment report)."""
    import os

    from dnn_cool_catalyst.report.tensorboard import read_events

    if not os.path.isfile(path):  # the library's reader reads a missing file as empty; a test must not
        raise FileNotFoundError(path)
    return read_events(path)


def read_summaries(directory: str) -> dict:
    """Images, texts and PR curves of every event file in ``directory``:
    ``{"images": {tag: [(step, HWC uint8 array)]}, "texts": {tag: [(step, str)]},
    "pr_curves": {tag: [(step, (6, num_thresholds) array)]}}`` (PR rows: tp, fp, tn, fn, precision, recall)."""
    import glob
    import io
    import os

    import numpy as np
    from PIL import Image

    found = {"images": {}, "texts": {}, "pr_curves": {}}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in _events(path):
            for value in event.summary.value:
                step = event.step
                plugin = value.metadata.plugin_data.plugin_name
                if value.HasField("image"):
                    pixels = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
                    found["images"].setdefault(value.tag, []).append((step, pixels))
                elif plugin == "text" or value.tag.endswith("/text_summary"):
                    # tensorboardX stores text under "<tag>/text_summary" (plugin metadata on the first only).
                    tag = value.tag[:-len("/text_summary")] if value.tag.endswith("/text_summary") else value.tag
                    found["texts"].setdefault(tag, []).append((step, value.tensor.string_val[0].decode()))
                elif plugin == "pr_curves":
                    shape = [d.size for d in value.tensor.tensor_shape.dim]
                    data = np.asarray(value.tensor.float_val, dtype=np.float64).reshape(shape)
                    found["pr_curves"].setdefault(value.tag, []).append((step, data))
    return found
