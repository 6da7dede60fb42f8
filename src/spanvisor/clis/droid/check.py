"""``spanvisor check``'s look at Factory Droid beyond its gate entries:
whether its system-managed settings keep every other level's hooks out
(``allowManagedHooksOnly``). Without it a repository's
``.factory/settings.json`` can turn every hook off (``hooks.hooksDisabled``,
read again mid-session) or answer a call before the gate (the first hook
with a decision wins), so each such file from the working folder up to its
repository's root is named (its ``settings.json`` and ``hooks.json``). Nothing is said where Droid is not (no
``droid`` on PATH, no ``~/.factory``)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import MAX_SETTINGS, Adapter


def look(cli: Adapter, env: Mapping[str, str], cwd: Path, system: Path) -> tuple[list[str], list[str], list[str]]:
    home = Path(env.get("FACTORY_HOME_OVERRIDE") or env.get("HOME") or Path.home())
    if not shutil.which("droid", path=env.get("PATH")) and not (home / ".factory").is_dir():
        return [], [], []
    doc = _read(system)
    if doc is None and _present(system):
        # Droid takes a file that exists but cannot be read or parsed as an
        # empty organisation level: no managed hook runs.
        said = f"{system} exists but cannot be read or is not JSON: {cli.title} then runs none of its hooks, the gate's included"
        return [said], [], []
    if isinstance(doc, dict) and doc.get("allowManagedHooksOnly") is True:
        said = f"{cli.title}: {system} sets allowManagedHooksOnly: no user's or repository's hook runs or turns its gate off"
        return [], [], [said]
    problems = [
        f"{path} turns {cli.title}'s hooks off (hooks.hooksDisabled): its gate does not run there"
        for path in _project_files(cwd)
        if _disables(_read(path))
    ]
    warned = [
        f"{cli.title}: {system} does not set allowManagedHooksOnly, so a repository's .factory/settings.json "
        "can turn every hook off (hooks.hooksDisabled) or answer a call before the gate (spanvisor gate install --cli droid)"
    ]
    return problems, warned, []


def _present(path: Path) -> bool:
    """Whether Droid takes ``path`` as there: anything but "no such file"
    (a folder it may not enter too), as its own look does."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def _project_files(cwd: Path) -> list[Path]:
    """A repository's settings files from ``cwd`` up to the folder holding
    ``.git`` (``cwd``'s alone outside a repository)."""
    folders = [cwd]
    for folder in (cwd, *cwd.parents):
        if (folder / ".git").exists():
            folders = [cwd, *cwd.parents][: [cwd, *cwd.parents].index(folder) + 1]
            break
    return [f / ".factory" / name for f in folders for name in ("settings.json", "hooks.json")]


def _disables(doc: Any) -> bool:
    """``hooks.hooksDisabled`` in a settings file, or ``hooksDisabled`` in a
    ``hooks.json`` (a bare map of its events)."""
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    return (isinstance(hooks, dict) and hooks.get("hooksDisabled") is True) or (
        isinstance(doc, dict) and doc.get("hooksDisabled") is True
    )


def _read(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_SETTINGS:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
