"""The session id the hook reads before the policy (to look for the
session's cancel) is found in every CLI's own stdin: ``session_id``
(Claude Code's keys), ``sessionId`` (Copilot CLI), ``taskId`` (Cline). With
Copilot CLI's and Cline's key unread, a cancelled session's calls ran on,
allowed by the policy."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.gate.contracts import parse, session_id_of

# Ids as the CLIs make them (uuids, conv_<n>_<x>): nothing JSON escapes.
ids = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'), min_size=1, max_size=80
)
KEY = {"claude-code": "session_id", "copilot": "sessionId", "cline": "taskId"}


def _stdin(cli: str, sid: str, pad: int = 0) -> bytes:
    big = "x" * pad
    if cli == "copilot":
        doc = {"sessionId": sid, "timestamp": 1, "cwd": "/w", "toolName": "bash", "toolArgs": {"command": big}}
    elif cli == "cline":
        doc = {
            "taskId": sid,
            "hookName": "tool_call",
            "tool_call": {"id": "c1", "name": "run_commands", "input": {"commands": [big]}},
        }
    else:
        doc = {"session_id": sid, "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": big}}
    return json.dumps(doc).encode()


@given(cli=st.sampled_from(sorted(KEY)), sid=ids, large=st.booleans())
def test_each_clis_session_id_is_read_small_or_large_and_agrees_with_the_parsed_call(
    cli: str, sid: str, large: bool
) -> None:
    raw = _stdin(cli, sid, 300 * 1024 if large else 10)
    assert session_id_of(cli, raw) == sid
    if not large:
        assert parse(cli, raw).session_id == sid  # type: ignore[arg-type]


def test_none_when_there_is_none_or_it_is_not_a_string() -> None:
    assert session_id_of("claude-code", b'{"tool_name": "Bash"}') is None
    assert session_id_of("copilot", b'{"sessionId": 7, "taskId": ""}') is None
    assert session_id_of("cline", b'{"sessionId": 7, "taskId": ""}') is None
    assert session_id_of("claude-code", b"[1, 2]") is None
    assert session_id_of("claude-code", b"not json") is None
    assert session_id_of("no-such-cli", b'{"session_id": "s"}') is None


def test_a_cli_reads_only_its_own_session_key() -> None:
    """Copilot CLI names its session ``sessionId``, Cline ``taskId``: a key
    of another CLI's is no session of this one's."""
    assert session_id_of("copilot", b'{"session_id": "a", "sessionId": "b"}') == "b"
    assert session_id_of("claude-code", b'{"taskId": "t"}') is None
