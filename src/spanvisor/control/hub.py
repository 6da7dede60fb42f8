"""What a process offers to record people's decisions and read them back.

The pipeline implements :class:`Control` (``spanvisor.control.judge``); the
Slack sink (through ``SinkContext.control``), the control API of ``spanvisor
serve`` and in-process agents (through :func:`current`) use it. Each method is
a coroutine that may be awaited on any event loop: the implementation hops to
the pipeline's own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from spanvisor.control.runs import RefusalCode
from spanvisor.events import ApprovalRequest, Decision, TaskView

VerdictOutcome = Literal["applied", "duplicate", "already_decided", "denied", "full"]
# Refusals that name something that is not there: the control API answers 404.
NOT_FOUND: frozenset[str] = frozenset({"unknown_task", "unknown_request"})


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
    # Why it was refused, as a code (unknown_request, expired, digest_mismatch …).
    code: RefusalCode | None = None
    # The run it was judged against, and the request it answers (as asked).
    run_id: str = ""
    request: ApprovalRequest | None = None
    # An approve counted toward a request several people must approve (1 of 2).
    votes: int = 0
    votes_needed: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "duplicate")


@runtime_checkable
class Control(Protocol):
    async def decide(
        self, decision: Decision, *, denied: str | None = None, code: RefusalCode | None = None
    ) -> Verdict:
        """Apply ``decision`` to the open request or run it names (first of
        its kind wins) and announce it as a ``HumanIntervention`` event;
        refused (or with ``denied``, a reason, and its ``code``), only audit it."""
        ...

    async def decisions(
        self, task_id: str, after: int = 0, wait_s: float = 0.0, run_id: str | None = None
    ) -> list[Decision]:
        """The run's decisions past the first ``after`` (the task id's latest
        run when none is named); waits up to ``wait_s`` when there are none yet."""
        ...

    async def run(self, task_id: str, run_id: str | None = None) -> Mapping[str, Any] | None:
        """The shared record of a run (the task id's latest when not named):
        its state, requests and decisions (``spanvisor.control.runs``)."""
        ...

    async def runs(self, task_id: str) -> list[str]:
        """The task id's runs, oldest first."""
        ...

    async def open_requests(self) -> list[dict[str, Any]]:
        """Every open approval request, of every replica's tasks."""
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


__all__ = ["NOT_FOUND", "Control", "Verdict", "VerdictOutcome", "clear_current", "current", "set_current"]
