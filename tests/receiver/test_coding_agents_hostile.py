"""Coding-agent records anyone with an OTLP token can forge, beside the live
channel's flood of start records (tests/core/test_open_task_cap.py),
through the real logs decoder, the calls' trace decoding and a TaskTracker:

* 11,000 fake sessions, each one request with one model call, sent within
  1.4 s: no live session is evicted (one whose records came over time, a
  launcher's task with its heartbeats, one waiting for a person); the fakes
  make room for each other, counted.
* Any values where counts belong, any session ids (another task's id, ':'
  and '/'): the request is read, nothing raises, every count is clamped,
  and each session is its own task in its CLI's namespace.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from coding_sessions import Rec, claude, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from tests.core._trees import FakeClock

from spanvisor.events import Checkpoint, Event, TaskFinished
from spanvisor.receiver.codingagents.ids import launcher_task_ids, session_task
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.receiver.codingagents.spans import calls_request
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.logs import decode_logs
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact
from spanvisor.spans.sanitize import MAX_TOKENS
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

T0 = 1_795_000_000_000_000_000
CAP = 50
FORGED = 11_000


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    SESSIONS.clear()
    yield
    SESSIONS.clear()


def _feed(tracker: TaskTracker, req: ExportLogsServiceRequest, heard_ns: int) -> list[Event]:
    decoded = decode_logs(req, heard_ns)
    out = tracker.live(decoded.live)
    if decoded.coding is not None:
        calls = calls_request(decoded.coding)
        if calls is not None:
            for span in decode_request(calls).spans:
                out.extend(tracker.span_ended(span))
    return out


def _call(session_id: str, **counts: Any) -> Rec:
    attrs = {
        "session.id": session_id,
        "prompt.id": "p-1",
        "event.sequence": 1,
        "event.name": "api_request",
        "model": "claude-sonnet-4-5",
        "input_tokens": 1_000,
        "output_tokens": 10,
        **counts,
    }
    return Rec("claude_code.api_request", attrs, "claude_code.api_request", True)


def _request(session_id: str, records: list[Rec], t: int) -> ExportLogsServiceRequest:
    s = claude(session_id)
    s.records = records
    return request(s, None, t)


def test_a_flood_of_forged_sessions_never_evicts_a_live_session() -> None:
    clock = FakeClock()
    settings_ = TrackerSettings(stalls=StallSettings(after_s=60.0, lost_after_s=3600.0))
    tracker = TaskTracker(settings_, max_open_tasks=CAP, clock=clock, wall_clock=lambda: T0 + int(clock.now * 1e9))
    out: list[Event] = []
    t = T0
    # Live sessions: records over time (two requests 2 s apart).
    live = [claude(f"real-{n}") for n in range(3)]
    for s in live:
        out += _feed(tracker, request(s, s.records[:4], t), t)
    # A launcher's task: its start, then the CLI's records and a heartbeat.
    trace, root = launcher_task_ids("claude-code-launched")
    launched = claude("real-launched", **{"spanvisor.task.id": "claude-code-launched"})
    start = {cv.TASK_ID: "claude-code-launched", cv.TASK_NAME: "launched", cv.AGENT_ID: "claude-code"}
    res = {cv.SERVICE_NAME: "claude-code"}
    out += tracker.live([LiveFact(trace, root, cv.LIVE_TASK_START, t, start, res, t)])
    out += _feed(tracker, request(launched, launched.records[:2], t), t)
    # A session waiting for a person (a hook's request on its task).
    asking = claude("real-asking")
    out += _feed(tracker, request(asking, asking.records[:1], t), t)
    _, atrace, aroot = session_task("claude-code", "real-asking")
    ask = {cv.APPROVAL_ID: "h-1", cv.APPROVAL_QUESTION: "Allow Bash(rm -rf build)?"}
    out += tracker.live([LiveFact(atrace, aroot, cv.EVENT_APPROVAL_REQUEST, t, ask, res, t)])
    clock.advance(2.0)
    t += 2_000_000_000
    for s in live:
        out += _feed(tracker, request(s, s.records[4:], t), t)
    out += tracker.live([LiveFact(trace, root, cv.LIVE_HEARTBEAT, t, {}, res, t)])
    real = {session_task("claude-code", s.session_id)[0] for s in live} | {
        "claude-code-launched",
        "claude-code:real-asking",
    }
    assert {st.working.task_id for st in tracker.states()[0]} == real
    # The flood: 11,000 sessions of one request each, within 1.4 s.
    template = _request("forged", [_call("forged")], t)
    ended: list[TaskFinished] = []
    for n in range(FORGED):
        req = ExportLogsServiceRequest()
        req.CopyFrom(template)
        rec = req.resource_logs[0].scope_logs[0].log_records[0]
        next(kv for kv in rec.attributes if kv.key == "session.id").value.string_value = f"forged-{n}"
        clock.advance(1.4 / FORGED)
        heard = t + int(n * 1.4e9 / FORGED)
        ended += [e for e in _feed(tracker, req, heard) if isinstance(e, TaskFinished)]
    held = {st.working.task_id for st in tracker.states()[0]}
    assert real <= held, "no live session evicted"
    assert not any(e.task.task_id in real for e in [*ended, *out] if isinstance(e, TaskFinished))
    assert tracker.open_tasks <= CAP
    assert all(e.outcome == "evicted" and e.task.task_id.startswith("claude-code:forged-") for e in ended)
    refused = tracker.stats.value("dropped_total", reason="open_task_refused", sink="")
    assert len(ended) + refused >= FORGED - CAP, "every forged session beyond the cap made room or was refused"
    # The waiting request is still open on its task.
    [waiting] = [st for st in tracker.states()[0] if st.working.task_id == "claude-code:real-asking"]
    assert waiting.working.approvals


_COUNT = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # what OTLP carries as an int
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["9" * 30, "1e400", "NaN", "-1", "  42 "]),
)
_SESSION = st.one_of(
    # Printable: a task id is cleaned of control characters (its hash keeps them).
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(str.strip),
    st.sampled_from(["nightly-build", "claude-code:other", "a:b/c", "claude-code-0123456789abcdef"]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    session=_SESSION,
    counts=st.dictionaries(
        st.sampled_from(
            ["input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "cost_usd", "duration_ms"]
        ),
        _COUNT,
    ),
)
def test_any_values_where_counts_belong_are_read_clamped_and_never_fail(session: str, counts: dict[str, Any]) -> None:
    SESSIONS.clear()
    tracker = TaskTracker()
    s = claude(session)
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in counts.items()}
    req = _request(session, [s.records[0], _call(session, **clean)], T0)
    out = _feed(tracker, req, T0)
    task_id = session_task("claude-code", session)[0]
    assert task_id == f"claude-code:{session}"
    [state] = tracker.states()[0]
    assert state.working.task_id == task_id, "its own task, whatever the session id says"
    for e in out:
        assert 0 <= e.task.input_tokens <= MAX_TOKENS and 0 <= e.task.output_tokens <= MAX_TOKENS
        if isinstance(e, Checkpoint) and e.source == "model_call":
            huge = [v for v in (counts.get("input_tokens"), counts.get("output_tokens")) if isinstance(v, int)]
            if any(v > MAX_TOKENS for v in huge):
                assert any("clamped" in n for n in e.notes), e.notes
