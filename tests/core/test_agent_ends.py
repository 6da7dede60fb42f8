"""A run whose end was its agent's word alone still takes a cancel (issue
63, ``control/runs.agent_ends``).

Two such ends, made with the OTLP token every agent holds while its CLI
goes on: that of a coding-agent session that neither ``spanvisor run`` nor
the system gate keyed, and that of a keyed run made on a replica that never
saw its key (behind a Collector that routes records and spans apart, or
sprays them). Such a run, once finished, still takes a person's cancel (the
hook denies the session's later calls; the launcher stops its CLI). The
facts come from the tracker's own events through
:class:`~spanvisor.control.runsync.RunSync`, on real trackers and the
in-memory store: a session's ids (its task id in its CLI's namespace, and
trace and root ids derived from the session id), whether a start record
named its starter's key, and whether the replica that ended it held the
key. A launched task ended where its key was held (by its launcher's proof),
or any task that is neither, is "already finished" as before; a session's
end never is (an agent without the system gate can key its own session).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from spanvisor.clis import registry
from spanvisor.control import runs
from spanvisor.control.log import ControlLog
from spanvisor.control.runsync import RunSync
from spanvisor.events import Decision, Event, TaskFinished
from spanvisor.gate import taskids
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

SECRET = "5e" * 32
KEY = hashlib.sha256(SECRET.encode()).hexdigest()
SERVICE = registry.need("claude-code").service


def _tracker() -> TaskTracker:
    clock = FakeClock()
    return TaskTracker(clock=clock, wall_clock=lambda: int(clock.now * 1e9), root_hold_s=30.0)


def _run(task_id: str, trace_id: str, root_id: str, key: str | None, proof: str | None) -> dict[str, Any]:
    """A task opened by its start record (naming ``key``) and ended by a root
    end (carrying ``proof``), seen by RunSync; its record as written."""
    tr = _tracker()
    attrs: dict[str, Any] = {cv.TASK_ID: task_id, cv.TASK_NAME: "Fix the build", cv.AGENT_ID: SERVICE}
    if key is not None:
        attrs[cv.SESSION_KEY] = key
    out: list[Event] = tr.live([_start(trace_id, root_id, attrs, None)])
    end = {**attrs, cv.TASK_ROOT: root_id, cv.STATUS: "complete"}
    if proof is not None:
        end[cv.SESSION_PROOF] = proof
    out += tr.span_ended(SpanData(trace_id, root_id, None, "session end", 1_000, 5_000, end))
    [done] = [e for e in out if isinstance(e, TaskFinished)]
    rec = _written([(tr, out)], task_id, done.task.run_id)
    assert runs.state_of(rec) == "finished"
    return rec


def _start(trace_id: str, root_id: str, attrs: dict[str, Any], key: str | None, t: int = 1_000) -> LiveFact:
    """A start record of the run, naming ``key`` (None: none)."""
    said = {**attrs, **({cv.SESSION_KEY: key} if key is not None else {})}
    return LiveFact(trace_id, root_id, cv.LIVE_TASK_START, t, said, {cv.SERVICE_NAME: SERVICE})


def _written(order: list[tuple[TaskTracker, list[Event]]], task_id: str, run_id: str) -> dict[str, Any]:
    """The run's record once each replica (a tracker and what it emitted),
    in ``order``, wrote what it saw to one shared store."""

    async def go() -> dict[str, Any]:
        log = ControlLog(InMemoryStateStore())
        for tr, out in order:
            sync = RunSync(tr, lambda _: None)
            sync.observe(out)
            await sync.flush(log)
        rec = await log.record(task_id, run_id)
        assert rec is not None
        return rec

    return asyncio.run(go())


def _cancel(rec: dict[str, Any], intervention_id: str = "i1") -> runs.Judgement:
    d = Decision(intervention_id, rec["task_id"], "cancel", "alice", 10_000, source="cli", run_id=rec["run_id"])
    return runs.apply(rec, d, 10_000)


def _session(sid: str) -> tuple[str, str, str]:
    return taskids.session_task(SERVICE, sid)


def test_a_session_its_agent_ended_takes_a_cancel_after_its_end_once() -> None:
    rec = _run(*_session("s-1"), key=None, proof=None)
    assert rec["session"] is True and "keys" not in rec
    got = _cancel(rec)
    assert got.outcome == "applied", got
    assert got.reason == runs.AGENT_ENDED.format(outcome="complete")
    assert runs.cancel_of(runs.decisions_of(rec)) is not None  # the hook's look finds it
    again = _cancel(rec, "i2")
    assert (again.outcome, again.code) == ("refused", "already_decided"), again


def test_a_keyed_session_ended_with_its_proof_takes_a_cancel_all_the_same() -> None:
    """The system gate keys a session before answering its first call; an
    agent without the gate can key its own session (the first key stands)
    and end it with its own proof. The record cannot tell the two apart, so
    a session's end never stops a cancel (after a real end, nothing is
    left to stop)."""
    rec = _run(*_session("s-2"), key=KEY, proof=SECRET)
    assert (rec["session"], rec["keys"], rec["proved"]) == (True, [KEY], True)
    got = _cancel(rec)
    assert got.outcome == "applied", got


def test_a_launched_task_ended_with_its_launchers_proof_is_already_finished() -> None:
    rec = _run("build-7", *taskids.launcher_task_ids("build-7"), key=KEY, proof=SECRET)
    assert (rec.get("session"), rec["keys"], rec["proved"]) == (None, [KEY], True)
    got = _cancel(rec)
    assert (got.outcome, got.code) == ("refused", "finished"), got


@pytest.mark.parametrize(
    "ids",
    [
        ("nightly-build", "ab" * 16, "cd" * 8),  # no session: an agent's own task
        (_session("s-3")[0], "ab" * 16, "cd" * 8),  # a session's id on ids that are not its own
        (f"not-a-cli:{'s-4'}", *taskids.task_ids(SERVICE, "s-4")),  # its ids, in no CLI's namespace
    ],
)
def test_a_task_that_is_no_session_of_a_cli_is_already_finished(ids: tuple[str, str, str]) -> None:
    rec = _run(*ids, key=None, proof=None)
    assert not rec.get("session")
    got = _cancel(rec)
    assert (got.outcome, got.code) == ("refused", "finished"), got


@pytest.mark.parametrize(
    "ids",
    [_session("s-5"), ("build-7", *taskids.launcher_task_ids("build-7"))],
    ids=["system-gate-session", "launched-task"],
)
def test_an_end_on_a_replica_that_never_saw_the_key_is_the_agents_word(ids: tuple[str, str, str]) -> None:
    """Behind a Collector that routes records and spans apart (the shipped
    gateway does: a record's trace id hashed as hex text, a span's as bytes)
    or sprays them, the start record naming the key reaches one replica and
    the agent's forged end another, where no key was known: that replica
    ended the task. Before, a cancel was then refused ("already finished")
    while the CLI went on. The key is a fact of the shared record (set by
    the replica that saw it, never undone by the other), and an end made
    where it was not held is the agent's word: the cancel applies."""
    task_id, trace_id, root_id = ids
    attrs: dict[str, Any] = {cv.TASK_ID: task_id, cv.TASK_NAME: "Fix the build", cv.AGENT_ID: SERVICE}
    records, spans = _tracker(), _tracker()
    started = records.live([_start(trace_id, root_id, attrs, KEY)])
    forged = {**attrs, cv.TASK_ROOT: root_id, cv.STATUS: "complete"}
    ended = spans.span_ended(SpanData(trace_id, root_id, None, "session end", 1_000, 5_000, forged))
    [done] = [e for e in ended if isinstance(e, TaskFinished)]

    for order in ([(records, started), (spans, ended)], [(spans, ended), (records, started)]):
        rec = _written(order, task_id, done.task.run_id)
        assert (rec["keys"], rec.get("proved"), runs.state_of(rec)) == ([KEY], None, "finished"), rec
        got = _cancel(rec)
        assert got.outcome == "applied", got


