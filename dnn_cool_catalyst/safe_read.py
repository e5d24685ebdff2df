"""Reading a file that another process wrote, and that may be damaged or hostile, with limits.

Every YAML, JSON and CSV file the library reads back (a run's ``config.yml``, ``run_config.json``,
``tuned.json``, ``splits.json``, ``cv.json``, ``flow.json``, a report's evaluation CSVs...) goes through here, so a
520-byte YAML file of nested aliases cannot take all the memory and a 100,000-deep JSON array cannot overflow the
stack. Three limits, generous for any file the library writes itself:

- size: at most ``MAX_BYTES`` (64 MB) read; a file that lists every row of a split, 1 KB per row when that is
  more (:func:`rows_limit`);
- depth: at most ``MAX_DEPTH`` (100) nested lists/mappings, checked before any recursive parsing;
- YAML aliases: the document, with every alias expanded, has at most ``MAX_NODES`` (1,000,000) nodes, and no
  alias refers to a node that contains it.

Breaking one raises :class:`~dnn_cool_catalyst.errors.UnsafeFileError` (a ``ValueError``) naming the file and the
limit. Plain syntax errors stay what they were (``json.JSONDecodeError``, ``yaml.YAMLError``).

The YAML loader also reads ``3e-3`` and ``1e5`` as the floats a user means (YAML 1.1, and PyYAML's safe loader,
read a float only with a dot and a signed exponent, so ``lr: 3e-3`` used to arrive as the string ``'3e-3'``).

Example:
    >>> loads_yaml("lr: 3e-3\\nbase: &b {hidden: 8}\\nmodel: *b", "config.yml")
    {'lr': 0.003, 'base': {'hidden': 8}, 'model': {'hidden': 8}}
    >>> loads_json('{"a": [1, 2]}', "x.json")
    {'a': [1, 2]}
    >>> for text, load in (("[" * 101 + "]" * 101, loads_json), ("a: &a [*a]", loads_yaml)):
    ...     try:
    ...         load(text, "f")
    ...     except UnsafeFileError as e:
    ...         print(str(e).split(";")[0])
    f is nested deeper than 100 levels
    f: a YAML alias refers to a node that contains it
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from .errors import UnsafeFileError

MAX_BYTES = 64 * 1024 * 1024
ROW_BYTES = 1024  # per row, for files that list rows (see rows_limit): a row label up to ~1,000 characters
_DEPTH_PIECE = 1 << 22
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))
MAX_DEPTH = 100
MAX_NODES = 1_000_000
_REFUSED = "refused (a damaged or hostile file?)"
# A JSON string literal (the unrolled form: linear, no backtracking); its brackets are not nesting.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# 3e-3, 1E5, 2.5e+3, -1e-8: floats written with an exponent and without PyYAML's required dot or sign.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def read_bytes(path, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes; :class:`UnsafeFileError` when it holds more than ``max_bytes``."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{os.fspath(path)} is larger than {max_bytes} bytes; {_REFUSED}")
    return data


def read_text(path, max_bytes: int = MAX_BYTES) -> str:
    """The file as UTF-8 text (at most ``max_bytes``); a ``UnicodeDecodeError`` (a ``ValueError``) otherwise."""
    return read_bytes(path, max_bytes).decode("utf-8")


def json_depth(data: bytes) -> int:
    """How deep the lists and objects of a JSON text nest, without parsing it (so without recursion).

    >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    bare = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    depth = deepest = 0
    # By pieces: one running sum over the whole text took 16 bytes of memory per byte of it (a 14 MB splits.json
    # of 10^6 rows briefly needed 280 MB).
    for start in range(0, bare.size, _DEPTH_PIECE):
        piece = bare[start:start + _DEPTH_PIECE]
        step = np.isin(piece, _OPEN).astype(np.int8) - np.isin(piece, _CLOSE).astype(np.int8)
        levels = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max(initial=depth)))
        depth = int(levels[-1])
    return deepest


def rows_limit(rows: int) -> int:
    """The size limit of a file that lists every row of a split (a run's ``splits.json``, an inference manifest):
    ``MAX_BYTES``, or ``ROW_BYTES`` per row when that is more, so that a large frame's own files stay readable
    (``splits.json`` of 5 x 10^6 integer labels is 70 MB).

    >>> rows_limit(10) == MAX_BYTES, rows_limit(10 ** 7) // ROW_BYTES
    (True, 10000000)
    """
    return max(MAX_BYTES, ROW_BYTES * int(rows))


def loads_json(text, source: str, max_depth: int = MAX_DEPTH, **kwargs):
    """``json.loads(text, **kwargs)`` after checking the nesting depth; ``source`` names the file in errors."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if json_depth(data) > max_depth:
        raise UnsafeFileError(f"{source} is nested deeper than {max_depth} levels; {_REFUSED}")
    return json.loads(data.decode("utf-8") if isinstance(text, str) else data, **kwargs)


def read_json(path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, **kwargs):
    """A JSON file read with the size and depth limits (``kwargs`` go to ``json.loads``)."""
    return loads_json(read_text(path, max_bytes), os.fspath(path), max_depth, **kwargs)


def _yaml_loader_class():
    import yaml

    class LimitedLoader(yaml.SafeLoader):
        """The safe loader with a nesting limit while composing (before any deep recursion)."""
        max_depth = MAX_DEPTH
        source = "YAML"

        def compose_node(self, parent, index):
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > self.max_depth:
                    raise UnsafeFileError(f"{self.source} is nested deeper than {self.max_depth} levels; "
                                          f"{_REFUSED}")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    LimitedLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))
    return LimitedLoader


_LOADER = None


def yaml_loader():
    """The library's YAML loader class: ``yaml.SafeLoader`` with the nesting limit and exponent floats."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _yaml_loader_class()
    return _LOADER


def _expanded_size(node, source: str, max_nodes: int, sizes: dict, active: set) -> int:
    """Nodes in ``node`` with every alias expanded (memoised per node, so shared aliases cost nothing to count).
    Recursion is bounded: composing refused anything deeper than the depth limit, and a cycle is refused here."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise UnsafeFileError(f"{source}: a YAML alias refers to a node that contains it; {_REFUSED}")
    active.add(key)
    if isinstance(node.value, list):
        children = [c for pair in node.value for c in (pair if isinstance(pair, tuple) else (pair,))]
        size = 1 + sum(_expanded_size(c, source, max_nodes, sizes, active) for c in children)
    else:
        size = 1
    active.discard(key)
    if size > max_nodes:
        raise UnsafeFileError(f"{source}: its YAML aliases expand to more than {max_nodes} nodes; {_REFUSED}")
    sizes[key] = size
    return size


def loads_yaml(text, source: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES):
    """One YAML document read with the safe loader and the depth and alias-expansion limits."""
    loader = yaml_loader()(text)
    loader.source, loader.max_depth = source, max_depth
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, source, max_nodes, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES):
    """A YAML file read with the size, depth and alias-expansion limits."""
    return loads_yaml(read_text(path, max_bytes), os.fspath(path), max_depth, max_nodes)


def read_csv(path, max_bytes: int = MAX_BYTES, **kwargs):
    """``pandas.read_csv`` of a file of at most ``max_bytes`` (``kwargs`` go to ``read_csv``)."""
    import io

    import pandas as pd

    return pd.read_csv(io.BytesIO(read_bytes(path, max_bytes)), **kwargs)
