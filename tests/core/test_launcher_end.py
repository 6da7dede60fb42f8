"""A launched task ends by its launcher's word only (issue 63,
``tracking/launcherend.py``), on the tracker with a fake clock.

The start record names the SHA-256 of the launcher's session secret; a root
end without the secret (the agent's, anyone's with the OTLP token) is a
claim: said once on the task, and the task stays open; the end with the
secret finishes it, the claims kept in its notes, the secret in no event.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.codec import event_to_dict
from spanvisor.events import Checkpoint, Event, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._trees import FakeClock

T = "ab" * 16
R = "cd" * 8
SECRET = "5e" * 32
KEY = hashlib.sha256(SECRET.encode()).hexdigest()
START = {cv.TASK_NAME: "Fix the build", cv.AGENT_ID: "claude-code", cv.TASK_ID: "claude-code-1"}


def tracker() -> TaskTracker:
    clock = FakeClock()
    return TaskTracker(clock=clock, wall_clock=lambda: int(clock.now * 1e9), root_hold_s=30.0)


def start(key: str | None = KEY, t: int = 1_000) -> LiveFact:
    attrs: dict[str, Any] = {**START, **({cv.SESSION_KEY: key} if key is not None else {})}
    return LiveFact(T, R, cv.LIVE_TASK_START, t, attrs, {cv.SERVICE_NAME: "claude-code"})


def end(status: str, proof: str | None, t: int) -> SpanData:
    attrs: dict[str, Any] = {**START, cv.TASK_ROOT: R, cv.STATUS: status}
    if proof is not None:
        attrs[cv.SESSION_PROOF] = proof
    return SpanData(T, R, None, "session end", 1_000, t, attrs)


def finished(events: list[Event]) -> list[TaskFinished]:
    return [e for e in events if isinstance(e, TaskFinished)]


def claims_said(events: list[Event]) -> list[Checkpoint]:
    return [
        e
        for e in events
        if isinstance(e, Checkpoint) and e.source == "event" and "without its starter's word" in str(e.task.message)
    ]


def test_an_end_without_the_launchers_secret_is_a_claim_and_the_task_stays_open() -> None:
    tr = tracker()
    out = tr.live([start()])
    out += tr.span_ended(end("complete", None, 5_000))
    out += tr.span_ended(end("complete", "00" * 32, 6_000))  # a guess
    assert not finished(out)
    assert len(claims_said(out)) == 1
    assert tr.stats.value("claimed_ends_total") == 2
    out += tr.span_ended(end("cancelled", SECRET, 9_000))
    [done] = finished(out)
    assert done.outcome == "cancelled"
    assert any("reported this task's end (complete) without its starter's word (2 claims)" in n for n in done.notes)
    assert SECRET not in json.dumps([event_to_dict(e) for e in out], default=str)
    check_stream(out, all_finished=True)


def test_a_task_no_start_record_keyed_ends_on_any_root_end() -> None:
    tr = tracker()
    out = tr.live([start(key=None)]) + tr.span_ended(end("complete", None, 5_000))
    assert [d.outcome for d in finished(out)] == ["complete"]


def test_the_first_key_stands() -> None:
    """A second start record naming another key (an agent's, sent later)
    changes nothing: the launcher's secret still ends the task, the other's does not."""
    other = "77" * 32
    tr = tracker()
    out = tr.live([start(), start(hashlib.sha256(other.encode()).hexdigest(), 1_500)])
    out += tr.span_ended(end("complete", other, 5_000))
    assert not finished(out)
    out += tr.span_ended(end("complete", SECRET, 6_000))
    assert [d.outcome for d in finished(out)] == ["complete"]


def test_the_launchers_end_is_not_taken_for_the_repeat_of_a_claim() -> None:
    """Same trace, same root span id: the launcher's end after the agent's
    claim is not dropped as a duplicate span, and a repeat of the
    launcher's end is."""
    tr = tracker()
    out = tr.live([start()]) + tr.span_ended(end("complete", None, 5_000))
    out += tr.span_ended(end("complete", SECRET, 6_000))
    out += tr.span_ended(end("complete", SECRET, 6_000))
    assert len(finished(out)) == 1


ENDS = st.lists(
    st.tuples(
        st.sampled_from(["complete", "error", "cancelled"]),
        st.sampled_from([None, "", "00" * 32, KEY, SECRET.upper(), SECRET + " "]),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(claims=ENDS, launcher=st.sampled_from([None, "complete", "error", "cancelled"]), keyed=st.booleans())
def test_only_the_secret_ends_a_keyed_task_whatever_came_before(
    claims: list[tuple[str, str | None]], launcher: str | None, keyed: bool
) -> None:
    tr = tracker()
    out = tr.live([start(KEY if keyed else None)])
    t = 2_000
    for status, proof in claims:
        out += tr.span_ended(end(status, proof, t))
        t += 1_000
    if launcher is not None:
        out += tr.span_ended(end(launcher, SECRET, t))
    done = finished(out)
    if not keyed:
        first = [s for s, _ in claims] + ([launcher] if launcher is not None else [])
        assert [d.outcome for d in done] == first[:1]
    else:
        assert [d.outcome for d in done] == ([launcher] if launcher is not None else [])
        assert len(claims_said(out)) == (1 if claims else 0)
        if done and claims:
            assert any(f"({claims[0][0]})" in n and "without its starter's word" in n for n in done[0].notes)
    assert SECRET not in json.dumps([event_to_dict(e) for e in out], default=str)
    check_stream(out)


def test_a_keyed_task_ended_with_its_proof_gives_the_events_of_an_unkeyed_one() -> None:
    """The Python helper keys its task only when it sends to a receiver (in
    process it does not): the same task must give the same events on every
    path, key and proof in none of them."""

    def events(keyed: bool) -> list[dict[str, Any]]:
        tr = tracker()
        out = tr.live([start(KEY if keyed else None)])
        out += tr.span_ended(end("complete", SECRET if keyed else None, 9_000))
        return [event_to_dict(e) for e in out]

    plain, keyed = events(False), events(True)
    assert len(plain) == len(keyed) >= 2
    assert json.dumps(plain, default=str) == json.dumps(keyed, default=str)
    assert KEY not in json.dumps(keyed, default=str) and SECRET not in json.dumps(keyed, default=str)