def test_an_agent_that_names_its_own_key_where_the_launchers_was_not_held_is_cancelled_all_the_same() -> None:
    """Review finding: the start record naming the launcher's key reaches
    one replica; the agent sends its own start record, naming a key of its
    own, and an end carrying that key's proof to another replica (a resource
    attribute once steered the gateway's routing; spraying, or a replica's
    own port, still may). That replica ends the run with a proof that holds
    there. The record keeps both keys: two starters, one of them the agent,
    so the cancel still applies."""
    task_id, trace_id, root_id = "build-8", *taskids.launcher_task_ids("build-8")
    attrs: dict[str, Any] = {cv.TASK_ID: task_id, cv.TASK_NAME: "Fix the build", cv.AGENT_ID: SERVICE}
    own_secret = "77" * 32
    own_key = hashlib.sha256(own_secret.encode()).hexdigest()
    launcher, other = _tracker(), _tracker()
    started = launcher.live([_start(trace_id, root_id, attrs, KEY, 1_000)])
    forged = other.live([_start(trace_id, root_id, attrs, own_key, 1_100)])
    end = {**attrs, cv.TASK_ROOT: root_id, cv.STATUS: "complete", cv.SESSION_PROOF: own_secret}
    forged += other.span_ended(SpanData(trace_id, root_id, None, "session end", 1_000, 5_000, end))
    [done] = [e for e in forged if isinstance(e, TaskFinished)]

    for order in ([(launcher, started), (other, forged)], [(other, forged), (launcher, started)]):
        rec = _written(order, task_id, done.task.run_id)
        assert (sorted(rec["keys"]), rec["proved"]) == (sorted([KEY, own_key]), True), rec
        got = _cancel(rec)
        assert got.outcome == "applied", got
    # On one replica, the agent's key after the launcher's is a rival: the
    # same two keys in the record.
    one = _tracker()
    out = one.live(
        [
            _start(trace_id, root_id, attrs, KEY, 1_000),
            _start(trace_id, root_id, attrs, own_key, 1_100),
        ]
    )
    out += one.span_ended(SpanData(trace_id, root_id, None, "end", 1_000, 5_000, {**end, cv.SESSION_PROOF: SECRET}))
    rec = _written([(one, out)], task_id, done.task.run_id)
    assert (rec["keys"], rec["proved"]) == ([KEY, own_key], True)
    assert _cancel(rec).outcome == "applied"


