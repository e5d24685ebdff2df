"""The home-security story: a 64x64 RGB camera frame and what can be said about it, depending on what it shows.

Each scene is one of

- **camera blocked**: a dark, noisy frame; nothing else can be known (every other label is NaN);
- **door closed**: a wall with a door rectangle and a handle, plus a gold lock square when the door is locked
  (``door_locked`` is defined, person labels are NaN);
- **door open**: a bright, noisy frame (the outside), with a person or not (``person_present`` is defined,
  ``door_locked`` is NaN). A person is a head circle above a body rectangle: the face colour encodes up to three
  facial characteristics (one RGB channel each), the body colour is one of seven shirt types. Face and body boxes
  (``x1, y1, w, h`` in pixels, a box covers columns ``x1 .. x1 + w - 1``) are NaN when nobody is there.

A fraction ``unannotated`` of the rows has no ``camera_blocked`` label: the other labels stay in the frame, and the
flow switches them off, because a missing parent is not "false".

Images are drawn with numpy, vectorised over the whole set, and kept in memory (``img`` holds HxWx3 uint8
arrays); nothing is written anywhere unless :func:`save_security_frame` is called.

Example:
    >>> df = security_frame(8, seed=1)
    >>> df["img"][0].shape, df["img"][0].dtype
    ((64, 64, 3), dtype('uint8'))
    >>> bool(df.loc[df.camera_blocked == 1, "door_open"].isna().all())
    True
"""
from __future__ import annotations

import functools
import io
import os
from typing import Optional

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write_bytes, atomic_write_text
from ..data import CategoryConverter, ContinuousConverter, Converters, ConverterError, MultilabelConverter
from ..data.columns import StoredColumn, stack_rows
from ..data.inputs import InputConverter

IMAGE_SIZE = 64
#: One RGB channel per characteristic: the channel is bright when the characteristic is present.
FACIAL_CHARACTERISTICS = ("beard", "glasses", "hat")
FACE_LEVELS = (70.0, 250.0)
SHIRT_COLOURS = {
    "red": (205, 30, 30), "green": (30, 160, 45), "blue": (35, 55, 210), "yellow": (225, 215, 35),
    "purple": (125, 35, 165), "orange": (245, 125, 15), "black": (20, 20, 20),
}
SHIRT_TYPES = tuple(SHIRT_COLOURS)
LOCK_COLOUR = (240, 195, 30)
HANDLE_COLOUR = (25, 25, 25)

BINARY_COLUMNS = ("camera_blocked", "door_open", "door_locked", "person_present")
FACE_BOX = ("face_x1", "face_y1", "face_w", "face_h")
BODY_BOX = ("body_x1", "body_y1", "body_w", "body_h")
LABEL_COLUMNS = BINARY_COLUMNS + FACE_BOX + BODY_BOX + ("facial_characteristics", "shirt_type")

# Scene frequencies: enough people that the box tasks have a few thousand labels at the default size.
P_BLOCKED, P_OPEN, P_LOCKED, P_PERSON = 0.1, 0.6, 0.5, 0.75
_CHUNK = 1024  # images drawn at once: bounds the float32 working set to ~50 MB


# -- the generator -------------------------------------------------------------------------------------------

