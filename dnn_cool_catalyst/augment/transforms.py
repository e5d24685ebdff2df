"""Named per-batch image augmentations: random per sample, drawn from a seeded generator on the batch's device.

A transform takes a float image batch ``(n, C, H, W)`` (after the uint8 -> float conversion, values in [0, 1])
and a ``torch.Generator`` on the batch's device, and returns ``(images, flips)``: the augmented batch and, for
geometric transforms, the per-sample boolean masks of what moved (``{"x": flipped left-right, "y": flipped
upside down}``), which :mod:`dnn_cool_catalyst.augment.boxes` applies to declared box targets.

Names (:data:`TRANSFORMS`; parameters in brackets, with their defaults):

- ``"hflip"`` (``p=0.5``), ``"vflip"`` (``p=0.5``): mirror left-right / upside down; geometric.
- ``"shift"`` (``max_pixels=4``): move by a whole number of pixels in ``[-max_pixels, max_pixels]`` along each
  axis, filling with zeros; geometric, and refused with box targets (a shifted box can leave the image).
- ``"brightness"`` (``delta=0.2``): add ``U(-delta, delta)``; ``"contrast"`` (``delta=0.2``): scale the
  deviation from the image's mean by ``U(1 - delta, 1 + delta)``; ``"noise"`` (``std=0.02``): add Gaussian noise.
  These three clamp to [0, 1].
- ``"identity"``: nothing (a baseline view for test-time augmentation).

Any callable ``images -> images`` (e.g. a torchvision v2 transform, where torchvision is installed) is accepted
too; it is treated as photometric (it must not move the content when the flow has box targets).

Example:
    >>> images = torch.arange(6.0).reshape(1, 1, 2, 3)
    >>> flipped, flips = make_transform("hflip", p=1.0)(images, torch.Generator().manual_seed(0))
    >>> flipped[0, 0].tolist(), flips["x"].tolist()
    ([[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]], [True])
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

Flips = Dict[str, torch.Tensor]


class AugmentationError(ValueError):
    """An augmentation spec is wrong: unknown name, bad parameter, or not applicable to this flow's columns."""


class BatchTransform:
    """Base class of the named transforms. ``geometric`` ones move pixels (and so box targets)."""

    name = "?"
    geometric = False
    #: whether the box targets can follow it (flips can; a shift could push a box out of the image)
    box_safe = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Flips]:
        raise NotImplementedError

    def for_tta(self) -> "BatchTransform":
        """The transform as one view of test-time augmentation (flips always flip)."""
        return self

    def describe(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return self.name + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def _uniform(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (images.dim() - 1))).to(images.dtype)


