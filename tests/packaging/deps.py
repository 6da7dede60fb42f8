"""Which installed distributions spanvisor's code imports.

Every ``import`` in ``src/`` and ``plugins/`` (inside functions too) is
resolved to the distribution whose files hold that module, through the
installed distributions' RECORDs, so namespace packages (``google``,
``opentelemetry``) resolve to the distribution of the actual module.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = ("spanvisor", "spanvisor_console", "spanvisor_postgres", "spanvisor_slack", "spanvisor_prometheus")
OWN += ("spanvisor_grafana",)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> set[str]:
    mods: set[str] = set()
    for top in ("src", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    mods |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods.add(node.module)
                    # `from opentelemetry import trace` imports opentelemetry.trace.
                    mods |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in mods if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith(OWN)}


@cache
def _file_index() -> dict[str, set[str]]:
    index: dict[str, set[str]] = {}
    for dist in md.distributions():
        name = normalize(dist.metadata["Name"])
        if name == "spanvisor":
            continue
        for f in dist.files or []:
            s = str(f)
            if s.endswith((".py", ".so", ".pyd")) and not s.startswith(("..", "/")):
                index.setdefault(s, set()).add(name)
    return index


def distributions_of(module: str) -> set[str]:
    base = module.replace(".", "/")
    index = _file_index()
    found = index.get(base + ".py", set()) | index.get(base + "/__init__.py", set())
    if not found:
        found = {
            d
            for path, ds in index.items()
            if path.startswith(base + ".") and path.endswith((".so", ".pyd"))
            for d in ds
        }
    return found


def imported_distributions() -> set[str]:
    """Distributions that hold a module spanvisor imports (a namespace root alone counts for none)."""
    out: set[str] = set()
    for module in imported_modules():
        dists = distributions_of(module)
        if len(dists) == 1:
            out |= dists
    return out


def is_meta(dist: str) -> bool:
    """A distribution that ships no code beyond its version number, only requirements."""
    files = [str(f) for f in md.files(dist) or [] if str(f).endswith(".py")]
    return all("/version" in f for f in files)


def provided_by_meta(dist: str, declared: set[str]) -> bool:
    """``dist`` is a requirement of a declared meta-distribution (opentelemetry-exporter-otlp)."""
    for name in declared:
        try:
            if not is_meta(name):
                continue
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        if any(normalize(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) == dist for r in requires if "extra ==" not in r):
            return True
    return False
