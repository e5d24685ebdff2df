"""Every ```python block of README.md runs as written, in order, and prints what the README shows.

Blocks run in one temporary directory, each continuing the names the previous block left (as a reader pasting
them into one session would), unless a marker right before the block says otherwise:

- ``<!-- readme-test: skip (reason) -->``: needs what a test machine has not (GPUs, DDP processes); the reason is
  reported by pytest's skip;
- ``<!-- readme-test: after "Heading" -->``: continues the names as they were after the last block under
  ``## Heading`` / ``### Heading`` (the README says which example it continues);
- ``<!-- readme-test: loose (reason) -->``: its printed numbers depend on training, so only the first printed
  line is compared, with numbers masked.

Printed output shown in a block is the run of comment lines (``# ...`` at the start of a line) right after a
``print(...)`` statement; the block's standard output must contain it (exactly, up to trailing spaces).
"""
import contextlib
import io
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: (skip|after|loose)\s*(.*?)\s*-->")


def readme_blocks(text: str):
    """``(heading, {marker: argument}, code, line)`` for every python block, in README order."""
    blocks, heading = [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```python":
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            code = "\n".join(lines[i + 1:j]) + "\n"
            markers, k = {}, start - 1
            while k >= 0 and MARKER.search(lines[k]):  # the marker lines right above the block
                found = MARKER.search(lines[k])
                markers[found.group(1)] = found.group(2).strip('"()')
                k -= 1
            blocks.append((heading, markers, code, start + 1))
            i = j
        i += 1
    return blocks


def shown_output(code: str):
    """The comment lines right after each ``print(...)`` statement: what the README says the block prints."""
    shown, after_print, depth = [], False, 0
    for line in code.splitlines():
        if after_print and line.startswith("# "):
            shown.append(line[2:])
            continue
        if line.startswith("#"):
            after_print = False
            continue
        statement = line.split("#")[0]
        if depth == 0:
            after_print = "print(" in statement
        depth += statement.count("(") + statement.count("[") - statement.count(")") - statement.count("]")
        if depth > 0:
            after_print = after_print or "print(" in statement
    return shown


def masked(text: str) -> str:
    return " ".join(re.sub(r"-?\d+(\.\d+)?", "#", text).split())


def test_readme_parser_sees_every_python_block():
    text = README.read_text()
    assert len(readme_blocks(text)) == text.count("```python\n") >= 15


def test_shown_output_reads_comments_after_print():
    code = 'x = 1  # not output\nprint(f(x,\n        2))\n# a  b\n# c\ny = 2\n# a comment, not output\n'
    assert shown_output(code) == ["a  b", "c"]


def run_readme(tmp_path, monkeypatch):
    """Run the blocks; returns ``([(heading, line, markers, stdout, shown)], {heading: names after it})``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))  # `from examples.loans import ...`, as from the repository root
    results, scopes, scope = [], {"__dir__": tmp_path}, {"__name__": "__readme__"}
    for heading, markers, code, line in readme_blocks(README.read_text()):
        if "skip" in markers:
            results.append((heading, line, markers, None, None))
            continue
        if "after" in markers:
            assert markers["after"] in scopes, f"README line {line}: no block under {markers['after']!r} before it"
            scope = dict(scopes[markers["after"]])
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small data: tuning on a handful of rows warns, as it should
            try:
                exec(compile(code, f"README.md:{line}", "exec"), scope)
            except Exception as error:
                raise AssertionError(f"README block at line {line} ({heading}) failed: {error!r}") from error
        scopes[heading] = dict(scope)
        results.append((heading, line, markers, out.getvalue(), shown_output(code)))
    return results, scopes


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield run_readme(tmp_path_factory.mktemp("readme"), monkeypatch)
    finally:
        monkeypatch.undo()


def test_every_readme_block_runs_and_prints_what_it_shows(readme_run):
    results, _ = readme_run
    for heading, line, markers, printed, shown in results:
        if "skip" in markers or not shown:
            continue
        printed_lines = [p.rstrip() for p in printed.splitlines()]
        if "loose" in markers:
            assert masked(shown[0]) in {masked(p) for p in printed_lines}, (line, shown[0], printed)
        else:
            expected = "\n".join(s.rstrip() for s in shown)
            assert expected in "\n".join(printed_lines), (line, expected, printed)


def test_readme_skips_only_hardware_blocks(readme_run):
    results, _ = readme_run
    skipped = [(line, markers["skip"]) for _, line, markers, _, _ in results if "skip" in markers]
    assert skipped and all("GPU" in reason or "DDP" in reason for _, reason in skipped), skipped
    for line, reason in skipped:  # said in the test report too
        warnings.warn(f"README block at line {line} not run: {reason}")


def test_readme_quickstart_masks_match_its_table(readme_run):
    _, scopes = readme_run
    scope = scopes["Quickstart"]
    flow, dataset = scope["flow"], scope["dataset"]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    masks = {flow.task_paths[k]: "".join(str(int(v)) for v in m) for k, m in flow.get_masks(batch=batch).items()}
    table = dict(re.findall(r"^\| ([\w.]+) \| ([01]{8}) \|$", README.read_text(), re.M))
    assert masks == table


def test_readme_examples_write_what_they_say(readme_run):
    _, scopes = readme_run
    runner = scopes["Training with the Catalyst runner"]["runner"]
    run_dir = scopes["__dir__"] / runner.run_dir
    for name in ("flow.json", "splits.json", "tuned.json", "evaluation_test_gt.csv", "checkpoints", "csv_logger"):
        assert (run_dir / name).exists(), name
    root = scopes["__dir__"]
    export_scope = scopes["Deployable export"]
    assert (root / export_scope["path"]).exists() and (root / "deploy" / "model.onnx").exists()
