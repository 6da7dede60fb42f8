"""Which coding-agent CLIs spanvisor knows: the built-in adapters, and any
a package installs in the ``spanvisor.clis`` entry-point group.

A built-in name resolves by importing its one module and nothing else:
the gate's hook starts cold for every tool call, and reading the installed
packages' entry points costs it some 40 ms, so the group is read only for
a name that is not built in (once per process), or when every CLI is
listed. A package's adapter cannot take a built-in name: the built-in
wins, and the other is named in :func:`shadowed`.

An entry point names the adapter instance, a class (made with no
arguments) or a module holding ``ADAPTER``::

    [project.entry-points."spanvisor.clis"]
    toy = "spanvisor_toy_cli:ADAPTER"
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import threading
from typing import Any

from spanvisor.clis.adapter import Adapter

GROUP = "spanvisor.clis"
# The built-in adapters, by name: one module each, in this package.
BUILTIN: dict[str, str] = {
    "claude-code": "claude_code",
    "codex": "codex",
    "gemini": "gemini",
    "qwen": "qwen",
    "copilot": "copilot",
    "opencode": "opencode",
    "cline": "cline",
    "pi": "pi",
    "kilo": "kilo",
    "droid": "droid",
}
NAMES: tuple[str, ...] = tuple(BUILTIN)

# What a CLI's name may be: it names a route (/v1/hooks/<name>), a command
# (spanvisor hook <name>) and a task id's namespace.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

_lock = threading.Lock()
_loaded: dict[str, Adapter] = {}
# Installed adapters that did not load, or named themselves otherwise: not tried again.
_broken: set[str] = set()


def get(name: str) -> Adapter | None:
    """The adapter called ``name``, or None when no CLI has that name (an
    installed adapter that fails to load is None too: the gate blocks)."""
    found = _loaded.get(name)
    if found is not None:
        return found
    module = BUILTIN.get(name)
    if module is not None:
        adapter = _as_adapter(importlib.import_module(f"{__package__}.{module}"))
    else:
        if name in _broken or not NAME.fullmatch(name):
            return None  # a name a route or a command could not carry, or a package already said broken
        point = _entry_points().get(name)
        if point is None:
            return None
        try:
            adapter = _as_adapter(point.load())
        except Exception as e:  # a broken package is no adapter, said once
            print(f"spanvisor: the CLI adapter {name!r} ({point.value}) does not load: {e}", file=sys.stderr)
            adapter = None
        if adapter is None or adapter.name != name:
            with _lock:
                _broken.add(name)
            return None
    if adapter is None:
        return None
    with _lock:
        return _loaded.setdefault(name, adapter)


def need(name: str) -> Adapter:
    """The adapter called ``name``; :class:`LookupError` naming the known
    ones when there is none."""
    adapter = get(name)
    if adapter is None:
        raise LookupError(f"no coding-agent CLI is called {name!r} (known: {', '.join(names())})")
    return adapter


def names() -> tuple[str, ...]:
    """Every CLI's name: the built-in ones, then the installed ones."""
    return NAMES + tuple(n for n in sorted(_entry_points()) if n not in BUILTIN)


def every() -> tuple[Adapter, ...]:
    """Every CLI's adapter (the installed ones that load)."""
    return tuple(a for a in (get(n) for n in names()) if a is not None)


def builtin() -> tuple[Adapter, ...]:
    """The built-in adapters only (no installed package read)."""
    return tuple(need(n) for n in NAMES)


def by_binary(command: str) -> Adapter | None:
    """The CLI ``spanvisor run -- COMMAND`` starts (by the command's base
    name, without ``.js``, ``.cmd`` or ``.exe``), or None."""
    base = command.rsplit("/", 1)[-1]
    for suffix in (".js", ".cmd", ".exe"):
        base = base.removesuffix(suffix)
    # The built-in ones first, as every() orders them: the installed
    # packages (about 11 ms to read) only for another command.
    found = next((a for a in builtin() if base in a.binaries), None)
    if found is not None:
        return found
    return next((a for a in every() if base in a.binaries), None)


def by_service(service: str) -> Adapter | None:
    """The CLI whose telemetry reports ``service`` as its ``service.name``
    (built-in ones first: the installed packages are read only for
    another service), or None."""
    for name, adapter in list(_loaded.items()):  # the hook's own CLI, without importing the others
        if name in BUILTIN and service in adapter.services:
            return adapter
    found = _services(True).get(service)
    return found if found is not None else _services(False).get(service)


@functools.lru_cache(maxsize=1)
def services_by_namespace() -> dict[str, tuple[str, ...]]:
    """Each session namespace and the services whose sessions it names,
    read once (the pipeline asks it for every new run: an adapter that
    fails to load is not tried again per run)."""
    found: dict[str, tuple[str, ...]] = {}
    for adapter in every():
        found[adapter.namespace] = (*found.get(adapter.namespace, ()), *adapter.services)
    return found


@functools.lru_cache(maxsize=2)
def _services(built_in: bool) -> dict[str, Adapter]:
    found: dict[str, Adapter] = {}
    for adapter in builtin() if built_in else every():
        for service in adapter.services:
            found.setdefault(service, adapter)
    return found


def record_readers() -> tuple[Any, ...]:
    """The modules that read the CLIs' own telemetry (their adapters'
    ``records``: the built-in ones, then the installed ones), imported; one
    that does not import is left out, said once."""
    out = []
    for adapter in every():
        if not adapter.records:
            continue
        try:
            out.append(importlib.import_module(adapter.records))
        except Exception as e:  # a broken package reads nothing; the rest read on
            print(f"spanvisor: {adapter.name}'s records module {adapter.records!r} does not load: {e}", file=sys.stderr)
    return tuple(out)


def shadowed() -> tuple[str, ...]:
    """Installed adapters that name a built-in CLI (never used)."""
    return _installed()[1]


def _entry_points() -> dict[str, Any]:
    return _installed()[0]


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[dict[str, Any], tuple[str, ...]]:
    """The group's entry points by name (read once), and those that name a built-in CLI."""
    from spanvisor.entrypoints import entry_points

    found: dict[str, Any] = {}
    shadowing: list[str] = []
    for point in entry_points(group=GROUP):
        if point.name in BUILTIN:
            shadowing.append(f"{point.name} ({point.value})")
        else:
            found.setdefault(point.name, point)
    return found, tuple(shadowing)


def _as_adapter(obj: Any) -> Adapter | None:
    adapter = getattr(obj, "ADAPTER", obj)
    if isinstance(adapter, type):
        adapter = adapter()
    return adapter if isinstance(adapter, Adapter) else None


__all__ = [
    "BUILTIN",
    "GROUP",
    "NAMES",
    "builtin",
    "by_binary",
    "by_service",
    "every",
    "get",
    "names",
    "need",
    "record_readers",
    "services_by_namespace",
    "shadowed",
]
