"""An example third-party coding-agent CLI adapter: "Toy CLI".

Its hook contract is its own, on purpose unlike any built-in CLI's: stdin
``{"sid": …, "call": {"tool": …, "args": {…}}, "dir": …}``; the answer
``{"verdict": "allow|deny", "why": …}``; its file tools name their paths
``where``; it takes an ``http`` hook from a ``--hooks FILE`` of its own.
spanvisor finds it only through the ``spanvisor.clis`` entry
point its distribution declares (tests/clis/test_third_party.py installs
it into a scratch directory); nothing in spanvisor names it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from spanvisor.clis.adapter import Adapter, Verdict


class ToyCli(Adapter):
    name = "toy"
    title = "Toy CLI"
    binaries = ("toy",)
    services = ("toy-cli",)
    namespace = "toy"
    tool_events = ("beforeCall",)
    session_events = frozenset({"bye"})
    end_events = frozenset({"bye"})
    session_keys = ("sid",)
    path_keys = frozenset({"where"})
    hook_timeout_s = 45.0

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
        call = doc.get("call") if isinstance(doc.get("call"), dict) else {}
        return {
            "session_id": doc.get("sid"),
            "hook_event_name": "beforeCall",
            "tool_name": call.get("tool"),
            "tool_input": call.get("args", {}),
            "cwd": doc.get("dir"),
        }

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc.get("event") != "bye":
            return None
        return {"session_id": doc.get("sid"), "hook_event_name": "bye", "outcome": "complete"}

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        return {"verdict": answer, "why": reason}

    def with_http_hook(self, argv: list[str], url: str, timeout_s: float, folder: str) -> list[str] | None:
        path = os.path.join(folder, "toy-hooks.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"beforeCall": {"url": url, "timeout": timeout_s, "failClosed": True}}, f)
        return [argv[0], "--hooks", path, *argv[1:]]


ADAPTER = ToyCli()
