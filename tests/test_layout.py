"""The package's shape: which part may import which, and no module past ~450 lines.

The rules are the ones each folder's ``__init__.py`` states; this reads every
import statement of the source tree (including imports inside functions) so a
change that reaches the wrong way fails here instead of in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "shoplens"
MAX_LINES = 450

# Package prefix -> the shoplens modules it may import (besides itself).
# Checked longest prefix first, so a room's rule wins over its part's.
ALLOWED: dict[str, tuple[str, ...]] = {
    "shoplens.files": (),
    "shoplens.models": (
        "shoplens.config",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.cli_options",
    ),
    "shoplens.indexer.catalog": (
        "shoplens.db",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.ids",
    ),
    "shoplens.indexer.vectors": ("shoplens.errors", "shoplens.files"),
    "shoplens.indexer.sources": (
        "shoplens.errors",
        "shoplens.ids",
        "shoplens.files",
        "shoplens.models",
        "shoplens.indexer.catalog.types",
    ),
    "shoplens.indexer.engines": (
        "shoplens.config",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.models",
        "shoplens.indexer.sources",
        "shoplens.indexer.catalog",
    ),
    "shoplens.indexer.serving": (
        "shoplens.config",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.models",
        "shoplens.indexer.sources",
        "shoplens.indexer.catalog",
        "shoplens.indexer.vectors",
        "shoplens.indexer.engines",
    ),
    "shoplens.indexer.feedback": (
        "shoplens.config",
        "shoplens.db",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.ids",
        "shoplens.models",
    ),
    "shoplens.ar_assets": (
        "shoplens.config",
        "shoplens.errors",
        "shoplens.files",
        "shoplens.ids",
        "shoplens.db",
        "shoplens.cli_options",
    ),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "shoplens" or name.startswith("shoplens.")}


def _rule(module: str) -> tuple[str, tuple[str, ...]] | None:
    for prefix in sorted(ALLOWED, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, ALLOWED[prefix]
    return None


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_the_allowed_way(module: str, path: Path) -> None:
    rule = _rule(module)
    if rule is None:
        return  # service, ops, cli: the edges may import every part
    prefix, allowed = rule
    # An "from shoplens.x import y" names both shoplens.x and shoplens.x.y: one
    # allowed spelling is enough (y may be a module or a name inside x).
    names = _imports(path)
    wrong = sorted(
        n
        for n in names
        if not _within(n, (prefix, *allowed))
        and not any(_within(m, (prefix, *allowed)) for m in names if n.startswith(m + "."))
        and n != "shoplens"
    )
    assert not wrong, f"{module} ({prefix}) imports {wrong}; allowed: {allowed}"


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from shoplens.service.deps import get_state\n")
    names = _imports(bad)
    assert "shoplens.service.deps" in names
    prefix, allowed = _rule("shoplens.indexer.catalog.rows") or ("", ())
    assert prefix == "shoplens.indexer.catalog"
    assert not _within("shoplens.service.deps", (prefix, *allowed))


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_modules_stay_small(module: str, path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by idea (limit {MAX_LINES})"


def test_every_package_says_what_it_owns() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 60, (
            f"{init.relative_to(REPO)} needs a docstring saying what it owns"
        )
