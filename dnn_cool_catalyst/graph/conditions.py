"""The condition algebra: preconditions as expressions over other tasks' values.

Conditions are built while a flow function is traced (``out.door_open``, ``~out.camera_blocked``,
``out.shirt_type == "red"``, ``c1 & c2``, ``c1 | c2``) and evaluated on tensors later, once per batch, against
either ground-truth targets or decoded predictions. Evaluation is three-valued: a condition on task B only
*holds* where B itself is valid (labelled and reached, or reached when gating on predictions), and ``~c`` holds
where ``c`` is *defined* and false. So a missing parent label switches its children off instead of counting as
"false".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Mapping

import torch

from ..tasks.base import Task


@dataclass
class EvalContext:
    """What a condition reads: per-task values in target space and per-task per-sample validity masks.

    Results are memoised per condition object, so a nested flow's condition, shared by all its tasks, is
    evaluated once per batch."""

    values: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor]
    _holds: Dict[int, torch.Tensor] = field(default_factory=dict)

    def holds(self, condition: "Condition") -> torch.Tensor:
        key = id(condition)
        if key not in self._holds:
            self._holds[key] = condition.holds(self)
        return self._holds[key]


class Condition:
    def __and__(self, other: "Condition") -> "Condition":
        return And(self.checked(), _as_condition(other).checked())

    def __or__(self, other: "Condition") -> "Condition":
        return Or(self.checked(), _as_condition(other).checked())

    def __invert__(self) -> "Condition":
        return Not(self.checked())

    def checked(self) -> "Condition":
        """The condition as it will be evaluated; validates bare task references."""
        return self

    def refs(self) -> Iterator["TaskRef"]:
        raise NotImplementedError

    def holds(self, ctx: EvalContext) -> torch.Tensor:
        raise NotImplementedError

    def defined(self, ctx: EvalContext) -> torch.Tensor:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<condition {self.render()}>"

    def __bool__(self):
        raise TypeError("a flow condition has no truth value while tracing; combine conditions with &, | and ~ "
                        "instead of and/or/not/if")


def _as_condition(value) -> Condition:
    if not isinstance(value, Condition):
        raise TypeError(f"expected a condition such as out.door_open or out.shirt_type == 3, got {value!r}")
    return value


class TaskRef(Condition):
    """``out.task`` (kind ``"bool"``) or ``out.task == arg`` (kind ``"eq"``)."""

    def __init__(self, task: Task, kind: str = "bool", arg=None, validated: bool = False):
        self.task, self.name, self.kind = task, task.name, kind
        self.arg = arg if validated else None
        self._raw_arg = arg
        self._validated = validated

    def checked(self) -> "TaskRef":
        if not self._validated:
            self.arg = self.task.resolve_condition_arg(self.kind, self._raw_arg)
            self._validated = True
        return self

    def __eq__(self, arg) -> "TaskRef":  # type: ignore[override]
        return TaskRef(self.task, "eq", self.task.resolve_condition_arg("eq", arg), validated=True)

    def __ne__(self, arg) -> "Condition":  # type: ignore[override]
        return ~(self == arg)

    __hash__ = None  # == builds a condition, so references are not hashable

    def refs(self):
        yield self

    def holds(self, ctx):
        return self.task.condition(ctx.values[self.name], self.kind, self.arg) & ctx.masks[self.name]

    def defined(self, ctx):
        return ctx.masks[self.name]

    def render(self):
        if self.kind == "eq":
            # The label value the user compared with (level == 1), never the class id it resolved to.
            return f"{self.name} == {self.task.condition_label(self.kind, self.arg)!r}"
        return self.name


class Not(Condition):
    def __init__(self, inner: Condition):
        self.inner = inner

    def refs(self):
        return self.inner.refs()

    def holds(self, ctx):
        return self.inner.defined(ctx) & ~ctx.holds(self.inner)

    def defined(self, ctx):
        return self.inner.defined(ctx)

    def render(self):
        inner = self.inner.render()
        return f"~{inner}" if isinstance(self.inner, TaskRef) and self.inner.kind == "bool" else f"~({inner})"


class _Pair(Condition):
    """A condition over two others (``&``, ``|``): both sides' task references."""

    def __init__(self, left: Condition, right: Condition):
        self.left, self.right = left, right

    def refs(self):
        yield from self.left.refs()
        yield from self.right.refs()


class And(_Pair):
    def holds(self, ctx):
        return ctx.holds(self.left) & ctx.holds(self.right)

    def defined(self, ctx):
        # Defined when both sides are, or when either side is known to be false.
        dl, dr = self.left.defined(ctx), self.right.defined(ctx)
        return (dl & dr) | (dl & ~ctx.holds(self.left)) | (dr & ~ctx.holds(self.right))

    def render(self):
        return f"({self.left.render()} & {self.right.render()})"


class Or(_Pair):
    def holds(self, ctx):
        return ctx.holds(self.left) | ctx.holds(self.right)

    def defined(self, ctx):
        return (self.left.defined(ctx) & self.right.defined(ctx)) | ctx.holds(self)

    def render(self):
        return f"({self.left.render()} | {self.right.render()})"


def conjunction(*conditions) -> Condition | None:
    """AND of the given conditions, skipping ``None``; ``None`` when there is nothing to AND."""
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    result = present[0]
    for c in present[1:]:
        result = And(result, c)
    return result


def ref_names(condition: Condition | None) -> Dict[str, None]:
    """Names of the tasks a condition reads, in order of first appearance."""
    return {} if condition is None else {r.name: None for r in condition.refs()}
