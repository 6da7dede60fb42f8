"""The installed packages' entry points, read once per process.

Sinks, state stores, stream encodings, CLI adapters, commands and settings
come from entry points. ``importlib.metadata.entry_points(group=...)``
reads every installed distribution's metadata again on each call, 7 to
10 ms in a venv with spanvisor's dependencies, and ``serve`` asked nine
times before it listened, a ``spanvisor`` command three or four. Here they are
read at the first ask and kept: a package installed while a process runs
is seen by its next start, as a console script's own is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as _read
from typing import Protocol


class _Installed(Protocol):
    """What ``entry_points()`` gives: ``EntryPoints``, or on Python 3.11 a
    ``SelectableGroups`` (gone in 3.12); ``select`` is the same on both."""

    def select(self, *, group: str = ..., name: str = ...) -> Iterable[EntryPoint]: ...


@functools.cache
def _installed() -> _Installed:
    return _read()


def entry_points(group: str, name: str | None = None) -> tuple[EntryPoint, ...]:
    """The entry points of ``group`` (those called ``name`` when given), in
    the order ``importlib.metadata`` lists them."""
    found = _installed().select(group=group) if name is None else _installed().select(group=group, name=name)
    return tuple(found)


__all__ = ["entry_points"]
