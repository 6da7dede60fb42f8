"""A Claude Code session waiting at its terminal, through the real decoders
into a TaskTracker: the hook's waiting note (what ``spanvisor hook
claude-code`` sends at a ``permission_prompt`` notification, OTLP/JSON)
shows the task waiting, naming the call; Claude Code's ``tool_decision``
from a ``user_*`` source ends the wait, with a thread line saying what the
person decided; in whatever order and however often the two arrive, the
later fact wins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from coding_sessions import claude, request
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.clis.claude_code import records as claude_reader
from spanvisor.clis.codex import records as codex_reader
from spanvisor.events import Checkpoint, Event
from spanvisor.gate import notes, notices
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.receiver.codingagents.spans import calls_request
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.logs import decode_logs, parse_logs_json
from spanvisor.tracking.tracker import TaskTracker

T0 = 1_795_000_000_000_000_000
SESSION = "5e5510a0-0000-4000-8000-00000000wait"


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    SESSIONS.clear()
    yield
    SESSIONS.clear()


def _transcript(tmp: Any) -> str:
    path = tmp / "t.jsonl"
    lines = [
        {"type": "user", "message": {"role": "user", "content": "make a file"}},
        {
            "type": "assistant",
            "message": {
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "touch made.txt"}}
                ]
            },
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return str(path)


def _note(transcript: str | None, at: int) -> bytes:
    raw = json.dumps(
        {
            "session_id": SESSION,
            "hook_event_name": "Notification",
            "message": "Claude needs your permission",
            "notification_type": "permission_prompt",
            "prompt_id": "p-1",
            "transcript_path": transcript,
        }
    )
    n = notices.notice_of("claude-code", raw)
    assert n is not None
    item = notices.waiting_note(n, "http://127.0.0.1:1", {}, at)
    assert item is not None
    from spanvisor.gate import otlp
    from spanvisor.gate.session import TaskKey

    trace_hex, span_hex = TaskKey(*item["session"]).ids
    return otlp.encode(item["session"][1], trace_hex, span_hex, item["records"])


def _session(source: str = "user_temporary", decision: str = "accept") -> Any:
    s = claude(SESSION)
    s.records = [r for r in s.records if r.attrs["event.name"] in ("user_prompt", "api_request")][:2]
    attrs = {
        "session.id": SESSION,
        "prompt.id": "p-1",
        "event.sequence": 90,
        "event.name": "tool_decision",
        "tool_name": "Bash",
        "decision": decision,
        "source": source,
        "tool_parameters": json.dumps({"command": "touch made.txt"}),
    }
    s.records.append(
        type(s.records[0])("claude_code.tool_decision", attrs, body="claude_code.tool_decision", short_name=True)
    )
    return s


def _feed(tracker: TaskTracker, body: bytes | Any) -> list[Event]:
    req = parse_logs_json(body) if isinstance(body, bytes) else body
    decoded = decode_logs(req)
    out = list(tracker.live(decoded.live))
    if decoded.coding is not None and (calls := calls_request(decoded.coding)) is not None:
        for span in decode_request(calls).spans:
            out.extend(tracker.span_ended(span))
    return out


def _status(tracker: TaskTracker) -> tuple[str, str | None]:
    opened, _ = tracker.states()
    (state,) = opened
    return state.view.status, state.view.message


def test_the_hooks_note_shows_waiting_and_the_persons_answer_ends_it(tmp_path: Any) -> None:
    s = _session()
    tracker = TaskTracker()
    _feed(tracker, request(s, s.records[:2], T0))
    _feed(tracker, _note(_transcript(tmp_path), T0 + 10**9))
    assert _status(tracker) == ("waiting", "⏸ Waiting at the terminal: Claude Code asks to use Bash(touch made.txt)")
    events = _feed(tracker, request(s, s.records[2:], T0 + 5 * 10**9 - 20_000_000))
    said = [e.task.message for e in events if isinstance(e, Checkpoint) and e.source == "event"]
    assert said == ["Allowed at the terminal (once): Bash(touch made.txt)"]
    assert _status(tracker) == ("working", "Allowed at the terminal (once): Bash(touch made.txt)")


@settings(max_examples=30, deadline=None)
@given(order=st.permutations([0, 1, 2]), again=st.lists(st.sampled_from([0, 1, 2]), max_size=3))
def test_the_later_fact_wins_whatever_the_order_of_delivery(order: list[int], again: list[int]) -> None:
    SESSIONS.clear()
    s = _session("user_reject", "reject")
    bodies = [request(s, s.records[:2], T0), _note(None, T0 + 10**9), request(s, s.records[2:], T0 + 4 * 10**9)]
    tracker = TaskTracker()
    for i in [*order, *again]:
        _feed(tracker, bodies[i])
    status, message = _status(tracker)
    assert status == "working"
    assert message == "⚠ Denied at the terminal: Bash(touch made.txt)"


@pytest.mark.parametrize(
    ("source", "decision", "reads"),
    [
        ("user_temporary", "accept", ("answer", "Allowed at the terminal (once): Bash(ls)")),
        ("user_permanent", "accept", ("answer", "Allowed at the terminal (and from now on): Bash(ls)")),
        ("user_reject", "reject", ("warning", "Denied at the terminal: Bash(ls)")),
        ("user_abort", "reject", ("warning", "Denied at the terminal (cancelled): Bash(ls)")),
        ("config", "accept", ("life", None)),
        ("hook", "reject", ("warning", "Denied: Bash (by hook)")),
    ],
)
def test_each_source_reads_as_claude_code_means_it(source: str, decision: str, reads: tuple[str, str | None]) -> None:
    r = claude_reader.EVENTS["claude_code.tool_decision"](
        {"tool_name": "Bash", "decision": decision, "source": source, "tool_parameters": '{"command": "ls"}'}
    )
    assert (r.kind, r.text) == reads
    assert r.status == ("working" if source.startswith("user") else None)


@given(
    attrs=st.dictionaries(
        st.sampled_from(["tool_name", "decision", "source", "tool_parameters"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=300), st.booleans(), st.lists(st.integers(), max_size=3)),
    )
)
def test_a_decision_of_any_shape_reads_without_raising(attrs: dict[str, Any]) -> None:
    r = claude_reader.EVENTS["claude_code.tool_decision"](attrs)
    assert r.kind in ("life", "warning", "answer")
    assert r.text is None or len(r.text) < 400


def test_notes_module_sends_the_waiting_note_as_any_note() -> None:
    """The note's shape is the one notes.send posts (session, endpoint, records)."""
    n = notices.Notice("claude-code", SESSION, "permission_prompt", "Claude needs your permission", "p-1")
    item = notices.waiting_note(n, "http://127.0.0.1:9", {}, T0, read_transcript=False)
    assert item is not None and set(item) >= {"id", "session", "endpoint", "records"}
    assert notes.send(item, None, 0.2) is False  # nobody listens there: not sent, never raised


@pytest.mark.parametrize(
    ("source", "decision", "reads"),
    [
        ("User", "approved", ("answer", "Allowed at the terminal: exec_command")),
        ("User", "approved_for_session", ("answer", "Allowed at the terminal (for the session): exec_command")),
        ("User", "denied", ("warning", "Denied at the terminal: exec_command")),
        ("User", "abort", ("warning", "Denied at the terminal: exec_command")),
        ("Config", "approved", ("life", None)),
        ("Config", "denied", ("warning", "Denied: exec_command (by Config)")),
    ],
)
def test_codex_says_what_the_person_decided_at_its_terminal(source: str, decision: str, reads: tuple[str, Any]) -> None:
    """Codex 0.169's interactive UI reports the person's answer as
    ``codex.tool_decision`` with source ``User`` (seen on a terminal)."""
    r = codex_reader.EVENTS["codex.tool_decision"](
        {"tool_name": "exec_command", "call_id": "call_1", "decision": decision, "source": source}
    )
    # The person's answer ends the wait a PermissionRequest hook with --at-terminal showed.
    assert (r.kind, r.text, r.status) == (*reads, "working" if source == "User" else None)
