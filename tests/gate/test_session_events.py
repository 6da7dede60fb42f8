"""A turn's and a session's end reach ``spanvisor hook`` as each CLI sends
them (the inputs below are the pinned CLIs' own, recorded offline): they
are read as session events, never as tool calls, answered with the CLI's
neutral reply and exit status 0 whatever else fails (no policy is read, no
receiver needed), and how the session ended is read per CLI, never as
success without a turn that finished."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.clis import registry
from spanvisor.gate import contracts as gc
from spanvisor.gate import turns
from spanvisor.hook.end import ending, turn_of
from tests.gate.test_attack import HOSTILE_JSON, SPANVISOR, env_for

CLAUDE_BASE = {
    "session_id": "aeddade5-a8fa-4f27-876f-dbfc3a0e56db",
    "transcript_path": "/home/u/.claude/projects/-work/aeddade5.jsonl",
    "cwd": "/work",
    "prompt_id": "b2f00dff-4f4d-471d-aeea-9375ff6e02ee",
}
# Claude Code 2.1.330, Codex 0.169.0, Gemini CLI 0.61.0: what each sent its hook.
REAL: list[tuple[gc.Cli, dict[str, Any]]] = [
    (
        "claude-code",
        {**CLAUDE_BASE, "permission_mode": "default", "hook_event_name": "UserPromptSubmit", "prompt": "do it"},
    ),
    (
        "claude-code",
        {
            **CLAUDE_BASE,
            "permission_mode": "default",
            "hook_event_name": "Stop",
            "stop_hook_active": False,
            "last_assistant_message": "done",
            "background_tasks": [],
            "session_crons": [],
        },
    ),
    (
        "claude-code",
        {
            **CLAUDE_BASE,
            "hook_event_name": "StopFailure",
            "error": "unknown",
            "last_assistant_message": "API Error: 400 bad thing",
        },
    ),
    ("claude-code", {**CLAUDE_BASE, "hook_event_name": "SessionEnd", "reason": "other"}),
    (
        "codex",
        {
            "session_id": "01a214a4-87a9-7311-903b-cab3ba0be468",
            "turn_id": "01a214a4-87c8-7402-b904-f11ca1dedf86",
            "transcript_path": "/home/u/.codex/sessions/rollout.jsonl",
            "cwd": "/work",
            "hook_event_name": "Stop",
            "model": "gpt-5-codex",
            "permission_mode": "bypassPermissions",
            "stop_hook_active": False,
            "last_assistant_message": "done",
        },
    ),
    (
        "codex",
        {
            "session_id": "01a214a4-bda7-7d82-aca2-53fcdf12de86",
            "turn_id": "01a214a4-bdc6-7263-8e66-fb1ab253a326",
            "transcript_path": None,
            "cwd": "/work",
            "hook_event_name": "Interrupt",
            "model": "gpt-5-codex",
            "permission_mode": "bypassPermissions",
        },
    ),
    (
        "codex",
        {
            "session_id": "01a214a4-87a9-7311-903b-cab3ba0be468",
            "transcript_path": None,
            "cwd": "/work",
            "hook_event_name": "SessionEnd",
            "reason": "other",
        },
    ),
    (
        "gemini",
        {
            "session_id": "166a11fc-4dd3-4f8c-8826-33a3404470e8",
            "transcript_path": "/home/u/.gemini/tmp/work/chats/session.jsonl",
            "cwd": "/work",
            "hook_event_name": "AfterAgent",
            "timestamp": "2026-11-25T21:35:23.695Z",
            "prompt": "do it",
            "prompt_response": "done",
            "stop_hook_active": False,
        },
    ),
    (
        "gemini",
        {
            "session_id": "166a11fc-4dd3-4f8c-8826-33a3404470e8",
            "cwd": "/work",
            "hook_event_name": "SessionEnd",
            "timestamp": "2026-11-25T21:35:23.869Z",
            "reason": "exit",
        },
    ),
]


@pytest.mark.parametrize(("cli", "doc"), REAL, ids=[f"{c}-{d['hook_event_name']}" for c, d in REAL])
def test_each_clis_real_end_events_are_read_as_session_events(cli: gc.Cli, doc: dict[str, Any]) -> None:
    ev = gc.session_event(cli, json.dumps(doc).encode())
    assert ev is not None and ev.event == doc["hook_event_name"] and ev.session_id == doc["session_id"]
    assert ev.turn == (doc.get("prompt_id") or doc.get("turn_id"))
    # Another CLI's event name is not one of this CLI's session events.
    other: gc.Cli = "gemini" if cli != "gemini" else "claude-code"
    if doc["hook_event_name"] not in registry.need(other).session_events:
        assert gc.session_event(other, json.dumps(doc).encode()) is None


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(st.text(max_size=20), HOSTILE_JSON, max_size=6), event=st.sampled_from(["Stop", "SessionEnd"])
)
def test_nothing_naming_a_tool_is_ever_a_session_event(doc: dict[str, Any], event: str) -> None:
    """A tool call always goes to the policy: an input with ``tool_name`` is
    never answered as a turn's end, whatever else it says."""
    called = {**doc, "hook_event_name": event, "tool_name": doc.get("tool_name", "Bash")}
    for cli in registry.NAMES:
        assert gc.session_event(cli, json.dumps(called).encode()) is None


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | HOSTILE_JSON.map(lambda d: json.dumps(d).encode()))
def test_any_input_is_read_without_raising(raw: bytes) -> None:
    for cli in registry.NAMES:
        ev = gc.session_event(cli, raw)
        assert ev is None or ev.event in registry.need(cli).session_events


