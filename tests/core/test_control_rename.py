"""The control log follows a task its root renamed (issue 66, control/moved.py).

A task shown under a derived id D before its root arrives takes the id X
its root names; from then on its views carry ``former_id`` D. The run's
record moves from (D, run) to (X, run) and an alias stays at (D, run): a
decision made while the task showed as D, an agent reading under either id,
a replica that saw only the run's earlier events all reach the one record.
Nothing is lost to a race between the move and a decision, a move repeated
writes nothing, and a root naming another live task's id never touches that
task's run. On the real stores: the local SQLite one (one transaction, two
processes' logs on one file) and the in-memory one (compare-and-set steps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import pytest

from spanvisor.control import grants, moved, runs
from spanvisor.control.judge import PipelineControl
from spanvisor.control.log import NAMESPACE, ControlLog
from spanvisor.control.runsync import RunSync
from spanvisor.events import Action, ApprovalRequest, Checkpoint, Decision, Event, TaskFinished, TaskStarted, TaskView
from spanvisor.ids import run_id_of
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.statestores.api import Claim, ConditionalStateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

TRACE, ROOT = "ab" * 16, "cd" * 8
D, R, X = f"{TRACE}-{ROOT}", run_id_of(TRACE, ROOT), "fix-42"
GO = ApprovalRequest("go", "Ship it?", requested_ns=1_000, digest="d-go")
_n = iter(range(1, 10**9))


def _view(task_id: str, former: str | None = None, *approvals: ApprovalRequest, **ids: str) -> TaskView:
    trace, root = ids.get("trace", TRACE), ids.get("root", ROOT)
    return TaskView(
        task_id,
        trace,
        root,
        "fixer",
        run_id=run_id_of(trace, root),
        started_ns=5,
        approvals=approvals,
        former_id=former,
        task_name="Fix the build" if former else None,
    )


def _ev(v: TaskView, kind: type[TaskStarted | Checkpoint | TaskFinished] = Checkpoint) -> Event:
    if kind is TaskFinished:
        return TaskFinished(event_id=f"e{next(_n)}", time_ns=50, task=v, outcome="complete", duration_s=1.0)
    if kind is TaskStarted:
        return TaskStarted(event_id=f"e{next(_n)}", time_ns=10, task=v)
    return Checkpoint(event_id=f"e{next(_n)}", time_ns=10, task=v)


def _decision(task_id: str, action: Action, run_id: str = "", approval_id: str | None = None) -> Decision:
    return Decision(
        f"i{next(_n)}",
        task_id,
        action,
        "U1",
        20,
        approval_id=approval_id,
        run_id=run_id,
        digest="d-go" if approval_id else None,
    )


class Stores:
    """Stores that share one control log: each :meth:`make` is another
    process's (the local SQLite store: another store on the same file)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind, self.path = kind, path
        self.shared = InMemoryStateStore()
        self.opened: list[LocalStateStore] = []

    async def make(self) -> ConditionalStateStore:
        if self.kind == "memory":
            return self.shared
        store = LocalStateStore(self.path)
        await store.start()
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()
        self.opened.clear()

    def run(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def go() -> None:
            try:
                await fn()
            finally:
                await self.close()

        asyncio.run(go())


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    return Stores(request.param, tmp_path / "state.db")


def _run(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(fn())


def test_the_record_moves_and_either_id_finds_it(store: Stores) -> None:
    async def go() -> None:
        log = ControlLog(await store.make())
        sync = RunSync(TaskTracker(), lambda _: None)
        sync.observe([_ev(_view(D), TaskStarted), _ev(_view(D, None, GO))])
        await sync.flush(log)
        cancel = _decision(D, "cancel", R)  # a button made while the task showed as D
        assert (await log.apply(cancel, 30)).outcome == "applied"
        # The root names X: the request is still open, and nothing is flushed before the next decision.
        sync.observe([_ev(_view(X, D, GO))])
        await sync.flush(log, D)  # a decision naming D waits for the renamed run's facts too
        assert not sync.pending
        rec = await log.record(X, R)
        assert rec is not None and rec["task_id"] == X and rec["former_id"] == D
        assert rec["task_name"] == "Fix the build"
        assert [d.intervention_id for d in runs.decisions_of(rec)] == [cancel.intervention_id]
        assert runs.decisions_of(rec)[0].task_id == D  # what the person named stays in the decision
        assert [r.approval_id for r in runs.open_requests(rec, 0)] == ["go"]
        assert await log.record(D, R) == rec
        assert await log.runs_of(X) == [R] and await log.runs_of(D) == [R]
        alias = await log.store.get(NAMESPACE, runs.run_key(D, R))
        assert moved.target(alias) == X and alias is not None and "items" not in alias and "requests" not in alias
        assert [(x["task_id"], x["run_id"]) for x in await log.open_list()] == [(X, R)]
        # Read back under either id: the agent's own, and the one a person saw.
        assert await log.read(X) == await log.read(D) == [dataclasses.replace(cancel)]
        # An approve naming D, no run: the run's open request, in the one record.
        ok = _decision(D, "approve", approval_id="go")
        judged = await log.apply(dataclasses.replace(ok, run_id=(await log.runs_of(D))[-1]), 40)
        assert judged.outcome == "applied"
        assert [d.action for d in await log.read(X, R)] == ["cancel", "approve"]
        sync.observe([_ev(_view(X, D), TaskFinished)])
        await sync.flush(log)
        assert runs.state_of(await log.record(D, R)) == "finished"

    store.run(go)


def test_a_replica_that_saw_only_the_earlier_events_writes_into_the_moved_record(
    store: Stores,
) -> None:
    """Replica A holds the renamed task; B saw only its events under D (its
    own request, its end): B's facts reach the record under X, in either order."""
    for b_first in (False, True):

        async def go(b_first: bool = b_first) -> None:
            a_log, b_log = ControlLog(await store.make()), ControlLog(await store.make())
            a, b = RunSync(TaskTracker(), lambda _: None), RunSync(TaskTracker(), lambda _: None)
            trace = f"{int(b_first) + 1:032x}"
            d, r = f"{trace}-{ROOT}", run_id_of(trace, ROOT)
            b.observe([_ev(_view(d, None, GO, trace=trace), TaskStarted)])
            a.observe([_ev(_view(d, None, trace=trace), TaskStarted), _ev(_view(X, d, trace=trace))])
            for sync, log in ((b, b_log), (a, a_log)) if b_first else ((a, a_log), (b, b_log)):
                await sync.flush(log)
            rec = await a_log.record(X, r)
            assert rec is not None and [q.approval_id for q in runs.open_requests(rec, 0)] == ["go"], b_first
            assert moved.target(await a_log.store.get(NAMESPACE, runs.run_key(d, r))) == X
            assert [x["task_id"] for x in await b_log.open_list() if x["run_id"] == r] == [X]
            b.observe([_ev(_view(d, None, trace=trace), TaskFinished)])  # B ends it, still under D
            await b.flush(b_log)
            rec = await a_log.record(X, r)
            assert runs.state_of(rec) == "finished" and runs.requests_of(rec)["go"]["state"] == "expired"
            assert await b_log.record(d, r) == rec

        store.run(go)


def test_a_move_repeated_writes_nothing(store: Stores) -> None:
    async def go() -> None:
        log = ControlLog(await store.make())
        events = [_ev(_view(D, None, GO), TaskStarted), _ev(_view(X, D, GO))]
        first = RunSync(TaskTracker(), lambda _: None)
        first.observe(events)
        await first.flush(log)
        before = {k: await log.store.get(NAMESPACE, runs.run_key(k, R)) for k in (D, X)}
        again = RunSync(TaskTracker(), lambda _: None)  # restarted, or another replica replaying
        again.observe(events[1:])
        await again.flush(log)
        await log.move(_view(X, D), D)
        assert {k: await log.store.get(NAMESPACE, runs.run_key(k, R)) for k in (D, X)} == before

    store.run(go)


class NetworkStore(InMemoryStateStore):
    """The in-memory store, each call giving way to other coroutines a random
    number of times first, as a call over the network does: the steps of a
    move and of two decisions interleave."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    async def _away(self) -> None:
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        await self._away()
        return await super().get(namespace, key)

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        await self._away()
        return await super().put_if_newer(namespace, key, value, version, owner, own=own)


def test_a_move_racing_decisions_loses_none_of_them() -> None:
    """Two processes' logs on one store (compare-and-set steps, no
    transaction): a cancel and an approve naming D race the move; each is
    applied once, in the record under X, whatever the interleaving."""

    async def go(seed: int) -> None:
        shared = NetworkStore(seed)
        mover, decider = ControlLog(shared), ControlLog(shared)
        trace = f"{seed + 1:032x}"
        d, r = f"{trace}-{ROOT}", run_id_of(trace, ROOT)
        await mover.open_run(_view(d, None, trace=trace), (GO,))
        cancel, ok = _decision(d, "cancel", r), _decision(d, "approve", r, "go")
        jobs = [mover.move(_view(X, d, trace=trace), d), decider.apply(cancel, 30), decider.apply(ok, 31)]
        random.Random(seed).shuffle(jobs)
        got = await asyncio.gather(*jobs)
        assert [j.outcome for j in got if j is not None] == ["applied", "applied"]
        rec = await decider.record(X, r)
        assert rec is not None
        assert sorted(x.intervention_id for x in runs.decisions_of(rec)) == sorted(
            [cancel.intervention_id, ok.intervention_id]
        )
        assert runs.requests_of(rec)["go"]["state"] == "decided"
        assert await decider.record(d, r) == rec

    for seed in range(40):
        asyncio.run(go(seed))


def test_a_move_cut_short_is_finished_by_whoever_follows_the_alias() -> None:
    """The alias written, the process stopped before the record under X:
    the alias carries the record, so the cancel on it is not lost."""

    async def go() -> None:
        log = ControlLog(InMemoryStateStore())
        await log.open_run(_view(D, None), (GO,))
        cancel = _decision(D, "cancel", R)
        await log.apply(cancel, 30)
        rec = await log.record(D, R)
        left = moved.alias(rec, _view(X, D), D)
        assert (await log.store.put_if_newer(NAMESPACE, runs.run_key(D, R), {**left, "v": 9}, 9, "x")).won
        assert await log.store.get(NAMESPACE, runs.run_key(X, R)) is None
        shown = await log.record(X, R) or await log.record(D, R)
        assert shown is not None and runs.cancel_of(runs.decisions_of(shown)) is not None
        ok = _decision(D, "approve", R, "go")
        assert (await log.apply(ok, 40)).outcome == "applied"
        stored = await log.store.get(NAMESPACE, runs.run_key(X, R))
        assert [d.action for d in runs.decisions_of(stored)] == ["cancel", "approve"]

    _run(go)


def test_a_root_naming_another_live_task_touches_none_of_its_run(store: Stores) -> None:
    """X2 runs (run R2, its request "go" open). Another run's root names X2
    too: that run becomes a run of X2 (as any root naming an id does), under
    its own run id; X2's record, its request and its decisions stay its own."""

    async def go() -> None:
        log = ControlLog(await store.make())
        sync = RunSync(TaskTracker(), lambda _: None)
        x2 = _view("X2", None, GO, trace="11" * 16, root="22" * 8)
        sync.observe([_ev(x2, TaskStarted)])
        await sync.flush(log)
        before = await log.store.get(NAMESPACE, runs.run_key("X2", x2.run_id))
        trace, root = "33" * 16, "44" * 8
        d3, r3 = f"{trace}-{root}", run_id_of(trace, root)
        sync.observe([_ev(_view(d3, None, GO, trace=trace, root=root), TaskStarted)])
        sync.observe([_ev(_view("X2", d3, GO, trace=trace, root=root))])
        # Forged former ids (another run's derived id, X2 itself): nothing moves.
        sync.observe([_ev(dataclasses.replace(x2, former_id=d3)), _ev(dataclasses.replace(x2, former_id="X2"))])
        await sync.flush(log)
        assert await log.store.get(NAMESPACE, runs.run_key("X2", x2.run_id)) == before
        assert moved.target(await log.store.get(NAMESPACE, runs.run_key(d3, x2.run_id))) is None
        assert sorted(await log.runs_of("X2")) == sorted([x2.run_id, r3]) and await log.runs_of(d3) == [r3]
        listed = sorted((x["task_id"], x["run_id"]) for x in await log.open_list())
        assert listed == sorted([("X2", x2.run_id), ("X2", r3)])
        # An approve naming X2's run lands there; one naming D3 lands on the other run only.
        assert (await log.apply(_decision("X2", "approve", x2.run_id, "go"), 30)).outcome == "applied"
        assert runs.requests_of(await log.record("X2", r3))["go"]["state"] == "open"
        assert (await log.apply(_decision(d3, "cancel", r3), 31)).outcome == "applied"
        assert [d.action for d in await log.read("X2", x2.run_id)] == ["approve"]
        assert [d.action for d in await log.read("X2", r3)] == ["cancel"]

    store.run(go)


def test_decisions_naming_either_id_through_the_pipelines_control() -> None:
    """The control the pipeline answers the control API with: a cancel made
    under D before the rename holds after it; an approve naming D after it
    acts on the run (and keeps the id the person named); both read back
    under either id; a grant given for the run under D still covers it."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        out: list[Event] = []
        control = PipelineControl(TaskTracker(), out.extend, lambda: loop)
        control.attach(ControlLog(InMemoryStateStore()))
        try:
            control.observe([_ev(_view(D, None, GO), TaskStarted)])
            cancel = await control.decide(_decision(D, "cancel"))
            assert cancel.outcome == "applied" and cancel.run_id == R
            control.observe([_ev(_view(X, D, GO))])
            approve = await control.decide(_decision(D, "approve", approval_id="go"))
            assert approve.outcome == "applied" and approve.run_id == R, approve
            for name in (X, D):
                got = await control.decisions(name)
                assert [(d.action, d.task_id, d.run_id) for d in got] == [("cancel", D, R), ("approve", D, R)]
                assert (await control.run(name) or {}).get("task_id") == X
                assert await control.runs(name) == [R]
            g = grants.Grant("g1", "alice", "*", 0, 10**30, task_id=D, run_id=R)
            req = dataclasses.replace(GO, action='{"tool": "deploy"}')
            assert grants.covers(g, req, "fixer", X, R, 1, former_id=D)
            assert not grants.covers(g, req, "fixer", X, "other", 1, former_id=D)
        finally:
            await control.close()

    _run(go)


def test_the_trackers_own_rename_end_to_end() -> None:
    """The tracker's events on an end-order path: the task shows from its
    calls under the derived id, a person cancels it there and answers its
    request; its root then names ``fix-42`` and ends it. The record is the
    root's id's, with both decisions, read back under either id."""
    trace, root, svc = "cd" * 16, "00000000000000aa", {"service.name": "fixer"}
    chat = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", cv.GEN_AI_INPUT: 100, cv.GEN_AI_OUTPUT: 5}
    tool = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"}
    ask = SpanEventData(cv.EVENT_APPROVAL_REQUEST, 2_120, {cv.APPROVAL_ID: "go", cv.APPROVAL_QUESTION: "Ship it?"})
    work = [
        SpanData(trace, f"{1:016x}", root, "chat gpt-4o", 2_000, 2_050, chat, resource=svc),
        SpanData(trace, f"{2:016x}", root, "execute_tool run", 2_100, 2_150, tool, events=[ask], resource=svc),
    ]
    top = SpanData(trace, root, None, "agent.task Fix", 1_000, 90_000, {cv.TASK_ID: "fix-42"}, resource=svc)
    derived, run_id = f"{trace}-{root}", run_id_of(trace, root)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        tracker, out = TaskTracker(clock=FakeClock()), list[Event]()
        control = PipelineControl(tracker, out.extend, lambda: loop)
        control.attach(ControlLog(InMemoryStateStore()))

        def deliver(spans: list[SpanData]) -> None:
            events = [e for s in spans for e in tracker.span_ended(s)] + tracker.settle()
            out.extend(events)
            control.observe(events)

        try:
            deliver(work)
            assert {e.task_id for e in out} == {derived}
            assert (await control.decide(_decision(derived, "cancel"))).outcome == "applied"
            ok = dataclasses.replace(_decision(derived, "approve", approval_id="go"), digest=None)  # as asked
            assert (await control.decide(ok)).outcome == "applied"
            deliver([top])
            assert out[-1].task_id == "fix-42" and out[-1].task.former_id == derived
            await control.catch_up()
            for name in ("fix-42", derived):
                assert [d.action for d in await control.decisions(name)] == ["cancel", "approve"]
                rec = await control.run(name)
                assert rec is not None and rec["task_id"] == "fix-42" and rec["run_id"] == run_id
                assert runs.state_of(rec) == "finished"
            assert not await control.open_requests()
        finally:
            await control.close()

    _run(go)