def test_a_key_the_agent_named_first_on_one_replica_and_ended_by_on_another_leaves_the_run_open_to_a_cancel() -> None:
    """Second review finding: the agent's start record, naming its own key,
    reaches replica A before the launcher's (it missed its half second), so
    A keys the task with the agent's key and the launcher's is a rival, in
    A's memory only: a start record of an open task emits no event. The
    agent then ends the run on replica B with its own key's proof. A's keys
    reach the shared record all the same (the tracker hands over the tasks
    it rekeyed), so the record holds both keys and the cancel applies. On A
    the first key still stands: the launcher's proved end is a claim there
    (as an agent's key named after the launcher's never ends the task:
    test_launcher_end.test_the_first_key_stands); the task ends when lost."""
    task_id, trace_id, root_id = "build-9", *taskids.launcher_task_ids("build-9")
    attrs: dict[str, Any] = {cv.TASK_ID: task_id, cv.TASK_NAME: "Fix the build", cv.AGENT_ID: SERVICE}
    own_secret = "66" * 32
    own_key = hashlib.sha256(own_secret.encode()).hexdigest()
    a, b = _tracker(), _tracker()
    on_b = b.live([_start(trace_id, root_id, attrs, own_key)])
    end = {**attrs, cv.TASK_ROOT: root_id, cv.STATUS: "complete"}
    on_b += b.span_ended(SpanData(trace_id, root_id, None, "end", 1_000, 5_000, {**end, cv.SESSION_PROOF: own_secret}))
    [done] = [e for e in on_b if isinstance(e, TaskFinished)]

    async def go() -> dict[str, Any]:
        log, on_a = ControlLog(InMemoryStateStore()), RunSync(a, lambda _: None)
        on_a.observe(a.live([_start(trace_id, root_id, attrs, own_key)]))
        await on_a.flush(log)  # A's record: the agent's key alone
        assert a.live([_start(trace_id, root_id, attrs, KEY, 1_100)]) == []  # the launcher's: no event
        on_b_sync = RunSync(b, lambda _: None)
        on_b_sync.observe(on_b)
        await on_b_sync.flush(log)
        await on_a.flush(log)  # a round of A's catch-up: what it rekeyed
        rec = await log.record(task_id, done.task.run_id)
        assert rec is not None
        return rec

    rec = asyncio.run(go())
    assert (sorted(rec["keys"]), rec["proved"]) == (sorted([KEY, own_key]), True), rec
    assert _cancel(rec).outcome == "applied"
    ended = a.span_ended(SpanData(trace_id, root_id, None, "end", 1_000, 6_000, {**end, cv.SESSION_PROOF: SECRET}))
    assert not [e for e in ended if isinstance(e, TaskFinished)]
