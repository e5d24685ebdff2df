"""safe_read: hostile YAML / JSON / CSV files are refused with the file and the limit named, quickly and without
exhausting memory or the stack; legitimate files (anchors, merge keys, exponent floats) read as before."""
import time

import pytest
import yaml

from dnn_cool_catalyst import UnsafeFileError
from dnn_cool_catalyst.safe_read import (MAX_DEPTH, json_depth, loads_json, loads_yaml, read_csv, read_json,
                                         read_yaml)


def billion_laughs(levels: int = 9) -> str:
    """The classic: each anchor a list of nine aliases of the previous one (9**9 strings once expanded)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_at_once_naming_the_file_and_the_limit(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 600
    start = time.perf_counter()
    with pytest.raises(UnsafeFileError, match=r"config.yml: its YAML aliases expand to more than 1000000 nodes"):
        read_yaml(path)
    assert time.perf_counter() - start < 2.0


def test_self_referencing_alias_is_refused():
    with pytest.raises(UnsafeFileError, match="loop.yml: a YAML alias refers to a node that contains it"):
        loads_yaml("a: &a [1, *a]\n", "loop.yml")
    with pytest.raises(UnsafeFileError, match="refers to a node that contains it"):
        loads_yaml("m: &m {k: *m}\n", "loop.yml")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a:\n" + "".join(
    " " * k + f"k{k}:\n" for k in range(1, 200)) + " " * 200 + "x: 1\n"])
def test_deep_yaml_is_refused_before_any_deep_recursion(text):
    with pytest.raises(UnsafeFileError, match=f"deep.yml is nested deeper than {MAX_DEPTH} levels"):
        loads_yaml(text, "deep.yml")


def test_a_100000_deep_json_is_a_clear_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "run_config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UnsafeFileError, match=r"run_config.json is nested deeper than 100 levels"):
        read_json(path)


def test_size_limit_names_the_file(tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text('{"params": {}}' + " " * 100)
    with pytest.raises(UnsafeFileError, match=r"tuned.json is larger than 50 bytes"):
        read_json(path, max_bytes=50)
    (tmp_path / "t.csv").write_text("a,b\n1,2\n" * 20)
    with pytest.raises(UnsafeFileError, match=r"t.csv is larger than 64 bytes"):
        read_csv(tmp_path / "t.csv", max_bytes=64)
    assert read_csv(tmp_path / "t.csv").shape == (39, 2)


def test_legitimate_files_read_as_before(tmp_path):
    text = "base: &base {hidden: 8, lr: 0.001}\nmodel:\n  <<: *base\n  hidden: 16\nother: *base\n"
    assert loads_yaml(text, "x.yml") == yaml.safe_load(text)
    depth = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_json(depth, "ok.json") is not None and loads_yaml(depth, "ok.yml") is not None
    assert loads_json('{"a": "[[[[[[", "b": "\\"[["}', "s.json") == {"a": "[[[[[[", "b": '"[['}
    assert json_depth(b'{"a": "\\\\", "b": [[1]]}') == 3
    assert loads_yaml("", "empty.yml") is None


@pytest.mark.parametrize("written, value", [("3e-3", 0.003), ("1E5", 100000.0), ("-2.5e+3", -2500.0),
                                            ("1e-08", 1e-08), ("'3e-3'", "3e-3"), ("e5", "e5"), ("12", 12),
                                            ("1_000", 1000), ("0.5", 0.5)])
def test_exponent_floats_are_the_numbers_a_user_means(written, value):
    loaded = loads_yaml(f"lr: {written}\n", "c.yml")["lr"]
    assert loaded == value and type(loaded) is type(value)
