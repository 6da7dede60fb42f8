"""pi's file tools open what its ``expandPath`` makes of a path (one
leading ``@`` dropped, Unicode spaces made plain, ``~`` its home): the gate
judges that path, so a path rule holds whichever way the model wrote it
(before, ``@/etc/passwd`` and ``~/.aws/credentials`` were judged as paths
under the working folder and allowed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spanvisor.gate import contracts as gc
from spanvisor.gate.policy import parse

POLICY = parse(
    {
        "default": "ask",
        "rule": [
            {"name": "secrets", "path": ["/etc/*", "/home/u/.aws/**"], "decision": "deny"},
            {"name": "work", "path": ["/work/**"], "decision": "allow"},
        ],
    }
)


def _ruling(tool: str, tool_input: dict[str, Any]) -> tuple[str, str]:
    doc = {"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}
    call = gc.parse("pi", json.dumps({**doc, "cwd": "/work/repo"}).encode())
    ruling = POLICY.decide(call, resolve=False)
    return ruling.verdict, ruling.by


@pytest.mark.parametrize(
    ("tool", "path"),
    [
        ("read", "@/etc/passwd"),
        ("read", "~/.aws/credentials"),
        ("write", "@~/.aws/config"),
        ("edit", "/etc/host\u00a0s"),
        ("ls", "~"),
    ],
)
def test_a_path_pi_would_expand_is_judged_as_pi_opens_it(tool: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    verdict, by = _ruling(tool, {"path": path})
    if path == "~":
        assert verdict == "ask", "its home: no rule allows it"
    else:
        assert (verdict, by) == ("deny", "policy:secrets"), path


def test_a_plain_path_in_the_work_folder_is_still_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    assert _ruling("read", {"path": "src/a.py"}) == ("allow", "policy:work")
    assert _ruling("read", {"path": "@src/a.py"}) == ("allow", "policy:work")
