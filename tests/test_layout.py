"""The house rules that a linter does not check.

import-linter (``make lint``) checks that imports go one way; these check
that no module grows past what a reader takes in at once, and that a class
name means one thing in the core and across the core and its plugins.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# An alarm, not the rule that shapes the cuts: a module is split where a
# reader would name the seam, and one past this long has missed one.
MAX_LINES = 600


def _modules(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def test_no_module_passes_600_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in _modules("src", "plugins", "tests/fakes")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"split these along a seam a reader would name: {too_long}"


def _classes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def test_a_class_name_means_one_thing_in_the_core_and_beside_it() -> None:
    """Each plugin is its own package and may reuse a name another plugin
    uses; the core may not share a class name with itself or a plugin."""
    where: dict[str, set[str]] = defaultdict(set)
    for p in _modules("src/spanvisor"):
        for name in _classes(p):
            where[name].add(str(p.relative_to(ROOT)))
    core_dupes = {n: sorted(ps) for n, ps in where.items() if len(ps) > 1}
    assert not core_dupes
    clashes = {}
    for p in _modules("plugins"):
        for name in _classes(p):
            if name in where:
                clashes[name] = [*sorted(where[name]), str(p.relative_to(ROOT))]
    assert not clashes


def test_the_core_folders_are_the_flow_a_span_takes() -> None:
    """A reader of the tree alone can say where a span goes next: each
    folder's docstring names what comes next (checked so they stay)."""
    core = ROOT / "src" / "spanvisor"
    nexts = {
        "spans": "spanvisor.tracking",
        "tracking": "spanvisor.pipeline",
        "pipeline": "plugins/",
        "otel": "spanvisor.pipeline",
    }
    for folder, successor in nexts.items():
        doc = ast.get_docstring(ast.parse((core / folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert successor in doc, (folder, doc)


def test_every_core_folder_and_module_has_its_place_in_the_import_contracts() -> None:
    """A new folder or flat module of the core is placed in a layer or among
    the shared modules of ``[tool.importlinter]``, so imports into and out of
    it are checked like the others' (``make lint``)."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    named: set[str] = set()
    for c in contracts["contracts"]:
        for key in ("layers", "source_modules"):
            for entry in c.get(key, ()):
                named.update(part.strip() for part in entry.replace(":", "|").split("|"))
    core = ROOT / "src" / "spanvisor"
    parts = {p.name for p in core.iterdir() if (p / "__init__.py").exists()}
    parts |= {p.stem for p in core.glob("*.py") if p.stem != "__init__"}
    unplaced = {p for p in parts if not any(n == f"spanvisor.{p}" or n.startswith(f"spanvisor.{p}.") for n in named)}
    assert not unplaced, f"place these in [tool.importlinter]: {sorted(unplaced)}"
