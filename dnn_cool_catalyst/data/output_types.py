"""The built-in output types, in one place: type name -> value converter factory and type name -> task factory.

``Converters`` copies both registries into ``converters.values.type_mapping`` and ``converters.task.type_mapping``,
where a user adds or replaces types; the two have the same keys, since every output type becomes a task.

Example:
    >>> sorted(OUTPUT_CONVERTERS) == sorted(DEFAULT_TASKS)
    True
    >>> DEFAULT_TASKS["category"]("shirt", CategoryConverter(class_names=["blue", "red"])).class_names
    ['blue', 'red']
"""
from __future__ import annotations

from ..tasks import (BinaryTask, BoundedRegressionTask, ClassificationTask, MultilabelTask, RegressionTask, Task,
                     TokenClassificationTask)
from .class_labels import BinaryConverter, CategoryConverter
from .list_labels import MultilabelConverter, TokensConverter
from .numeric_labels import ContinuousConverter, RegressionConverter

#: Default output converters by type name (zero-arg factories).
OUTPUT_CONVERTERS = {
    "binary": BinaryConverter,
    "category": CategoryConverter,
    "multilabel": MultilabelConverter,
    "continuous": ContinuousConverter,
    "regression": RegressionConverter,
    "tokens": TokensConverter,
}


# -- default task factories (module level so that a Converters object pickles, e.g. for DDP spawn) ------

def binary_task(name: str, converter) -> Task:
    return BinaryTask(name, labels=getattr(converter, "labels", None), label_kind=getattr(converter, "label_kind", None))


def category_task(name: str, converter) -> Task:
    return ClassificationTask(name, len(converter.class_names), class_names=converter.class_names,
                              label_kind=getattr(converter, "label_kind", None))


def multilabel_task(name: str, converter) -> Task:
    return MultilabelTask(name, len(converter.class_names), class_names=converter.class_names)


def continuous_task(name: str, converter) -> Task:
    return BoundedRegressionTask(name, lo=converter.lo, hi=converter.hi)


def regression_task(name: str, converter) -> Task:
    return RegressionTask(name)


def tokens_task(name: str, converter) -> Task:
    return TokenClassificationTask(name, converter.n_classes)


#: Default task factories by type name: ``factory(column, fitted converter) -> Task``.
DEFAULT_TASKS = {
    "binary": binary_task,
    "category": category_task,
    "multilabel": multilabel_task,
    "continuous": continuous_task,
    "regression": regression_task,
    "tokens": tokens_task,
}
