"""The turn and session ends of Qwen Code, Copilot CLI, Cline and OpenCode
as ``spanvisor hook`` reads them (the inputs below are the pinned CLIs' own,
recorded offline with a probe hook; OpenCode's is spanvisor's plugin's):
read as session events, never as tool calls (a tool call of these CLIs
still goes to the policy, fail-closed), answered ``{}`` with exit status 0
whatever else fails, and never read as success without a turn that
finished. Hostile inputs never raise and never turn a tool call into a
session event."""

from __future__ import annotations

import argparse
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
from spanvisor.gate.session import session_of
from spanvisor.hook.end import ENDED, ending, finish, stated_turn, turn_of
from tests.gate.test_attack import HOSTILE_JSON, SPANVISOR, env_for

COPILOT = {"sessionId": "03dbf07b-937b-46f5-8f69-6c8edb2cc5e9", "timestamp": 1795657553289, "cwd": "/w"}
CLINE = {
    "clineVersion": "",
    "timestamp": "2026-11-26T01:47:29.040Z",
    "taskId": "conv_1795657648892_j3zsqek",
    "sessionContext": {"rootSessionId": "1795657648491_2rk7z"},
    "workspaceRoots": ["/w"],
    "userId": "unknown",
    "agent_id": "agent_1795657648738_aitlzq",
    "parent_agent_id": None,
}
QWEN = {
    "session_id": "fb36f845-160b-46cc-9b72-e8e29bbdfe6d",
    "transcript_path": "/h/.qwen/projects/-w/chats/fb36f845.jsonl",
    "cwd": "/w",
    "timestamp": "2026-11-26T01:48:15.847Z",
    "permission_mode": "yolo",
    "prompt_id": "fb36f845-160b-46cc-9b72-e8e29bbdfe6d########0",
}
API_ERROR = (
    '{"message":"scripted failure xyz","type":"invalid_request_error","param":null,"code":"invalid_request_error"}'
)
# (cli, input, the event it is read as, its session id, what it says)
REAL: list[tuple[gc.Cli, dict[str, Any], str, str, str | None]] = [
    ("copilot", {**COPILOT, "prompt": "probe ok"}, "userPromptSubmitted", COPILOT["sessionId"], None),
    (
        "copilot",
        {**COPILOT, "transcriptPath": "/h/events.jsonl", "stopReason": "end_turn", "stop_hook_active": False},
        "agentStop",
        COPILOT["sessionId"],
        None,
    ),
    (
        "copilot",
        {
            **COPILOT,
            "errorContext": "model_call",
            "recoverable": True,
            "error": {"message": API_ERROR, "name": "Error", "stack": "Error: …"},
        },
        "errorOccurred",
        COPILOT["sessionId"],
        "scripted failure xyz",
    ),
    ("copilot", {**COPILOT, "reason": "complete"}, "sessionEnd", COPILOT["sessionId"], None),
    (
        "cline",
        {**CLINE, "hookName": "agent_end", "iteration": 2, "turn": {"outputText": "Done.", "status": "completed"}},
        "TaskComplete",
        CLINE["taskId"],
        None,
    ),
    (
        "cline",
        {**CLINE, "hookName": "agent_error", "iteration": 1, "error": {"name": "Error", "message": "scripted 7f"}},
        "TaskError",
        CLINE["taskId"],
        "scripted 7f",
    ),
    (
        "cline",
        {**CLINE, "hookName": "agent_abort", "reason": "aborted", "taskCancel": {}},
        "TaskCancel",
        CLINE["taskId"],
        "aborted",
    ),
    (
        "opencode",
        {
            "session_id": "ses_dea7519c7ffe",
            "hook_event_name": "SessionEnd",
            "last_turn": "error",
            "error": "scripted 7f",
        },
        "SessionEnd",
        "ses_dea7519c7ffe",
        "scripted 7f",
    ),
    (
        "qwen",
        {**QWEN, "hook_event_name": "UserPromptSubmit", "prompt": "probe ok"},
        "UserPromptSubmit",
        QWEN["session_id"],
        None,
    ),
    (
        "qwen",
        {**QWEN, "hook_event_name": "Stop", "stop_hook_active": False, "last_assistant_message": "Done."},
        "Stop",
        QWEN["session_id"],
        "Done.",
    ),
]
# Their tool calls, which stay tool calls.
CALLS: list[tuple[gc.Cli, dict[str, Any]]] = [
    ("copilot", {**COPILOT, "toolName": "bash", "toolArgs": {"command": "rm -rf /"}, "reason": "complete"}),
    (
        "cline",
        {
            **CLINE,
            "hookName": "agent_end",
            "tool_call": {"id": "c", "name": "run_commands", "input": {"commands": ["x"]}},
        },
    ),
    ("opencode", {"session_id": "s", "hook_event_name": "SessionEnd", "tool_name": "bash", "tool_input": {}}),
]


