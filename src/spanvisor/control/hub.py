"""What a process offers to record people's decisions and read them back.

The pipeline implements :class:`Control` (``spanvisor.pipeline.control``); the
Slack sink (through ``SinkContext.control``), the control API of ``spanvisor
serve`` and in-process agents (through :func:`current`) use it. Each method is
a coroutine that may be awaited on any event loop: the implementation hops to
the pipeline's own loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from spanvisor.events import Decision, TaskView

VerdictOutcome = Literal["applied", "duplicate", "already_decided", "denied", "full"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of a decision, and a line to tell the person who made it.

    ``applied``: recorded and announced to every sink. ``duplicate``: the
    same click again, already recorded (nothing changed). ``already_decided``:
    someone else decided first (``prior``). ``denied``: refused, with the
    ``reason`` (audited as a denied intervention). ``full``: the task holds
    too many decisions.
    """

    outcome: VerdictOutcome
    reason: str | None = None
    prior: Decision | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "duplicate")


@runtime_checkable
class Control(Protocol):
    async def decide(self, decision: Decision, *, denied: str | None = None) -> Verdict:
        """Record ``decision`` (first of its kind wins) and announce it as a
        ``HumanIntervention`` event; with ``denied`` (a reason), only audit it."""
        ...

    async def decisions(self, task_id: str, after: int = 0, wait_s: float = 0.0) -> list[Decision]:
        """The task's decisions past the first ``after``; waits up to
        ``wait_s`` when there are none yet."""
        ...

    async def task(self, task_id: str) -> TaskView | None:
        """The task's view, if this process tracks it (open or just finished)."""
        ...

    async def open_tasks(self) -> list[TaskView]:
        """The tasks this process tracks that are still open."""
        ...


_lock = threading.Lock()
# The process's one Control that agents read from: a one-slot list, not a global.
_current: list[Control] = []


def set_current(control: Control) -> None:
    """Make ``control`` the one this process's agents read decisions from
    (the pipeline does, when it starts; the first one started keeps it)."""
    with _lock:
        if not _current:
            _current.append(control)


def clear_current(control: Control) -> None:
    with _lock:
        if _current and _current[0] is control:
            _current.clear()


def current() -> Control | None:
    return _current[0] if _current else None


__all__ = ["Control", "Verdict", "VerdictOutcome", "clear_current", "current", "set_current"]
