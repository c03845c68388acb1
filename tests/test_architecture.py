"""The shape of the ``gdsec`` package: no import cycles, each module importable alone, no hidden caches, small modules.

These tests read the source (AST), so they are fast and fail with the file and line to fix.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import GDSEC_MODULES as MODULES
from helpers import GDSEC_SOURCES as SOURCES
from helpers import ROOT

MAX_LINES = 300


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _gdsec_imports(module: str, tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(imported gdsec module, line, at top level?) for every import of a gdsec module in ``tree``."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base is None:
                continue
            # `from gdsec.attacks import gradient` imports the submodule when there is one
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        for target in targets:
            if target == "gdsec" or target.startswith("gdsec."):
                found.append((target, node.lineno, id(node) in top))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _gdsec_imports(name, ast.parse(path.read_text())):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_gdsec():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_lazy_gdsec_imports():
    lazy = []
    for name, path in MODULES.items():
        source = path.read_text()
        lazy += [
            f"{path.relative_to(ROOT)}:{line} imports {target} inside a function"
            for target, line, top in _gdsec_imports(name, ast.parse(source))
            if not top
        ]
        lazy += [
            f"{path.relative_to(ROOT)}: uses importlib"
            for _ in re.findall(r"importlib\.import_module", source)
        ]
        lazy += [
            f"{path.relative_to(ROOT)}: module-level __getattr__"
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
        ]
    assert not lazy, "\n".join(lazy)


#: Imports each module named on the command line as if it were the first ``gdsec`` import of a fresh
#: interpreter: every ``gdsec*`` entry is purged from ``sys.modules`` first (third-party packages such
#: as torch stay loaded, so it stays fast), so a module that uses another without importing it fails.
#: A first pass loads the third-party packages, whose own import-time effects are not ours; after it,
#: no gdsec import may change ``sys.path`` or the import hooks.
IMPORT_ALONE = """
import importlib, sys, traceback
def purge():
    for loaded in [m for m in sys.modules if m == "gdsec" or m.startswith("gdsec.")]:
        del sys.modules[loaded]
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
failed = []
for name in sys.argv[1:]:
    purge()
    before = (list(sys.path), list(sys.meta_path), list(sys.path_hooks))
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\\n" + traceback.format_exc(limit=-3))
    if (list(sys.path), list(sys.meta_path), list(sys.path_hooks)) != before:
        failed.append(name + ": changed sys.path or the import hooks")
print("\\n".join(failed), file=sys.stderr)
sys.exit(1 if failed else 0)
"""


def _import_alone(names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.integration
def test_every_module_imports_on_its_own():
    done = _import_alone(sorted(MODULES))
    assert done.returncode == 0, done.stderr[-3000:]


def test_import_alone_catches_a_module_that_relies_on_another_being_imported(tmp_path):
    package = tmp_path / "gdsec"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("VALUE = 1\n")
    (package / "leaf.py").write_text(
        "import gdsec\nVALUE = gdsec.inner.VALUE\n"
    )  # never imports gdsec.inner
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + IMPORT_ALONE
    together = subprocess.run(
        [
            sys.executable,
            "-c",
            script.replace("del sys.modules[loaded]", "pass"),
            "gdsec.inner",
            "gdsec.leaf",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    alone = subprocess.run(
        [sys.executable, "-c", script, "gdsec.inner", "gdsec.leaf"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert together.returncode == 0, "without the purge the order masks the missing import"
    assert alone.returncode == 1 and "gdsec.leaf" in alone.stderr, alone.stderr


def test_no_module_level_caches_or_global_state():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    name = ast.unparse(decorator)
                    if re.search(r"\b(lru_cache|cache)\b", name):
                        problems.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} @{name} on {node.name}"
                        )
            if isinstance(node, ast.Global):
                problems.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} global {', '.join(node.names)}"
                )
        for node in tree.body:  # mutable module-level settings such as SETTINGS = {...}
            if isinstance(node, ast.Assign) and isinstance(
                node.value, ast.Dict | ast.List | ast.Set
            ):
                names = [ast.unparse(t) for t in node.targets]
                if any(re.search(r"SETTINGS|CONFIG|CACHE", n) for n in names):
                    problems.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} mutable module-level {names}"
                    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT / "gdsec")) for p in SOURCES])
def test_module_is_small(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(ROOT)} has {lines} lines (split it by responsibility, <= {MAX_LINES})"
    )