@pytest.mark.parametrize(("cli", "doc", "event", "session", "said"), REAL, ids=[f"{r[0]}-{r[2]}" for r in REAL])
def test_each_clis_real_end_events_are_read_as_session_events(
    cli: gc.Cli, doc: dict[str, Any], event: str, session: str, said: str | None
) -> None:
    ev = gc.session_event(cli, json.dumps(doc).encode())
    assert ev is not None and (ev.event, ev.session_id, ev.said) == (event, session, said)
    for other in registry.NAMES:  # another CLI never reads it as its own event, or reads the same one
        got = gc.session_event(other, json.dumps(doc).encode())
        assert got is None or other == cli or got.event in registry.need(other).session_events


@pytest.mark.parametrize(("cli", "doc"), CALLS, ids=[c for c, _ in CALLS])
def test_their_tool_calls_are_never_session_events_and_still_parse_as_calls(cli: gc.Cli, doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    assert gc.session_event(cli, raw) is None
    assert gc.parse(cli, raw).tool in ("bash", "run_commands")


def _ev(cli: gc.Cli, event: str, **kw: Any) -> gc.SessionEvent:
    return gc.SessionEvent(cli, event, "s", **kw)


@pytest.mark.parametrize(
    ("cli", "events", "end", "want"),
    [
        # Copilot CLI: agentStop → complete; errorOccurred → error with its text;
        # sessionEnd "complete" with the turn open (SIGTERM) → cancelled; "error" → error.
        (
            "copilot",
            ["userPromptSubmitted", "agentStop"],
            _ev("copilot", "sessionEnd", reason="complete"),
            ("complete", None),
        ),
        (
            "copilot",
            ["userPromptSubmitted", "errorOccurred"],
            _ev("copilot", "sessionEnd", reason="error"),
            ("error", "boom"),
        ),
        ("copilot", ["userPromptSubmitted"], _ev("copilot", "sessionEnd", reason="complete"), ("cancelled", None)),
        (
            "copilot",
            ["userPromptSubmitted", "agentStop"],
            _ev("copilot", "sessionEnd", reason="error"),
            ("error", "Copilot CLI ended on an error (its output says why)"),
        ),
        # A recoverable error the agent got past: the turn finished.
        (
            "copilot",
            ["errorOccurred", "agentStop"],
            _ev("copilot", "sessionEnd", reason="complete"),
            ("complete", None),
        ),
        # Qwen Code: Stop → complete; a prompt still open → cancelled.
        ("qwen", ["UserPromptSubmit", "Stop"], _ev("qwen", "SessionEnd"), ("complete", None)),
        ("qwen", ["UserPromptSubmit"], _ev("qwen", "SessionEnd"), ("cancelled", None)),
        # Cline and OpenCode: the end says it.
        ("cline", [], _ev("cline", "TaskComplete", outcome="complete"), ("complete", None)),
        ("cline", [], _ev("cline", "TaskError", outcome="error", said="boom"), ("error", "boom")),
        ("cline", [], _ev("cline", "TaskError", outcome="error"), ("error", "Cline's turn failed")),
        ("cline", [], _ev("cline", "TaskCancel", outcome="cancelled"), ("cancelled", None)),
        # A run the gate's cancel stopped: no task end, SessionShutdown.
        ("cline", [], _ev("cline", "SessionShutdown"), ("cancelled", None)),
        ("opencode", [], _ev("opencode", "SessionEnd", outcome="complete"), ("complete", None)),
        ("opencode", [], _ev("opencode", "SessionEnd", outcome="open"), ("cancelled", None)),
        ("opencode", [], _ev("opencode", "SessionEnd"), ("cancelled", None)),
    ],
)
def test_how_a_session_ended_is_read_per_cli(
    cli: gc.Cli, events: list[str], end: gc.SessionEvent, want: tuple[str, str | None]
) -> None:
    turn = None
    for name in events:
        turn = turn_of(_ev(cli, name, said="boom" if name == "errorOccurred" else None)) or turn
    status, error, _ = ending(end, stated_turn(end) or turn, None)
    assert (status, error) == want


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=20), HOSTILE_JSON, max_size=6))
def test_nothing_naming_a_tool_in_their_shapes_is_ever_a_session_event(doc: dict[str, Any]) -> None:
    for cli, key in (("copilot", "toolName"), ("copilot", "toolArgs"), ("cline", "tool_call"), ("cline", "preToolUse")):
        called = {**doc, key: doc.get(key, "bash"), "hookName": "agent_end", "reason": "complete"}
        assert gc.session_event(cli, json.dumps(called).encode()) is None


