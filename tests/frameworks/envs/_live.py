"""What spanvisor shows while a run is still going, read from inside it.

A scenario's ``lookup`` tool calls :func:`probe` on the agent's thread, in
the middle of the run (after its first model call). Where a test armed it
with the event list of the processor path's sink, the probe waits up to
:data:`WAIT_S` for the pipeline to show the task opened and a model call
counted, and notes what it saw; unarmed (every other path), it does
nothing. Only the first probe of an armed run counts. Used by the suite's
frameworks and, through ``_drive.py``, by those in venvs of their own.
"""

from __future__ import annotations

import time
from typing import Any

# The pipeline delivers within its pump interval (5 ms while spans come);
# a loaded CI machine may take far longer: a wait, not a timing test.
WAIT_S = 5.0

# The armed sink's event list, in a one-slot list (no global statement).
_armed: list[list[Any]] = []
seen: list[dict[str, Any]] = []


def arm(events: list[Any]) -> None:
    _armed[:] = [events]
    seen.clear()


def disarm() -> None:
    _armed.clear()


def probe() -> None:
    if not _armed or seen:
        return
    events = _armed[0]
    deadline = time.monotonic() + WAIT_S
    while True:
        now = list(events)
        started = [e for e in now if type(e).__name__ == "TaskStarted"]
        calls = [e for e in now if type(e).__name__ == "Checkpoint" and e.source == "model_call"]
        if (started and calls) or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    seen.append({"started": bool(started), "model_calls": len(calls)})
