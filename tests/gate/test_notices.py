"""Claude Code's ``Notification`` reaches ``spanvisor hook claude-code``:
answered with ``{}`` and exit status 0 whatever it holds (a notification
decides nothing: never a block, never a traceback), and a permission
prompt makes the note that shows the session's task waiting, naming the
call from the transcript's end. The inputs are what Claude Code 2.1.330
sent its hook under a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.gate import notes, notices, otlp
from spanvisor.hook import command as hook
from spanvisor.spans import conventions as cv
from tests.gate.test_attack import HOSTILE_JSON, SPANVISOR, env_for
from tests.waiting import wait_until

SESSION = "30ec1420-56df-42ff-90c5-424606d80fe2"
REAL = {
    "session_id": SESSION,
    "transcript_path": "/home/u/.claude/projects/-work/30ec1420-56df-42ff-90c5-424606d80fe2.jsonl",
    "cwd": "/work",
    "prompt_id": "2737702b-a159-4cd6-9576-8c80c75eee7b",
    "hook_event_name": "Notification",
    "message": "Claude needs your permission",
    "notification_type": "permission_prompt",
}


def _transcript(path: Path, *entries: dict[str, Any], pad: int = 0) -> str:
    lines = ['{"type": "file-history-snapshot", "pad": "' + "x" * pad + '"}']
    lines += [json.dumps(e) for e in entries]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _use(tid: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {"content": [{"type": "tool_use", "id": tid, "name": name, "input": tool_input}]},
    }


def _result(tid: str) -> dict[str, Any]:
    return {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": tid, "content": "ok"}]}}


def _spooled(tmp: Path) -> list[dict[str, Any]]:
    spool = notes.spool_dir(env_for(tmp))
    return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))] if spool.exists() else []


def _in_process(tmp: Path, stdin: bytes, cli: str = "claude-code") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {**env_for(tmp), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    code = hook.main([cli, "--policy", str(tmp / "absent.toml")], stdin=stdin, stdout=out, stderr=err, env=env)
    return code, out.getvalue(), err.getvalue()


def test_the_real_hook_answers_a_permission_prompt_neutrally_and_spools_the_waiting_note(tmp_path: Path) -> None:
    doc = {
        **REAL,
        "transcript_path": _transcript(tmp_path / "t.jsonl", _use("toolu_1", "Bash", command="touch made.txt")),
    }
    env = {**env_for(tmp_path), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"default = \xff")  # a notification never reads the policy
    proc = subprocess.run(
        [SPANVISOR, "hook", "claude-code", "--policy", str(broken)],
        input=json.dumps(doc).encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (proc.returncode, proc.stdout.decode().strip(), proc.stderr.decode()) == (0, "{}", "")
    # The answer is released first; the deciding process spools the note after it.
    (item,) = wait_until(lambda: _spooled(tmp_path), 30, "the waiting note in the spool")
    start, checkpoint = item["records"]
    assert start[0] == otlp.LIVE_TASK_START and start[1][otlp.TASK_ID] == f"claude-code:{SESSION}"
    assert checkpoint[0] == otlp.EVENT_CHECKPOINT
    assert checkpoint[1][notices.STATUS] == "waiting"
    assert checkpoint[1][otlp.MESSAGE] == "⏸ Waiting at the terminal: Claude Code asks to use Bash(touch made.txt)"


def test_the_status_key_is_the_conventions() -> None:
    assert notices.STATUS == cv.STATUS


@pytest.mark.parametrize("kind", ["idle_prompt", "auth_success", "elicitation_dialog", None])
def test_other_notifications_are_answered_and_change_nothing(tmp_path: Path, kind: str | None) -> None:
    doc = {**REAL, "notification_type": kind, "message": "Claude is waiting for your input"}
    assert _in_process(tmp_path, json.dumps(doc).encode()) == (0, "{}\n", "")
    assert _spooled(tmp_path) == []


def test_under_the_launcher_the_note_goes_to_the_launchers_task() -> None:
    n = notices.notice_of("claude-code", json.dumps(REAL))
    assert n is not None
    item = notices.waiting_note(n, None, {"SPANVISOR_TASK_ID": "deploy:web/42"}, 1, read_transcript=False)
    assert item is not None and item["session"] == ["deploy:web/42", "claude-code", True]
    ((name, attrs, _),) = item["records"]  # no start record: the launcher opened the task
    assert (name, attrs[otlp.TASK_ID]) == (otlp.EVENT_CHECKPOINT, "deploy:web/42")
    assert attrs[otlp.MESSAGE] == "⏸ Waiting at the terminal: Claude needs your permission"


@pytest.mark.parametrize("cli", ["codex", "gemini", "qwen", "copilot"])
def test_the_other_clis_notification_shaped_input_is_judged_as_before(cli: str) -> None:
    assert notices.notice_of(cli, json.dumps(REAL)) is None


def test_an_input_naming_a_tool_is_never_a_notification() -> None:
    assert notices.notice_of("claude-code", json.dumps({**REAL, "tool_name": "Bash"})) is None


def test_the_pending_call_is_the_last_one_unanswered(tmp_path: Path) -> None:
    t = _transcript(
        tmp_path / "t.jsonl",
        _use("a", "Read", file_path="/x"),
        _result("a"),
        {"type": "assistant", "message": {"content": "not a list"}},
        _use("b", "Bash", command="rm -rf build"),
    )
    assert notices.pending_call(t) == ("b", "Bash", {"command": "rm -rf build"})
    done = _transcript(tmp_path / "d.jsonl", _use("a", "Bash", command="ls"), _result("a"))
    assert notices.pending_call(done) is None


def test_only_the_transcripts_tail_is_read_and_a_cut_line_skipped(tmp_path: Path) -> None:
    t = _transcript(tmp_path / "big.jsonl", _use("z", "Edit", file_path="/src/a.py"), pad=3 * notices.TAIL_BYTES)
    assert notices.pending_call(t) == ("z", "Edit", {"file_path": "/src/a.py"})
    early = _transcript(tmp_path / "early.jsonl", _use("q", "Bash", command="ls"))
    with open(early, "a") as f:
        f.write("junk line\n" * (notices.TAIL_BYTES // 10 + 10))
    assert notices.pending_call(early) is None  # beyond the tail: not looked for


def test_what_is_not_a_regular_file_is_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(notices.pending_call(str(fifo))), daemon=True)
    t.start()
    t.join(10)
    assert got == [None], "a FIFO would hang a read: it is never read"
    assert notices.pending_call(str(tmp_path)) is None
    assert notices.pending_call("/dev/zero") is None and notices.pending_call("/dev/stdin") is None
    assert notices.pending_call(str(tmp_path / "absent")) is None
    assert notices.pending_call("bad\x00path") is None


def test_secrets_in_the_call_are_redacted_and_a_long_command_clipped(tmp_path: Path) -> None:
    cmd = "curl -H 'Authorization: Bearer sk-ant-api03-SECRETSECRETSECRETSECRET' " + "x" * 500
    n = notices.Notice("claude-code", SESSION, "permission_prompt", None)
    text = notices.waiting_text(n, ("t", "Bash", {"command": cmd}))
    assert "SECRETSECRET" not in text
    assert len(text) < 250


_NOTIFICATION_KEYS = ["session_id", "message", "notification_type", "prompt_id", "transcript_path", "title"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(_NOTIFICATION_KEYS), HOSTILE_JSON, max_size=6),
    kind=st.sampled_from(["permission_prompt", "idle_prompt"]),
    lines=st.lists(HOSTILE_JSON.map(json.dumps) | st.text(max_size=40), max_size=6),
)
def test_any_notification_is_answered_neutrally(
    tmp_path: Path, values: dict[str, Any], kind: str, lines: list[str]
) -> None:
    transcript = tmp_path / "hostile.jsonl"
    transcript.write_text("\n".join(lines))
    doc = {"notification_type": kind, "transcript_path": str(transcript), **values, "hook_event_name": "Notification"}
    assert _in_process(tmp_path, json.dumps(doc).encode()) == (0, "{}\n", "")


def test_a_tool_call_is_never_parsed_twice_and_an_escaped_name_is_judged_as_before(tmp_path: Path) -> None:
    assert notices.notice_of("claude-code", b'{"tool_name": "Bash", "tool_input": {"command": "ls"}}') is None
    escaped = json.dumps({**REAL, "hook_event_name": "Notification"}).replace("Notification", "\\u004eotification")
    assert notices.notice_of("claude-code", escaped.encode()) is None
    code, out, _ = _in_process(tmp_path, escaped.encode())
    assert code == 2 and "deny" in out, "not a notification as Claude Code writes one: a call without a tool, blocked"
