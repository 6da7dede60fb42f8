"""Any cut, order and repetition of a coding-agent session's records gives
the same task: the records of a session sent in any batches, each batch in
any order, some sent again (retries, replicas, replays), through the real
logs decoder and the calls' trace decoding into a TaskTracker, end with
the same tokens, the same calls and one task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from coding_sessions import Session, claude, codex, gemini, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import Checkpoint, Event, TaskStarted
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.receiver.codingagents.spans import calls_request
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.logs import decode_logs
from spanvisor.tracking.tracker import TaskTracker

T0 = 1_795_000_000_000_000_000


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    SESSIONS.clear()
    yield
    SESSIONS.clear()


def _run(s: Session, batches: list[list[int]]) -> tuple[TaskTracker, list[Event]]:
    SESSIONS.clear()
    tracker = TaskTracker()
    out: list[Event] = []
    for batch in batches:
        decoded = decode_logs(request(s, [s.records[i] for i in batch], T0))
        out.extend(tracker.live(decoded.live))
        assert decoded.coding is not None
        req = calls_request(decoded.coding)
        if req is not None:
            for span in decode_request(req).spans:
                out.extend(tracker.span_ended(span))
    return tracker, out


@st.composite
def _batches(draw: st.DrawFn, n: int) -> list[list[int]]:
    order = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4)))
    parts = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    again = draw(st.lists(st.sampled_from(parts), max_size=3))
    return parts + again


SESSIONS_OF = {"claude": claude, "codex": codex, "gemini": gemini}


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_batching_of_a_session_gives_the_same_totals(cli: str, data: st.DataObject) -> None:
    s = SESSIONS_OF[cli](f"{cli}-prop")
    batches = data.draw(_batches(len(s.records)))
    tracker, events = _run(s, batches)
    states, _ = tracker.states()
    [state] = states
    view = state.view
    assert (view.input_tokens, view.output_tokens) == (s.input_tokens, s.output_tokens)
    assert sum(1 for e in events if isinstance(e, Checkpoint) and e.source == "model_call") == s.calls
    assert sum(1 for e in events if isinstance(e, Checkpoint) and e.source == "tool_call") == 2
    assert sum(1 for e in events if isinstance(e, TaskStarted)) == 1
