"""A holder of the OTLP token sends another task's note.

``agent.approval.decision`` (the agent saying it stopped waiting) closes
the request it names. Sent on a span stamped into another task's run (its
trace and root) but claiming another task id or session, it is ignored:
the request stays open in the run's record and in the tracker's view,
the note is kept on its checkpoint marked ignored and counted. The opener's
own note still closes it. On each state store the control log runs on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.receiver.test_hostile_token_requests import ROOT, TASK, TRACE, Agent, Make, ask, make_store

from spanvisor.control import runs
from spanvisor.events import Checkpoint
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.tracking.openers import IGNORED_NOTE

__all__ = ["make_store"]  # the store fixture, parametrized: memory, local, postgres


def note(a: Agent, at_ns: int, task_id: str, session: str | None = None) -> None:
    a.n += 1
    stamps = {cv.TASK_ROOT: ROOT, cv.TASK_ID: task_id, **({cv.OI_SESSION: session} if session else {})}
    ev = SpanEventData(cv.EVENT_APPROVAL_DECISION, at_ns, {cv.APPROVAL_ID: "a1", cv.APPROVAL_OUTCOME: "timed_out"})
    span = SpanData(TRACE, f"{0xD000 + a.n:016x}", ROOT, "note", at_ns, at_ns + 1, stamps, events=(ev,))
    evs = a.tracker.span_ended(span)
    a.control.observe(evs)
    a.events.extend(evs)


async def scenario(make: Make, tmp: Path) -> None:
    store = await make(tmp)
    try:
        a = Agent(store)
        t = time.time_ns() - 5_000_000_000
        a.span(t, cv.EVENT_APPROVAL_REQUEST, ask("deploy?"))
        assert (await a.request())["state"] == "open"

        note(a, t + 10, "someone-else")  # another task id
        note(a, t + 20, TASK, session="s-other")  # the task's id, another session
        got = await a.request()
        assert got["state"] == "open", got
        view = [e.task for e in a.events if e.task.run_id][-1]
        assert [r.approval_id for r in view.approvals] == ["a1"]
        ignored = [e for e in a.events if isinstance(e, Checkpoint) and IGNORED_NOTE in e.attributes]
        assert len(ignored) == 2 and all("another task or session" in " ".join(e.notes) for e in ignored)
        assert a.tracker.stats.value("approval_notes_ignored_total") == 2

        note(a, t + 30, TASK)  # the opener's own
        got = await a.request()
        assert got["state"] == "expired" and got["why"] == "the agent stopped waiting", got
        rec = await a.control.run(TASK)
        assert runs.open_requests(rec, time.time_ns()) == []
    finally:
        await store.close()


def test_only_the_openers_note_withdraws_a_request(make_store: Make, tmp_path: Path) -> None:
    asyncio.run(scenario(make_store, tmp_path))
