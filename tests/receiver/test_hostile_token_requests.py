"""A holder of the OTLP token sends a copy of an open request.

The copy has the same approval id and action, another question, fewer
people to approve it and no requester, and is dated a microsecond before
the first (the tracker keeps the earliest copy of an id in its view). The
run's record keeps the first: the copy is refused and the refusal kept in
the record and counted; the requester still may not approve it. A copy
with the same content raises what the request needs, never lowers it.
On each state store the control log runs on: memory, the local file,
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from spanvisor.control import reasked, runs
from spanvisor.control.judge import PipelineControl
from spanvisor.control.log import ControlLog
from spanvisor.events import Decision, Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.statestores.api import ConditionalStateStore as StateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker

TRACE = "cd" * 16
ROOT = f"{1:016x}"
TASK = "T-hostile"
ACTION = json.dumps({"tool": "Bash", "arguments": {"command": "deploy prod"}})


class Agent:
    """One replica's tracker and control, fed spans of one run."""

    def __init__(self, store: StateStore) -> None:
        self.tracker = TaskTracker()
        self.events: list[Event] = []
        holder: list[PipelineControl] = []

        def dispatch(evs: list[Event]) -> None:
            holder[0].observe(evs)
            self.events.extend(evs)

        self.control = PipelineControl(self.tracker, dispatch, asyncio.get_running_loop)
        holder.append(self.control)
        self.log = ControlLog(store)
        self.control.attach(self.log)
        self.n = 0

    def span(self, at_ns: int, name: str, attrs: dict[str, Any]) -> None:
        self.n += 1
        stamps = {cv.TASK_ROOT: ROOT, cv.TASK_ID: TASK}
        ev = SpanEventData(name, at_ns, attrs)
        span = SpanData(TRACE, f"{0xE000 + self.n:016x}", ROOT, "step", at_ns, at_ns + 1, stamps, events=(ev,))
        evs = self.tracker.span_ended(span)
        self.control.observe(evs)
        self.events.extend(evs)

    async def request(self) -> dict[str, Any]:
        assert self.control.log is not None
        await self.control.sync.flush(self.control.log)
        rec = await self.control.run(TASK)
        return runs.requests_of(rec)["a1"]


def ask(question: str, **more: Any) -> dict[str, Any]:
    return {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: question, cv.APPROVAL_ACTION: ACTION, **more}


async def scenario(store: StateStore) -> None:
    a = Agent(store)
    t = time.time_ns() - 5_000_000_000
    a.span(t, cv.EVENT_APPROVAL_REQUEST, ask("deploy?", **{cv.APPROVAL_APPROVERS: 2, cv.APPROVAL_REQUESTER: "alice"}))
    first = await a.request()
    assert first["approvers"] == 2 and first["requester"] == "alice"

    # The copy: other question, one person, no requester, a microsecond earlier.
    a.span(t - 1_000, cv.EVENT_APPROVAL_REQUEST, ask("deploy now?", **{cv.APPROVAL_APPROVERS: 1}))
    got = await a.request()
    assert got["digest"] == first["digest"] and got["question"] == "deploy?"
    assert got["approvers"] == 2 and got["requester"] == "alice" and got["state"] == "open"
    rec = await a.control.run(TASK)
    refused = reasked.refusals_of(rec)
    assert [r["approval_id"] for r in refused] == ["a1"] and "the first stands" in refused[0]["reason"]
    assert a.tracker.stats.value("approval_requests_refused_total", reason="changed") == 1

    # The copy sent to another replica sharing the store (its tracker never saw the first):
    # the run's record refuses it there, and keeps the refusal.
    b = Agent(store)
    b.span(t - 2_000, cv.EVENT_APPROVAL_REQUEST, ask("deploy now?", **{cv.APPROVAL_APPROVERS: 1}))
    assert b.control.log is not None
    await b.control.sync.flush(b.control.log)
    got = await a.request()
    assert (got["digest"], got["approvers"], got["requester"]) == (first["digest"], 2, "alice")
    assert len(reasked.refusals_of(await a.control.run(TASK))) == 1  # the same copy: kept once
    assert b.tracker.stats.value("approval_requests_refused_total", reason="changed") == 1
    # The open list (what the sweep expires by) kept the first too.
    listed = [x for x in await a.log.open_list() if x.get("approval_id") == "a1"]
    assert [x["digest"] for x in listed] == [first["digest"]]

    # alice still may not approve what she asked for.
    d = Decision("i-alice", TASK, "approve", "alice", time.time_ns(), approval_id="a1", person="alice", verified=True)
    verdict = await a.control.decide(d)
    assert verdict.outcome == "denied" and verdict.code == "own_request", verdict


async def raise_only(store: StateStore) -> None:
    log = ControlLog(store)
    from spanvisor.events import ApprovalRequest, TaskView

    view = TaskView(TASK, TRACE, ROOT, "rivet", run_id="r1", started_ns=1)
    base = ApprovalRequest("a1", "deploy?", requested_ns=10, digest="d1", action=ACTION)
    await log.open_run(view, (base,))
    await log.open_run(view, (ApprovalRequest("a1", "deploy?", requested_ns=9, digest="d1", approvers=3),))
    await log.open_run(view, (ApprovalRequest("a1", "deploy?", requested_ns=8, digest="d1", requester="bob"),))
    await log.open_run(view, (ApprovalRequest("a1", "deploy?", requested_ns=7, digest="d1", approvers=1),))
    req = runs.requests_of(await log.record(TASK, "r1"))["a1"]
    assert (req["approvers"], req["requester"], req["requested_ns"]) == (3, "bob", 10)


Make = Callable[[Path], Awaitable[StateStore]]


async def _memory(_: Path) -> StateStore:
    return InMemoryStateStore()


async def _local(tmp: Path) -> StateStore:
    store = LocalStateStore(tmp / "state.db")
    await store.start()
    return store


@pytest.fixture(params=["memory", "local", "postgres"])
def make_store(request: pytest.FixtureRequest) -> Make:
    if request.param == "memory":
        return _memory
    if request.param == "local":
        return _local
    # A database of the test's own: the runs' records outlive a test, and
    # test_hostile_token_notes.py uses the same task and request ids.
    url = request.getfixturevalue("pg_server").database()

    async def _pg(tmp: Path) -> StateStore:
        from spanvisor.config import Config
        from spanvisor_postgres.settings import SETTINGS
        from spanvisor_postgres.statestore import PostgresStateStore

        cfg = Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(tmp), database_url=url)
        return await PostgresStateStore.open(cfg)

    return _pg


@pytest.mark.parametrize("case", [scenario, raise_only], ids=["changed_copy_refused", "raised_never_lowered"])
def test_a_copy_of_an_open_request_never_lowers_it(
    make_store: Make, case: Callable[[StateStore], Awaitable[None]], tmp_path: Path
) -> None:
    async def go() -> None:
        store = await make_store(tmp_path)
        try:
            await case(store)
        finally:
            await store.close()

    asyncio.run(go())