def security_frame(n_samples: int = 10000, seed: int = 0, unannotated: float = 0.02) -> pd.DataFrame:
    """``n_samples`` scenes with their labels (NaN where a label does not apply or was not annotated).

    Columns: ``img`` (64x64x3 uint8 arrays) and :data:`LABEL_COLUMNS`. The same ``seed`` gives the same frame.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"security_frame: n_samples must be a positive integer, got {n_samples!r}")
    if not 0.0 <= unannotated < 1.0:
        raise ValueError(f"security_frame: unannotated must be a fraction in [0, 1), got {unannotated!r}")
    rng = np.random.default_rng(seed)
    scenes = _sample_scenes(rng, int(n_samples))
    images = np.empty((n_samples, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for start in range(0, n_samples, _CHUNK):
        part = slice(start, min(start + _CHUNK, n_samples))
        images[part] = _draw({k: v[part] for k, v in scenes.items()}, rng)
    df = _labels(scenes)
    df.loc[rng.random(n_samples) < unannotated, "camera_blocked"] = np.nan
    df.insert(0, "img", list(images))  # views of one array: no per-image copy
    return df


def _sample_scenes(rng: np.random.Generator, n: int) -> dict:
    """Every random choice of every scene, drawn up front so the pictures and the labels agree by construction."""
    blocked = rng.random(n) < P_BLOCKED
    door_open = ~blocked & (rng.random(n) < P_OPEN)
    closed = ~blocked & ~door_open
    locked = closed & (rng.random(n) < P_LOCKED)
    person = door_open & (rng.random(n) < P_PERSON)

    # Background: a grey level with a slight per-image tint; its brightness tells the three scenes apart.
    level = np.where(blocked, rng.uniform(0, 35, n), np.where(door_open, rng.uniform(165, 205, n),
                                                                rng.uniform(95, 145, n)))
    background = level[:, None] + rng.uniform(-10, 10, (n, 3))
    noise = np.where(blocked, 14.0, np.where(door_open, 16.0, 6.0))

    # Door (drawn only when closed): full height minus a margin, a handle and a lock square on its right side.
    door_w = rng.integers(14, 25, n)
    door_x1 = rng.integers(4, IMAGE_SIZE - 4 - door_w + 1)
    door_y1 = rng.integers(3, 15, n)
    door_y2 = IMAGE_SIZE - rng.integers(0, 4, n)
    door_colour = np.stack([rng.uniform(95, 125, n), rng.uniform(55, 80, n), rng.uniform(25, 45, n)], axis=1)
    lock_size = rng.integers(4, 6, n)
    lock_x1 = door_x1 + door_w - lock_size - 2
    lock_y1 = (door_y1 + door_y2) // 2 - lock_size - 3
    handle_y1 = (door_y1 + door_y2) // 2

    # Person (drawn only when present): head circle of radius r centred at (cx, cy), body rectangle below it.
    r = rng.integers(4, 9, n)
    body_w = rng.integers(12, 25, n)
    body_h = rng.integers(14, 27, n)
    half = np.maximum(r, (body_w + 1) // 2 + 2)
    cx = rng.integers(half, IMAGE_SIZE - half)
    cy = r + rng.integers(0, IMAGE_SIZE - (2 * r + 1) - body_h + 1)
    body_x1 = np.clip(cx - body_w // 2 + rng.integers(-2, 3, n), 0, IMAGE_SIZE - body_w)
    body_y1 = cy + r + 1
    traits = rng.random((n, len(FACIAL_CHARACTERISTICS))) < 0.5
    shirt = rng.integers(0, len(SHIRT_TYPES), n)
    return dict(blocked=blocked, door_open=door_open, closed=closed, locked=locked, person=person,
                background=background, noise=noise, door_x1=door_x1, door_w=door_w, door_y1=door_y1,
                door_y2=door_y2, door_colour=door_colour, lock_x1=lock_x1, lock_y1=lock_y1, lock_size=lock_size,
                handle_y1=handle_y1, r=r, cx=cx, cy=cy, body_x1=body_x1, body_y1=body_y1, body_w=body_w,
                body_h=body_h, traits=traits, shirt=shirt)


def _rect(xx, yy, x1, y1, w, h):
    """(N, H, W) mask of the rectangles ``[x1, x1 + w) x [y1, y1 + h)``, one per image."""
    def col(v):  # scalars broadcast as they are, per-image values become (N, 1, 1)
        v = np.asarray(v)
        return v[:, None, None] if v.ndim else v

    return (xx >= col(x1)) & (xx < col(x1) + col(w)) & (yy >= col(y1)) & (yy < col(y1) + col(h))


def _paint(images, mask, colour):
    """Paint ``colour`` ((N, 3) or (3,)) into ``images`` where ``mask`` holds."""
    colour = np.broadcast_to(np.asarray(colour, dtype=np.float32), (images.shape[0], 3))
    np.copyto(images, colour[:, None, None, :], where=mask[..., None])


def _draw(s: dict, rng: np.random.Generator) -> np.ndarray:
    n = len(s["blocked"])
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    images[:] = s["background"][:, None, None, :]

    closed = s["closed"][:, None, None]
    _paint(images, closed & _rect(xx, yy, s["door_x1"], s["door_y1"], s["door_w"], s["door_y2"] - s["door_y1"]),
           s["door_colour"])
    _paint(images, closed & _rect(xx, yy, s["door_x1"] + s["door_w"] - 5, s["handle_y1"], 2, 2), HANDLE_COLOUR)
    _paint(images, s["locked"][:, None, None] & _rect(xx, yy, s["lock_x1"], s["lock_y1"], s["lock_size"],
                                                      s["lock_size"]), LOCK_COLOUR)

    person = s["person"][:, None, None]
    head = ((xx - s["cx"][:, None, None]) ** 2 + (yy - s["cy"][:, None, None]) ** 2) <= s["r"][:, None, None] ** 2
    _paint(images, person & _rect(xx, yy, s["body_x1"], s["body_y1"], s["body_w"], s["body_h"]),
           np.asarray(list(SHIRT_COLOURS.values()), dtype=np.float32)[s["shirt"]])
    _paint(images, person & head, np.where(s["traits"], FACE_LEVELS[1], FACE_LEVELS[0]))

    noise = rng.standard_normal(images.shape, dtype=np.float32)
    images += noise * s["noise"][:, None, None, None].astype(np.float32)
    return np.clip(images, 0, 255).round().astype(np.uint8)


def _labels(s: dict) -> pd.DataFrame:
    n = len(s["blocked"])
    nan = np.full(n, np.nan)
    seen, closed, person = ~s["blocked"], s["closed"], s["person"]
    columns = {
        "camera_blocked": s["blocked"].astype(float),
        "door_open": np.where(seen, s["door_open"].astype(float), nan),
        "door_locked": np.where(closed, s["locked"].astype(float), nan),
        "person_present": np.where(s["door_open"], person.astype(float), nan),
    }
    r = s["r"]
    for name, value in zip(FACE_BOX + BODY_BOX, (s["cx"] - r, s["cy"] - r, 2 * r + 1, 2 * r + 1, s["body_x1"],
                                                   s["body_y1"], s["body_w"], s["body_h"])):
        columns[name] = np.where(person, value.astype(float), nan)
    traits = [",".join(c for c, on in zip(FACIAL_CHARACTERISTICS, row) if on) for row in s["traits"]]
    columns["facial_characteristics"] = pd.Series(traits, dtype=object).where(person, np.nan)
    columns["shirt_type"] = pd.Series(np.asarray(SHIRT_TYPES, dtype=object)[s["shirt"]]).where(person, np.nan)
    return pd.DataFrame(columns)


def save_security_frame(df: pd.DataFrame, directory: str) -> pd.DataFrame:
    """Write the images as PNGs and ``labels.csv`` under ``directory``; returns the frame with ``img`` as paths,
    usable with the default ``"img"`` input converter."""
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, image in zip(df.index, df["img"]):
        path = os.path.join(directory, f"{i:06d}.png")
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    saved = df.assign(img=paths)
    atomic_write_text(os.path.join(directory, "labels.csv"), saved.to_csv(index=False))
    return saved


# -- converters ----------------------------------------------------------------------------------------------

class ImageArrays(StoredColumn):
    """In-memory images kept as one uint8 ``(N, H, W, 3)`` tensor (a quarter of the memory of floats); ``[i]`` and
    batches are float32 CHW in [0, 1], like the file-based ``"img"`` input, converted per batch (on the device when
    the pixels live there)."""

    def __init__(self, pixels: torch.Tensor, column: str):
        super().__init__(pixels, column, scale=255.0, row_permutation=(2, 0, 1))

    @property
    def pixels(self) -> torch.Tensor:
        return self.values

    def __repr__(self) -> str:
        return f"ImageArrays({self.column!r}, {len(self)} images of {tuple(self.values.shape[1:])})"


class ImageArrayInput(InputConverter):
    """Cells holding HxWx3 uint8 arrays (all one shape) -> :class:`ImageArrays`.

    Example:
        >>> import numpy as np, pandas as pd
        >>> column = ImageArrayInput().build_column(pd.Series([np.full((2, 3, 3), 255, np.uint8)]), "img")
        >>> column[0].shape, float(column[0].max())
        (torch.Size([3, 2, 3]), 1.0)
    """

    type_name = "image_array"

    def build_column(self, series, column):
        self.require_no_missing(series, column, self.type_name)
        shape = None
        for row, cell in series.items():
            if not isinstance(cell, np.ndarray) or cell.dtype != np.uint8 or cell.ndim != 3 or cell.shape[2] != 3:
                got = (f"{type(cell).__name__} of shape {cell.shape} and dtype {cell.dtype}"
                       if isinstance(cell, np.ndarray) else repr(cell)[:60])
                raise ConverterError(f"image_array input column '{column}': row {row!r} holds {got}; expected an "
                                     f"HxWx3 uint8 numpy array")
            if shape is None:
                shape = (row, cell.shape)
            elif cell.shape != shape[1]:
                raise ConverterError(f"image_array input column '{column}': images have different shapes: "
                                     f"{shape[1]} at row {shape[0]!r} and {cell.shape} at row {row!r}")
        # Rows of one array (as security_frame builds them) are shared, not copied: one copy of the pixels in memory.
        return ImageArrays(torch.from_numpy(stack_rows(series.to_list())), column)


def security_converters() -> Converters:
    """Converters for :func:`security_frame`: explicit types, fixed class lists and box bounds ``[0, 64]`` pixels,
    so a box MAE of ``mae`` is a fraction of the image size and ``mae_units`` is in pixels."""
    converters = Converters()
    # The column keeps the "img" type (so TensorBoard's interpretation shows it as an image, as for image files)
    # but is read from memory: a column's converter wins over its type's.
    converters.values.col_mapping["img"] = ImageArrayInput
    types = converters.type.type_mapping
    types["img"] = "img"
    types.update({c: "binary" for c in BINARY_COLUMNS})
    types.update({c: "continuous" for c in FACE_BOX + BODY_BOX})
    types.update(facial_characteristics="multilabel", shirt_type="category")
    # functools.partial rather than lambdas: Converters must pickle for DDP spawn.
    bounded = functools.partial(ContinuousConverter, lo=0, hi=IMAGE_SIZE)
    converters.values.col_mapping.update({c: bounded for c in FACE_BOX + BODY_BOX})
    converters.values.col_mapping["facial_characteristics"] = functools.partial(
        MultilabelConverter, class_names=list(FACIAL_CHARACTERISTICS))
    converters.values.col_mapping["shirt_type"] = functools.partial(CategoryConverter, class_names=list(SHIRT_TYPES))
    return converters


# -- flows and project ---------------------------------------------------------------------------------------

def define_security_flows(project):
    """Register the story's flows on ``project`` and return the full flow (``security_flow``).

    Task paths: ``camera_blocked``, ``door_open``, ``door_locked``, ``person_present``,
    ``person_regression.face_regression.{face_x1, face_y1, face_w, face_h, facial_characteristics}`` and
    ``person_regression.body_regression.{body_x1, body_y1, body_w, body_h, shirt_type}``.
    """

    @project.add_flow
    def face_regression(flow, x, out):
        out += flow.face_x1(x.face_localization)
        out += flow.face_y1(x.face_localization)
        out += flow.face_w(x.face_localization)
        out += flow.face_h(x.face_localization)
        out += flow.facial_characteristics(x.features)
        return out

    @project.add_flow
    def body_regression(flow, x, out):
        out += flow.body_x1(x.body_localization)
        out += flow.body_y1(x.body_localization)
        out += flow.body_w(x.body_localization)
        out += flow.body_h(x.body_localization)
        out += flow.shirt_type(x.features)
        return out

    @project.add_flow
    def person_regression(flow, x, out):
        out += flow.face_regression(x)
        out += flow.body_regression(x)
        return out

    @project.add_flow
    def security_flow(flow, x, out):
        out += flow.camera_blocked(x.features)
        out += flow.door_open(x.features) | (~out.camera_blocked)
        out += flow.door_locked(x.features) | (~out.door_open)
        out += flow.person_present(x.features) | out.door_open
        out += flow.person_regression(x) | out.person_present
        return out

    return project.get_full_flow()


def security_project(project_dir: str, n_samples: int = 10000, seed: int = 0,
                     df: Optional[pd.DataFrame] = None):
    """A :class:`~dnn_cool_catalyst.project.Project` over :func:`security_frame` with the flows registered
    (pass ``df`` to reuse a frame already generated). Converter state goes to ``<project_dir>/converters.json``."""
    from ..project import Project

    if df is None:
        df = security_frame(n_samples, seed=seed)
    project = Project(df, input_col="img", output_col=list(LABEL_COLUMNS), converters=security_converters(),
                      project_dir=project_dir)
    define_security_flows(project)
    return project
