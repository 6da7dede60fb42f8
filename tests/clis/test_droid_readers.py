"""Factory Droid's ``exec -o stream-json`` lines as the launcher reads them
(the shapes printed by its 0.225.2 binary): a failed tool's message, and an
error line before a completion (Droid prints one only for a run that did
not fail)."""

from __future__ import annotations

from typing import Any

from spanvisor.clis.droid import output, stream
from spanvisor.clis.output import RunOutput


class _Report:
    def __init__(self) -> None:
        self.session: str | None = None
        self.notes: dict[str, Any] = {}
        self.said: list[tuple[str, dict[str, Any]]] = []

    def say(self, event: str, attrs: dict[str, Any], at: int) -> None:
        self.said.append((event, attrs))

    def call(self, *args: Any, **kwargs: Any) -> None:
        self.said.append(("model_call", {}))

    def tool_ran(self, at: int) -> None:
        pass


def test_a_failed_tools_message_is_its_steps_error() -> None:
    r = _Report()
    stream.read(r, {"type": "tool_call", "id": "c1", "toolName": "Execute", "parameters": {"command": "x"}})
    stream.read(
        r, {"type": "tool_result", "id": "c1", "isError": True, "error": {"type": "x", "message": "no such file"}}
    )
    [(_, attrs)] = [s for s in r.said if s[0] == "tool_call"]
    assert (attrs["tool_name"], attrs["success"], attrs["error"]) == ("Execute", False, "no such file")


def test_a_completion_after_an_error_line_is_a_finished_run() -> None:
    out = RunOutput("droid-text")
    output.read(out, '{"type": "error", "source": "agent_loop", "message": "429 slow down"}')
    assert (out.failed, out.error) == (True, "429 slow down")
    said = output.read(out, '{"type": "completion", "finalText": "Done."}')
    assert (said, out.saw_result, out.failed, out.error) == ("Done.\n", True, False, None)
