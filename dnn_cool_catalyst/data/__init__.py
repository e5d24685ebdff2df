"""DataFrame (NaN = not annotated) -> tensors + availability masks + tasks, and the torch Dataset over them.

Example:
    >>> import pandas as pd
    >>> from dnn_cool_catalyst.data import Converters, FlowDataset
    >>> df = pd.DataFrame({"x": [0.0, 1.0], "temperature": [-3.5, None]})
    >>> data = Converters().build(df, input_cols="x", output_cols="temperature")
    >>> FlowDataset(data)[0]["targets"]
    {'temperature': tensor(-3.5000)}
"""
from ..errors import ConverterError
from .class_labels import BinaryConverter, CategoryConverter
from .converters import ConvertedData, Converters, TaskConverters, ValueConverters
from .dataset import FlowDataset
from .inputs import ArrayInput, ImageColumn, ImageInput, InputConverter, NumericInput, load_image
from .list_labels import MultilabelConverter, TokensConverter
from .numeric_labels import ContinuousConverter, RegressionConverter
from .type_guess import TypeGuesser, guess_type
from .value_converter import ValueConverter

__all__ = ["Converters", "ConverterError", "FlowDataset", "ConvertedData", "ValueConverters", "TaskConverters",
           "TypeGuesser", "guess_type", "ValueConverter", "BinaryConverter", "CategoryConverter",
           "MultilabelConverter", "ContinuousConverter", "RegressionConverter", "TokensConverter", "InputConverter",
           "ImageInput", "ImageColumn", "ArrayInput", "NumericInput", "load_image"]
