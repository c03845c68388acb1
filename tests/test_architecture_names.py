"""The names of the ``gdsec`` package: documented, exported as listed, and each defined by one module."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from helpers import GDSEC_MODULES as MODULES
from helpers import GDSEC_SOURCES as SOURCES
from helpers import ROOT

PACKAGE = ROOT / "gdsec"


def _public_objects():
    for name in sorted(MODULES):
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name:
                yield f"{name}.{attr}", obj


def test_public_functions_name_the_chapter_that_teaches_them():
    missing = [
        qualname
        for qualname, obj in _public_objects()
        if not re.search(r"(Taught|Used) in chapters? \d", inspect.getdoc(obj) or "")
    ]
    assert not missing, "docstrings without 'Taught in chapter N.':\n" + "\n".join(missing)


def test_every_all_name_exists():
    broken = []
    for name in sorted(MODULES):
        module = importlib.import_module(name)
        broken += [
            f"{name}.{attr}" for attr in getattr(module, "__all__", []) if not hasattr(module, attr)
        ]
        broken += [
            f"{name}.{attr} (not in dir)"
            for attr in getattr(module, "__all__", [])
            if attr not in dir(module)
        ]
    assert not broken, broken


def test_package_docstring_lists_every_module():
    import gdsec

    # the modules a bullet names before its dash; the description after it may quote other names
    heads = [
        line.split("—")[0] for line in (gdsec.__doc__ or "").splitlines() if line.startswith("* ")
    ]
    listed = {name for head in heads for name in re.findall(r"``(\w+)``", head)}
    present = {
        info.name for info in pkgutil.iter_modules([str(PACKAGE)]) if not info.name.startswith("_")
    }
    assert present <= listed, f"gdsec/__init__.py does not list: {sorted(present - listed)}"
    assert listed <= present, (
        f"gdsec/__init__.py lists modules that do not exist: {sorted(listed - present)}"
    )


def _defined_names(path: Path) -> dict[str, int]:
    """Public names a module DEFINES at top level (def, class, assignment), with their line.

    Imports are not definitions, so a package ``__init__`` that re-exports a submodule's object is
    fine; so is an ``__init__`` assignment of an imported object (``X = submodule.X``).
    """
    names: dict[str, int] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            targets = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            if path.name == "__init__.py" and isinstance(node.value, ast.Name | ast.Attribute):
                continue
            nodes = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [n.id for t in nodes for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            continue
        names.update({name: node.lineno for name in targets if not name.startswith("_")})
    return names


def duplicate_public_names(paths: list[Path], root: Path = ROOT) -> dict[str, list[str]]:
    """Public name -> the places (path:line) that define it, for names more than one module defines."""
    places: dict[str, list[str]] = {}
    for path in paths:
        for name, line in _defined_names(path).items():
            places.setdefault(name, []).append(f"{path.relative_to(root)}:{line}")
    return {name: where for name, where in sorted(places.items()) if len(where) > 1}


def test_duplicate_finder_ignores_reexports(tmp_path):
    (tmp_path / "a.py").write_text(
        "def wilson(): ...\nclass Recipe: ...\nLIMIT = 3\n_private = 1\n"
    )
    (tmp_path / "b.py").write_text("from a import wilson\nRecipe = 2\n_private = 2\n")
    (tmp_path / "__init__.py").write_text("from a import LIMIT\nimport a\nwilson = a.wilson\n")
    found = duplicate_public_names(sorted(tmp_path.glob("*.py")), tmp_path)
    assert found == {"Recipe": ["a.py:2", "b.py:2"]}


def test_no_two_modules_define_the_same_public_name():
    duplicates = duplicate_public_names(SOURCES)
    assert not duplicates, "one name, one owner:\n" + "\n".join(
        f"{n}: {', '.join(w)}" for n, w in duplicates.items()
    )


def test_no_module_is_hidden_by_a_name_its_package_exports():
    """``import gdsec.attacks.x`` must give the module x, not a function x re-exported by the package."""
    hidden = []
    for package in sorted(MODULES):
        path = PACKAGE.joinpath(*package.split(".")[1:]) / "__init__.py"
        if not path.exists():
            continue
        exported = set(getattr(importlib.import_module(package), "__all__", []))
        for info in pkgutil.iter_modules([str(path.parent)]):
            if info.name in exported:
                hidden.append(f"{package}.{info.name}")
    assert not hidden, "submodules shadowed by an exported name of the same spelling: " + ", ".join(
        hidden
    )
