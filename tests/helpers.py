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
    """``{tag: [values]}`` from a TensorBoard event file, read with tensorboardX's protobufs (TFRecord framing:
    length, length CRC, payload, payload CRC)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars = {}
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                break
            (length,) = struct.unpack("<Q", header)
            f.read(4)
            event = event_pb2.Event.FromString(f.read(length))
            f.read(4)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars
