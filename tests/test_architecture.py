"""The package's shape, checked from its source (ARCHITECTURE.md): imports go one way, no mixins, small files and
folders, and paths under a run directory are built only in ``run/``.

Read with ``ast``, nothing imported: a violation names the file and line to look at.
"""
import ast
import os
import re
from collections import defaultdict

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dnn_cool_catalyst")
NAME = "dnn_cool_catalyst"
MAX_FILE_LINES = 400
MAX_FOLDER_SHARE = 0.15

# File and folder names of a run directory (run/layout.py owns them).
RUN_DIR_NAMES = {"checkpoints", "tensorboard", "infer", "export", "tuned.json", "splits.json", "flow.json",
                 "stages.json", "run_config.json", "fitted_targets.json", "config.yml", "cv.json", "cv_summary.csv",
                 ".lock", "manifest.json", "index.json"}
RUN_DIR_FILE = re.compile(r"\.(pth|json|csv|npz|yml|lock)$")
# Paths joined outside a run directory: the project folder, the report's output folder, an export's side file,
# a scratch file of the atomic writer, the synthetic project's data folder (its labels.csv), and the Catalyst patch
# (it reproduces the body and file names of Catalyst's own CheckpointCallback; compat/ imports nothing of ours).
OUTSIDE_RUN_DIR = {"project.py", "atomic.py", os.path.join("report", "html.py"), os.path.join("export", "build.py"),
                   os.path.join("synthetic", "security.py"), os.path.join("compat", "catalyst.py")}


def _modules():
    """``{dotted name: (path, ast)}`` of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                with open(path, encoding="utf-8") as f:
                    found[".".join(parts)] = (path, ast.parse(f.read(), path))
    return found


MODULES = _modules()


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _source(node: ast.ImportFrom, module: str) -> str:
    """The absolute name of the module a ``from ... import`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    is_package = module in MODULES and MODULES[module][0].endswith("__init__.py")
    base = module.split(".") if is_package else module.split(".")[:-1]
    return ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))


def _imports(module: str, tree) -> set:
    """Modules of ours that ``module`` imports anywhere (functions included, ``TYPE_CHECKING`` blocks not): a
    ``from package import name`` counts as the submodule when ``name`` is one, else as the package."""
    targets, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name.startswith(NAME))
        elif isinstance(node, ast.ImportFrom):
            source = _source(node, module)
            if not source.startswith(NAME):
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                targets.add(child if child in MODULES else source)
    return {t for t in targets if t in MODULES and t != module}


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict:
    return {module: _imports(module, tree) for module, (_, tree) in MODULES.items()}


def test_no_import_cycle():
    cycles = _cycles(import_graph())
    assert not cycles, f"import cycles (each a set of modules that import each other): {cycles}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_mixin_classes():
    offenders = []
    for module, (path, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if node.name.endswith("Mixin") or any(base.endswith("Mixin") for base in bases):
                    offenders.append(f"{path}:{node.lineno} {node.name}({', '.join(bases)})")
    assert not offenders, offenders


def test_the_runner_has_one_base():
    from catalyst import dl

    from dnn_cool_catalyst.runners import DnnCoolSupervisedRunner

    assert DnnCoolSupervisedRunner.__bases__ == (dl.SupervisedRunner,)


def _lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def test_no_file_over_the_limit():
    long = {os.path.relpath(path, PACKAGE): n for path, _ in MODULES.values() if (n := _lines(path)) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def folder_lines() -> dict:
    """Lines per top-level folder of the package (``.`` for the modules at its root)."""
    lines = defaultdict(int)
    for path, _ in MODULES.values():
        relative = os.path.relpath(path, PACKAGE)
        lines[relative.split(os.sep)[0] if os.sep in relative else "."] += _lines(path)
    return dict(lines)


def test_no_folder_over_its_share():
    lines = folder_lines()
    total = sum(lines.values())
    large = {folder: round(n / total, 3) for folder, n in lines.items() if n > MAX_FOLDER_SHARE * total}
    assert not large, f"folders over {MAX_FOLDER_SHARE:.0%} of the package's {total} lines: {large}"


def _path_literal(node) -> str:
    """The literal text of a string or f-string argument (f-string fields as ``{}``), else ``""``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return ""


def _names_from_run(tree, module: str) -> set:
    """Names ``module`` imports from ``run/`` (``from ..run.layout import TASKS_FILE``, ``from ..run import
    artifacts``): joined onto a folder outside ``run/``, they build a run-directory path there."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _source(node, module)
            if source == f"{NAME}.run" or source.startswith(f"{NAME}.run."):
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def run_dir_paths_built(tree, module: str = f"{NAME}.callbacks.example") -> list:
    """``(line, text)`` of each path under a run directory that ``tree`` builds: an ``os.path.join`` argument
    naming a run-directory file or folder (a literal, or a name imported from ``run/``), or an f-string path with a
    ``/`` ending in such a file."""
    found, from_run = [], _names_from_run(tree, module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.path.join", "join", "osp.join"):
            for arg in node.args:
                text = _path_literal(arg)
                last = text.rsplit("/", 1)[-1]
                if text and not any(c.isspace() for c in text) and (last in RUN_DIR_NAMES or RUN_DIR_FILE.search(last)):
                    found.append((node.lineno, text))
                used = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)}
                if used & from_run:
                    found.append((node.lineno, ast.unparse(arg)))
        elif isinstance(node, ast.JoinedStr):
            text = _path_literal(node)
            if "/" in text and not any(c.isspace() for c in text) and RUN_DIR_FILE.search(text):
                found.append((node.lineno, text))
    return found


def test_the_path_detector():
    tree = ast.parse('os.path.join(run_dir, "tuned.json")\nos.path.join(d, f"runner.{w}.pth")\n'
                     'f"{logdir}/{mode}.best.pth"\nos.path.join(a, b)\nprint(f"see {p} and tuned.json")\n'
                     'from ..run.layout import TASKS_FILE\nos.path.join(d, TASKS_FILE)\n'
                     'from ..run import artifacts\nos.path.join(d, artifacts.MANIFEST)\n')
    assert sorted(run_dir_paths_built(tree)) == [(1, "tuned.json"), (2, "runner.{}.pth"), (3, "{}/{}.best.pth"),
                                                 (7, "TASKS_FILE"), (9, "artifacts.MANIFEST")]


def test_run_directory_paths_are_built_in_run_only():
    offenders = []
    for module, (path, tree) in MODULES.items():
        relative = os.path.relpath(path, PACKAGE)
        if relative.startswith("run" + os.sep) or relative in OUTSIDE_RUN_DIR:
            continue
        offenders += [f"{relative}:{line} {text!r}" for line, text in run_dir_paths_built(tree, module)]
    assert not offenders, "paths under a run directory built outside run/ (use run.layout.RunDir):\n" + \
        "\n".join(offenders)


@pytest.mark.parametrize("concept", ["predict", "interpretation", "export", "tuning"])
def test_one_home_per_concept(concept):
    """Modules and packages named after a concept: one, the package itself (``predict.py`` is the command
    ``python -m dnn_cool_catalyst.predict`` of the README, a three-line entry into ``prediction/cli.py``)."""
    homes = sorted(module for module in MODULES if concept in module.split(".")[-1] and
                   not module.startswith(f"{NAME}.{concept}.") and module != f"{NAME}.predict")
    assert len(homes) == 1, homes


# ARCHITECTURE.md's layers: a module imports from its own layer or the layers above it (smaller numbers) only.
LAYERS = {
    1: ["errors", "atomic", "messages", "safe_read", "signatures", "kept_batches", "spreadsheet", "jobs",
        "console_summary"],
    2: ["compat", "functional", "tuning"],
    3: ["tasks"],
    4: ["graph", "data", "parallel", "augment"],
    5: ["measures"],
    6: ["interpretation", "flow"],
    7: ["run"],
    8: ["callbacks", "interpretation.callback"],
    9: ["training", "outputs", "interpretation.examples", "prediction", "export", "experiments"],
    10: ["runners"],
    11: ["project", "tabular", "config", "report", "predict", "prediction.cli", "quickstart", "demo", "synthetic",
         ""],
}


def layer_of(module: str) -> int:
    """The layer of the longest name in ``LAYERS`` that ``module`` is or is inside (the package itself: 11)."""
    relative = module[len(NAME) + 1:] if module != NAME else ""
    best, layer = -1, None
    for number, names in LAYERS.items():
        for name in names:
            inside = relative == name or relative.startswith(name + ".") or name == ""
            if inside and len(name) > best:
                best, layer = len(name), number
    return layer


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []
    assert layer_of(f"{NAME}.interpretation.examples") == 9 and layer_of(f"{NAME}.interpretation.selection") == 6


def test_imports_go_up_the_layers():
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert not upward, "\n".join(upward)