def _hook(tmp: Path, cli: str, doc: dict[str, Any], extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**env_for(tmp), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9", **(extra or {})}
    # A policy that cannot be read: a session event never reads it.
    broken = tmp / "broken.toml"
    broken.write_bytes(b"default = \xff")
    proc = subprocess.run(
        [SPANVISOR, "hook", cli, "--policy", str(broken)],
        input=json.dumps(doc).encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize(("cli", "doc"), REAL, ids=[f"{c}-{d['hook_event_name']}" for c, d in REAL])
def test_the_real_hook_answers_each_end_event_neutrally_with_serve_down_and_no_policy(
    tmp_path: Path, cli: gc.Cli, doc: dict[str, Any]
) -> None:
    """Exit status 0 and ``{}``: a block here would keep Claude Code's or
    Codex's agent going (``Stop``), or stop a prompt (``UserPromptSubmit``)."""
    code, out, err = _hook(tmp_path, cli, doc)
    assert (code, out.strip(), err) == (0, "{}", ""), (code, out, err)


def test_under_the_launcher_a_session_end_is_answered_and_nothing_is_remembered(tmp_path: Path) -> None:
    _, stop = REAL[1]
    code, out, _ = _hook(tmp_path, "claude-code", stop, {"SPANVISOR_TASK_ID": "claude-code-0123456789abcdef"})
    assert (code, out.strip()) == (0, "{}")
    assert not turns.state_dir(env_for(tmp_path)).exists(), "the launcher ends its task: the hook keeps nothing"


def test_a_turns_end_is_remembered_before_the_answer_for_the_sessions_end(tmp_path: Path) -> None:
    _, stop = REAL[1]
    assert _hook(tmp_path, "claude-code", stop)[0] == 0
    got = turns.latest("claude-code:" + stop["session_id"], env_for(tmp_path))
    assert got is not None and (got.state, got.key) == ("complete", stop["prompt_id"])


def _ev(cli: gc.Cli, event: str, turn: str | None = None, **kw: Any) -> gc.SessionEvent:
    return gc.SessionEvent(cli, event, "s", turn, **kw)


@pytest.mark.parametrize(
    ("cli", "events", "end"),
    [
        # Claude Code: Stop → complete; StopFailure → error with the API's text;
        # no turn's end for the prompt (SIGTERM, SIGINT) → cancelled.
        ("claude-code", [("Stop", "p1")], ("complete", None)),
        ("claude-code", [("StopFailure", "p1")], ("error", "API Error: 400 bad thing (unknown)")),
        ("claude-code", [], ("cancelled", None)),
        ("claude-code", [("Stop", "p0")], ("cancelled", None)),  # an earlier prompt's turn ended, not this one's
        # Codex: Stop → complete; Interrupt → cancelled; an open turn → error (an API error).
        ("codex", [("UserPromptSubmit", "t1"), ("Stop", "t1")], ("complete", None)),
        ("codex", [("UserPromptSubmit", "t1"), ("Interrupt", "t1")], ("cancelled", None)),
        (
            "codex",
            [("UserPromptSubmit", "t1")],
            ("error", "Codex ended before its turn finished (its output says why)"),
        ),
        # Gemini CLI: AfterAgent → complete; SessionEnd mid-turn (a signal) → cancelled.
        ("gemini", [("BeforeAgent", None), ("AfterAgent", None)], ("complete", None)),
        ("gemini", [("BeforeAgent", None)], ("cancelled", None)),
    ],
)
def test_how_a_session_ended_is_read_per_cli(
    cli: gc.Cli, events: list[tuple[str, str | None]], end: tuple[str, str | None]
) -> None:
    turn = None
    for name, key in events:
        said = "API Error: 400 bad thing" if name == "StopFailure" else None
        turn = turn_of(_ev(cli, name, key, error="unknown" if said else None, said=said)) or turn
    status, error, _ = ending(_ev(cli, "SessionEnd", "p1" if cli == "claude-code" else None), turn, None)
    assert (status, error) == end


def test_a_cancel_the_hook_saw_ends_the_session_cancelled_with_who_and_why() -> None:
    c = turns.Cancel("alice", "wrong branch", 1, "r1")
    done = turns.Turn("complete", "p1", None, 1)
    status, error, message = ending(_ev("claude-code", "SessionEnd", "p1"), done, c)
    assert (status, error) == ("cancelled", None)
    assert message.startswith("Cancelled by alice: wrong branch") and "spanvisor hook" in message


@settings(max_examples=500, deadline=None)
@given(
    cli=st.sampled_from(sorted(registry.NAMES)),
    events=st.lists(
        st.tuples(
            st.sampled_from(
                sorted(
                    {e for es in (registry.need(c).session_events for c in registry.NAMES) for e in es} - {"SessionEnd"}
                )
            ),
            st.none() | st.sampled_from(["p0", "p1"]),
        ),
        max_size=6,
    ),
    end_turn=st.none() | st.sampled_from(["p0", "p1"]),
)
def test_a_session_never_ends_complete_unless_its_last_turn_finished(
    cli: gc.Cli, events: list[tuple[str, str | None]], end_turn: str | None
) -> None:
    turn = None
    for name, key in events:
        if name in registry.need(cli).session_events:
            turn = turn_of(_ev(cli, name, key)) or turn
    status, _, _ = ending(_ev(cli, "SessionEnd", end_turn), turn, None)
    finished = turn is not None and turn.state == "complete"
    if cli == "claude-code" and end_turn and turn is not None and turn.key not in (None, end_turn):
        finished = False
    no_prompt = cli == "claude-code" and turn is None and end_turn is None
    assert (status == "complete") == (finished or no_prompt), (events, end_turn, status)