@settings(max_examples=500, deadline=None)
@given(
    doc=st.dictionaries(
        st.sampled_from(
            [
                "sessionId",
                "taskId",
                "session_id",
                "hookName",
                "hook_event_name",
                "reason",
                "error",
                "errorContext",
                "stopReason",
                "prompt",
                "last_turn",
                "outcome",
                "said",
                "tool_name",
                "source",
            ]
        ),
        HOSTILE_JSON | st.sampled_from(["agent_end", "agent_error", "agent_abort", "SessionEnd", "complete", "error"]),
        max_size=7,
    )
)
def test_hostile_end_events_are_read_without_raising_and_never_complete_unless_a_turn_finished(
    doc: dict[str, Any],
) -> None:
    raw = json.dumps(doc).encode()
    for cli in registry.NAMES:
        ev = gc.session_event(cli, raw)
        if ev is None:
            continue
        assert ev.event in registry.need(cli).session_events
        assert ev.outcome in (None, "open", "complete", "error", "cancelled")
        status, _, _ = ending(ev, stated_turn(ev), None)
        finished = ev.outcome == "complete" or (cli == "claude-code" and not ev.turn)
        if status == "complete":
            assert finished and not (cli == "copilot" and ev.reason == "error"), ev


def _hook(tmp: Path, cli: str, doc: dict[str, Any], extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**env_for(tmp), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9", **(extra or {})}
    broken = tmp / "broken.toml"  # a session event never reads the policy
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


@pytest.mark.parametrize(("cli", "doc", "event", "session", "said"), REAL, ids=[f"{r[0]}-{r[2]}" for r in REAL])
def test_the_real_hook_answers_each_end_event_neutrally_with_serve_down_and_no_policy(
    tmp_path: Path, cli: gc.Cli, doc: dict[str, Any], event: str, session: str, said: str | None
) -> None:
    code, out, err = _hook(tmp_path, cli, doc)
    assert (code, out.strip(), err) == (0, "{}", ""), (code, out, err)


@pytest.mark.parametrize(("cli", "doc"), CALLS, ids=[c for c, _ in CALLS])
def test_their_tool_calls_still_fail_closed_on_a_broken_policy(
    tmp_path: Path, cli: gc.Cli, doc: dict[str, Any]
) -> None:
    code, out, _ = _hook(tmp_path, cli, doc)
    if cli == "cline":  # Cline's block is exit status 0 with an answer that stops the call
        assert code == 0 and ("overrideInput" in out or '"cancel": true' in out), out
    else:
        assert code == gc.EXIT_BLOCK and '"deny"' in out, out


def test_under_the_launcher_their_ends_are_answered_and_nothing_is_remembered(tmp_path: Path) -> None:
    doc = REAL[1][1]  # Copilot's agentStop
    code, out, _ = _hook(tmp_path, "copilot", doc, {"SPANVISOR_TASK_ID": "copilot-0123456789abcdef"})
    assert (code, out.strip()) == (0, "{}")
    assert not turns.state_dir(env_for(tmp_path)).exists(), "the launcher ends its task: the hook keeps nothing"


def test_copilots_turn_is_remembered_for_its_session_end(tmp_path: Path) -> None:
    assert _hook(tmp_path, "copilot", REAL[2][1])[0] == 0  # errorOccurred
    got = turns.latest("copilot:" + COPILOT["sessionId"], env_for(tmp_path))
    assert got is not None and (got.state, got.error) == ("error", "scripted failure xyz")


def test_a_cline_tasks_first_end_is_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``SessionShutdown`` after ``TaskComplete`` ends nothing again (the
    root's end is the last word: it would turn complete into cancelled)."""
    env = {**env_for(tmp_path), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    monkeypatch.setenv("SPANVISOR_DATA_DIR", env["SPANVISOR_DATA_DIR"])
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")
    key = session_of("cline", CLINE["taskId"], env)
    assert key is not None
    args = argparse.Namespace(endpoint="http://127.0.0.1:9", otlp_token=None)
    finish(_ev("cline", "TaskComplete", outcome="complete")._replace(session_id=CLINE["taskId"]), key, args, env)
    kept = turns.latest(key.task_id, env)
    assert kept is not None and (kept.state, kept.key) == ("complete", ENDED)
    assert finish(_ev("cline", "SessionShutdown")._replace(session_id=CLINE["taskId"]), key, args, env) is False
    assert turns.latest(key.task_id, env) == kept
