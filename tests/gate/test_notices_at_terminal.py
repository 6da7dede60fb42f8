"""``spanvisor hook claude-code|codex --at-terminal``: a ``PermissionRequest``
is a notice. It is answered ``{}`` with exit status 0 whatever it holds (the
CLI's own prompt shows; the person at the terminal decides), and the note
that shows the session's task waiting names the call from the input itself.
Every other event reaching the same command is judged as without the
option: the gate's ``PreToolUse`` stays fail-closed. The Codex input is what
0.169's interactive UI sent its hook on a terminal."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.gate import notes, notices, otlp
from spanvisor.hook import command as hook
from tests.gate.test_attack import ALLOW_LS, HOSTILE_JSON, SPANVISOR, env_for
from tests.waiting import wait_until

SESSION = "01a215ad-eed9-7d62-9ae0-83551d18a907"
CODEX = {
    "session_id": SESSION,
    "turn_id": "01a215ad-efb2-79b1-9ae4-a1398e6d700e",
    "transcript_path": f"/home/u/.codex/sessions/2026/11/26/rollout-2026-11-26T02-27-30-{SESSION}.jsonl",
    "cwd": "/work",
    "hook_event_name": "PermissionRequest",
    "model": "gpt-5-codex",
    "permission_mode": "default",
    "tool_name": "Bash",
    "tool_input": {"command": "touch made.txt", "description": "make the file the task asks for"},
}
CLAUDE = {
    "session_id": "30ec1420-56df-42ff-90c5-424606d80fe2",
    "transcript_path": "/home/u/.claude/projects/-work/30ec1420.jsonl",
    "cwd": "/work",
    "prompt_id": "2737702b-a159-4cd6-9576-8c80c75eee7b",
    "permission_mode": "default",
    "hook_event_name": "PermissionRequest",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build"},
    "tool_use_id": "toolu_01ABC",
}


def _spooled(tmp: Path) -> list[dict[str, Any]]:
    spool = notes.spool_dir(env_for(tmp))
    return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))] if spool.exists() else []


def _in_process(tmp: Path, stdin: bytes, cli: str, *options: str, policy: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {**env_for(tmp), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    path = tmp / "policy.toml"
    if policy is not None:
        path.write_text(policy)
    argv = [cli, "--policy", str(path), *options]
    code = hook.main(argv, stdin=stdin, stdout=out, stderr=err, env=env)
    return code, out.getvalue(), err.getvalue()


def test_the_real_hook_hands_codexs_request_to_the_terminal_and_spools_the_waiting_note(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"default = \xff")  # the notice never reads the policy
    proc = subprocess.run(
        [SPANVISOR, "hook", "codex", "--at-terminal", "--policy", str(broken)],
        input=json.dumps(CODEX).encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (proc.returncode, proc.stdout.decode().strip(), proc.stderr.decode()) == (0, "{}", "")
    (item,) = wait_until(lambda: _spooled(tmp_path), 30, "the waiting note in the spool")
    start, checkpoint = item["records"]
    assert start[0] == otlp.LIVE_TASK_START and start[1][otlp.TASK_ID] == f"codex:{SESSION}"
    assert checkpoint[1][notices.STATUS] == "waiting"
    assert checkpoint[1][otlp.MESSAGE] == "⏸ Waiting at the terminal: Codex asks to use Bash(touch made.txt)"
    assert checkpoint[1]["gen_ai.tool.name"] == "Bash"


def test_claude_codes_request_names_its_call_without_the_transcript(tmp_path: Path) -> None:
    assert _in_process(tmp_path, json.dumps(CLAUDE).encode(), "claude-code", "--at-terminal") == (0, "{}\n", "")
    n = notices.notice_of("claude-code", json.dumps(CLAUDE), at_terminal=True)
    assert n is not None and n.call == ("toolu_01ABC", "Bash", {"command": "rm -rf build"})
    item = notices.waiting_note(n, None, {}, 1)
    assert item is not None
    assert (
        item["records"][-1][1][otlp.MESSAGE] == "⏸ Waiting at the terminal: Claude Code asks to use Bash(rm -rf build)"
    )
    # Both hooks set: the Notification 6 s later finds the same call in the transcript, the same note.
    transcript = tmp_path / "t.jsonl"
    use = {"type": "tool_use", "id": "toolu_01ABC", "name": "Bash", "input": {"command": "rm -rf build"}}
    transcript.write_text(json.dumps({"type": "assistant", "message": {"content": [use]}}) + "\n")
    told = notices.Notice("claude-code", CLAUDE["session_id"], "permission_prompt", None, None, str(transcript))
    again = notices.waiting_note(told, None, {}, 2)
    assert again is not None and again["id"] == item["id"]


def test_without_the_option_a_permission_request_is_the_gates_to_decide(tmp_path: Path) -> None:
    code, out, _ = _in_process(tmp_path, json.dumps(CODEX).encode(), "codex", policy=ALLOW_LS)
    assert code == 0 and json.loads(out)["hookSpecificOutput"]["decision"]["behavior"] == "deny"
    assert notices.notice_of("codex", json.dumps(CODEX)) is None
    ls = {**CODEX, "tool_input": {"command": "ls"}}
    code, out, _ = _in_process(tmp_path, json.dumps(ls).encode(), "codex", policy=ALLOW_LS)
    assert code == 0 and json.loads(out)["hookSpecificOutput"]["decision"]["behavior"] == "allow"


@pytest.mark.parametrize("cli", ["codex", "claude-code"])
def test_with_the_option_a_pre_tool_use_is_still_gated_and_fails_closed(tmp_path: Path, cli: str) -> None:
    pre = json.dumps({**CODEX, "hook_event_name": "PreToolUse"}).encode()
    code, out, _ = _in_process(tmp_path, pre, cli, "--at-terminal", policy=ALLOW_LS)
    assert code == 0 and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    code, out, _ = _in_process(tmp_path, pre, cli, "--at-terminal", policy="default = \xff")
    assert code == 2 and "deny" in out, "a policy it cannot read: blocked, as without the option"
    assert _in_process(tmp_path, b"not json", cli, "--at-terminal")[0] == 2
    assert [i for i in _spooled(tmp_path) if i["kind"] == "waiting"] == []


@pytest.mark.parametrize("cli", ["gemini", "qwen", "copilot"])
def test_other_clis_are_judged_as_without_the_option(cli: str) -> None:
    assert notices.notice_of(cli, json.dumps(CODEX), at_terminal=True) is None


_KEYS = ["session_id", "turn_id", "prompt_id", "tool_name", "tool_input", "tool_use_id", "transcript_path", "cwd"]


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(_KEYS), HOSTILE_JSON, max_size=8),
    cli=st.sampled_from(["codex", "claude-code"]),
    launched=st.booleans(),
)
def test_any_permission_request_with_the_option_is_answered_neutrally(
    tmp_path: Path, values: dict[str, Any], cli: str, launched: bool
) -> None:
    doc = {**values, "hook_event_name": "PermissionRequest"}
    out, err = io.StringIO(), io.StringIO()
    env = {**env_for(tmp_path), "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    if launched:
        env["SPANVISOR_TASK_ID"] = "deploy:web/42"
    argv = [cli, "--at-terminal", "--policy", str(tmp_path / "absent.toml")]
    code = hook.main(argv, stdin=json.dumps(doc).encode(), stdout=out, stderr=err, env=env)
    assert (code, out.getvalue(), err.getvalue()) == (0, "{}\n", "")
    n = notices.notice_of(cli, json.dumps(doc), at_terminal=True)
    assert n is not None and n.kind == notices.REQUEST
    item = notices.waiting_note(n, None, env, 1)
    if item is not None:
        message = item["records"][-1][1][otlp.MESSAGE]
        assert message.startswith("⏸ Waiting at the terminal: ") and len(message) < 300