class _Flip(BatchTransform):
    geometric = True
    axis = "x"

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise AugmentationError(f"augmentation '{self.name}': p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, images, generator):
        dim = -1 if self.axis == "x" else -2
        chosen = _uniform(images.shape[0], generator, images.device) < self.p
        flipped = torch.where(_per_sample(chosen, images).bool(), images.flip(dim), images)
        return flipped, {self.axis: chosen}

    def for_tta(self):
        return type(self)(p=1.0)


class HorizontalFlip(_Flip):
    name, axis = "hflip", "x"


class VerticalFlip(_Flip):
    name, axis = "vflip", "y"


class Shift(BatchTransform):
    name, geometric, box_safe = "shift", True, False

    def __init__(self, max_pixels: int = 4):
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
            raise AugmentationError(f"augmentation 'shift': max_pixels must be a non-negative int, got "
                                    f"{max_pixels!r}")
        self.max_pixels = max_pixels

    def __call__(self, images, generator):
        n, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        span = 2 * self.max_pixels + 1
        dx = torch.randint(span, (n,), generator=generator, device=images.device) - self.max_pixels
        dy = torch.randint(span, (n,), generator=generator, device=images.device) - self.max_pixels
        out = _shift_axis(images, dx, -1, width)
        return _shift_axis(out, dy, -2, height), {}


def _shift_axis(images: torch.Tensor, offsets: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``out[..., i, ...] = images[..., i - offset, ...]`` along ``dim`` per sample, zero where that is outside."""
    source = torch.arange(size, device=images.device).unsqueeze(0) - offsets.unsqueeze(1)  # (n, size)
    inside = (source >= 0) & (source < size)
    shape = [images.shape[0]] + [1] * (images.dim() - 1)
    shape[dim] = size
    index = source.clamp(0, size - 1).view(shape).expand_as(images)
    return torch.gather(images, dim, index) * inside.view(shape).to(images.dtype)


class Brightness(BatchTransform):
    name = "brightness"

    def __init__(self, delta: float = 0.2):
        self.delta = _non_negative(self.name, "delta", delta)

    def __call__(self, images, generator):
        offset = (_uniform(images.shape[0], generator, images.device) * 2 - 1) * self.delta
        return (images + _per_sample(offset, images)).clamp_(0.0, 1.0), {}


class Contrast(BatchTransform):
    name = "contrast"

    def __init__(self, delta: float = 0.2):
        self.delta = _non_negative(self.name, "delta", delta)

    def __call__(self, images, generator):
        factor = 1 + (_uniform(images.shape[0], generator, images.device) * 2 - 1) * self.delta
        mean = images.mean(dim=tuple(range(1, images.dim())), keepdim=True)
        return ((images - mean) * _per_sample(factor, images) + mean).clamp_(0.0, 1.0), {}


class Noise(BatchTransform):
    name = "noise"

    def __init__(self, std: float = 0.02):
        self.std = _non_negative(self.name, "std", std)

    def __call__(self, images, generator):
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return (images + noise * self.std).clamp_(0.0, 1.0), {}


class Identity(BatchTransform):
    name = "identity"

    def __call__(self, images, generator):
        return images, {}


class CallableTransform(BatchTransform):
    """A user's callable ``images -> images``, treated as photometric."""

    def __init__(self, fn: Callable):
        self._fn = fn
        self.name = getattr(fn, "__name__", None) or type(fn).__name__

    def __call__(self, images, generator):
        out = self._fn(images)
        if not isinstance(out, torch.Tensor) or out.shape[0] != images.shape[0]:
            raise AugmentationError(f"augmentation callable {self.name!r} must return an image batch tensor of "
                                    f"{images.shape[0]} images, got "
                                    f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        return out, {}

    def describe(self) -> str:
        return f"callable:{self.name}"


def _non_negative(name: str, param: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise AugmentationError(f"augmentation '{name}': {param} must be a non-negative number, got {value!r}")
    return float(value)


TRANSFORMS = {cls.name: cls for cls in (HorizontalFlip, VerticalFlip, Shift, Brightness, Contrast, Noise, Identity)}


def make_transform(spec, **params) -> BatchTransform:
    """One transform from a spec: a name of :data:`TRANSFORMS` (``params`` are its parameters), a mapping
    ``{"name": ..., <param>: ...}`` (the YAML form), a :class:`BatchTransform`, or a callable ``images -> images``.
    """
    if isinstance(spec, BatchTransform):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if not isinstance(name, str):
            raise AugmentationError(f"augmentation {spec!r}: a mapping needs 'name' (one of {sorted(TRANSFORMS)}) "
                                    f"and the transform's parameters")
        return make_transform(name, **spec, **params)
    if isinstance(spec, str):
        cls = TRANSFORMS.get(spec)
        if cls is None:
            raise AugmentationError(f"unknown augmentation {spec!r}; known augmentations are {sorted(TRANSFORMS)} "
                                    f"(or pass a callable taking and returning an image batch)")
        try:
            return cls(**params)
        except TypeError as e:
            raise AugmentationError(f"augmentation {spec!r}: {e}") from None
    if callable(spec):
        return CallableTransform(spec)
    raise AugmentationError(f"augmentation {spec!r} is neither a name ({sorted(TRANSFORMS)}), a mapping with "
                            f"'name', nor a callable")


def batch_generator(device, *parts: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``parts`` (run seed, epoch, step, ...): the same parts draw the same
    augmentations."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2 ** 62)
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def check_images(column: str, images, where: Optional[str] = None) -> torch.Tensor:
    """``images`` must be a float batch ``(n, C, H, W)``."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise AugmentationError(f"{where or 'augmentation'}: input column '{column}' must be a float image batch "
                                f"(n, C, H, W), got {got}")
    return images
