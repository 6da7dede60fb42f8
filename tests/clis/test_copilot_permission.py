"""Copilot CLI's two tool events, read and answered in their own shapes
(issue 65): ``preToolUse`` (``toolArgs``, ``toolCallId``; answered
``permissionDecision``) and ``permissionRequest`` (it names itself by
``hookName``; ``toolInput``, no call id; answered ``behavior``). The real
CLI's run of both is ``tests/codingagents/test_copilot_cli_hooks.py``."""

from __future__ import annotations

import json

import pytest

from spanvisor.gate import contracts

SID = "d0a3c1e2-0000-4000-8000-000000000001"
PRE = {"sessionId": SID, "toolName": "bash", "toolArgs": json.dumps({"command": "ls", "description": "x"})}
ASKED = {"hookName": "permissionRequest", "sessionId": SID, "toolName": "bash", "toolInput": {"command": "ls"}}


@pytest.mark.parametrize(
    ("doc", "event", "call_id"),
    [
        ({**PRE, "toolCallId": "call-1"}, "preToolUse", "call-1"),
        (ASKED, "permissionRequest", None),
        # Named by its keys alone, should a release drop hookName.
        ({k: v for k, v in ASKED.items() if k != "hookName"}, "permissionRequest", None),
    ],
)
def test_each_tool_event_is_read_as_the_call_it_asks_about(
    doc: dict[str, object], event: str, call_id: str | None
) -> None:
    call = contracts.parse("copilot", json.dumps(doc).encode())
    assert (call.event, call.tool, call.tool_input["command"], call.session_id, call.call_id) == (
        event,
        "bash",
        "ls",
        SID,
        call_id,
    )
    assert contracts.session_event("copilot", json.dumps(doc).encode()) is None


def test_each_tool_event_is_answered_in_its_own_shape() -> None:
    assert contracts.reply("copilot", "preToolUse", "deny", "no") == {
        "permissionDecision": "deny",
        "permissionDecisionReason": "no",
    }
    assert contracts.reply("copilot", "permissionRequest", "deny", "no") == {"behavior": "deny", "message": "no"}
    assert contracts.reply("copilot", "permissionRequest", "allow", "ok") == {"behavior": "allow"}
