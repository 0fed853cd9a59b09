"""Every module of ``gco_tasks`` opens with a docstring of at most five lines that places it in the flow;
the long why lives in docs/architecture.md. ``core/errors.py`` is the exception: its docstring shows the
whole error tree (as ``celery/exceptions.py`` does), and the test holds that tree to the classes."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import gco_tasks
from gco_tasks.core.errors import GcoError

PACKAGE = Path(gco_tasks.__file__).parent


def test_every_module_docstring_is_five_lines_at_most() -> None:
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        assert doc, f"{path.relative_to(PACKAGE)} has no module docstring"
        if len(doc.splitlines()) > 5 and path != PACKAGE / "core" / "errors.py":
            long[str(path.relative_to(PACKAGE))] = len(doc.splitlines())
    assert long == {}, "move the why to docs/architecture.md"


def test_the_error_tree_in_errors_py_names_every_error_class() -> None:
    for package in ("core", "adapters"):  # where errors are defined (and cli.diff): no app is created
        path = [str(PACKAGE / package)]
        for module in pkgutil.walk_packages(path, f"gco_tasks.{package}."):
            importlib.import_module(module.name)
    importlib.import_module("gco_tasks.cli.diff")
    found, todo = set(), [GcoError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    doc = ast.get_docstring(ast.parse((PACKAGE / "core" / "errors.py").read_text())) or ""
    missing = sorted(
        cls.__name__ for cls in found if f"``{cls.__name__}``" not in doc and cls.__name__ not in doc
    )
    assert missing == [], f"add to the error tree in core/errors.py: {missing}"
