"""Factory Droid's ``exec -o stream-json`` lines as the launcher reads them
(the shapes printed by its 0.225.2 binary): a failed tool's message, and an
error line before a completion (Droid prints one only for a run that did
not fail)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from spanvisor.clis.droid import output, stream
from spanvisor.clis.output import RunOutput


class _Report:
    def __init__(self) -> None:
        self.session: str | None = None
        self.notes: dict[str, Any] = {}
        self.argv: list[str] = ["droid", "exec", "hi"]
        self.calls: list[tuple[Any, ...]] = []
        self.said: list[tuple[str, dict[str, Any]]] = []

    def say(self, event: str, attrs: dict[str, Any], at: int) -> None:
        self.said.append((event, attrs))

    def call(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(args)
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


def _settings(home: Path, models: list[dict[str, Any]]) -> dict[str, str]:
    (home / ".factory").mkdir(parents=True)
    (home / ".factory" / "settings.json").write_text(json.dumps({"customModels": models}))
    return {"HOME": str(home)}


def _custom(model: str, shown: str | None = None, **more: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": model, "provider": "generic-chat-completion-api", "baseUrl": "http://x/v1"}
    return {**entry, **({"displayName": shown} if shown is not None else {}), **more}


def test_custom_models_are_numbered_per_display_name_as_droid_does(tmp_path: Path) -> None:
    env = _settings(
        tmp_path,
        [
            _custom("gpt-4.1", "fast"),
            {"model": "broken"},  # no provider, no baseUrl: Droid leaves it out before numbering
            _custom("claude-sonnet-4-5", "My Model"),
            _custom("gpt-4o", "fast"),
            _custom("o3", "fast", apiKey="YOUR_API_KEY"),  # a placeholder key: left out
            _custom("gpt-5", "fast", id="custom:mine"),
            _custom("deepseek-chat"),  # no display name: its model names it
        ],
    )
    model = lambda given: stream.model_of(["droid", "exec", "-m", given, "hi"], env)  # noqa: E731
    assert model("custom:fast-0") == "gpt-4.1"
    assert model("custom:fast-1") == "gpt-4o"
    assert model("custom:My-Model-0") == "claude-sonnet-4-5"
    assert model("custom:mine") == "gpt-5"
    assert model("custom:deepseek-chat-0") == "deepseek-chat"
    assert model("custom:gpt-4o") == "gpt-4o"  # custom:<model>, as Droid finds it last
    assert model("custom:fast-2") == "custom:fast-2"  # none: said as given, never another's price
    assert model("gpt-5") == "gpt-5"


def test_the_init_lines_model_prices_a_run_without_m_and_a_resumed_sessions_total_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(_settings(tmp_path, [_custom("gpt-4.1", "fake")])["HOME"]))
    usage = {"input_tokens": 2333, "output_tokens": 107}
    r = _Report()
    stream.read(r, {"type": "system", "subtype": "init", "session_id": "s1", "model": "custom:fake-0"})
    stream.read(r, {"type": "completion", "usage": usage, "durationMs": 5})
    [call] = r.calls
    assert (call[1], call[4], call[7]) == (2333, 107, "gpt-4.1")  # fresh input, output, the model
    # Resumed (-s, its joined -sID too): the usage is the session's running total.
    for given in (["-s", "s1"], ["-ss1"], ["--session-id=s1"]):
        again = _Report()
        again.argv = ["droid", "exec", *given, "go on"]
        stream.read(again, {"type": "completion", "usage": usage})
        assert again.calls == [] and "running total (2333 input and 107 output tokens)" in again.said[0][1]["message"]
    # --fork starts a session of its own: its usage is this run's.
    forked = _Report()
    forked.argv = ["droid", "exec", "--fork", "s1", "go on"]
    stream.read(forked, {"type": "completion", "usage": usage})
    assert len(forked.calls) == 1


def test_what_the_launcher_reads_of_its_command() -> None:
    from spanvisor.clis import registry

    droid = registry.need("droid")
    assert droid.output_plan(["droid", "exec", "-ojson", "hi"]) == (["droid", "exec", "-ojson", "hi"], "passthrough")
    assert droid.output_plan(["droid", "exec", "-ostream-json", "hi"])[1] == "droid-stream"
    assert droid.output_plan(["droid", "exec", "--list-tools"])[1] == "passthrough"
    assert droid.output_plan(["droid", "exec", "--input-format", "stream-json"])[1] == "passthrough"
    assert droid.output_plan(["droid", "exec", "hi"]) == (["droid", "exec", "-o", "stream-json", "hi"], "droid-text")
    assert stream.model_of(["droid", "exec", "-mgpt-5", "hi"], {}) == "gpt-5"
    assert stream.model_of(["droid", "exec", "--", "-make it pass"], {}) is None  # a prompt, after --


def test_the_transcript_names_the_session_and_says_how_its_last_turn_ended(tmp_path: Path) -> None:
    """The shapes of its 0.225.2 transcript: ``session_start`` (its title,
    the prompt's) first, an API error shown to its user only, and the turn's
    outcome written before ``SessionEnd``. A FIFO named as the transcript is
    not waited on."""
    from spanvisor.clis import droid

    path = tmp_path / "s.jsonl"
    lines = [
        {"type": "session_start", "id": "s1", "title": "fix the test"},
        {"type": "message", "message": {"role": "user", "content": [{"type": "text", "text": "fix the test"}]}},
        {
            "type": "message",
            "message": {
                "role": "user",
                "visibility": "user_only",
                "content": [{"type": "text", "text": 'BYOK Error: 401 "unauthorized"'}],
            },
        },
        {
            "type": "message",
            "message": {"role": "user", "visibility": "user_only", "hookEventName": "Stop", "content": []},
        },
        {"type": "agent_turn_outcome", "turnId": "t1", "reason": "model_authentication_failed", "resultKind": "text"},
    ]
    path.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    assert droid.title(str(path)) == "fix the test"
    assert droid.last_outcome(str(path)) == ("error", 'BYOK Error: 401 "unauthorized"')
    done = tmp_path / "done.jsonl"
    done.write_text(
        json.dumps(lines[0]) + "\n" + json.dumps({"type": "agent_turn_outcome", "reason": "completed"}) + "\n"
    )
    assert droid.last_outcome(str(done)) == ("complete", None)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert droid.title(str(fifo)) is None and droid.last_outcome(str(fifo)) is None
    read = droid.ADAPTER.read_session(
        {"hook_event_name": "SessionStart", "session_id": "s1", "transcript_path": str(path)}
    )
    assert read is not None and (read["hook_event_name"], read["prompt"]) == ("UserPromptSubmit", "fix the test")


def test_an_interactive_session_that_starts_untitled_opens_at_its_first_prompt(tmp_path: Path) -> None:
    from spanvisor.clis import droid

    tui = tmp_path / "tui.jsonl"
    tui.write_text(json.dumps({"type": "session_start", "id": "s2", "title": "New Session"}) + "\n")
    start = {"hook_event_name": "SessionStart", "session_id": "s2", "transcript_path": str(tui)}
    assert droid.ADAPTER.read_session(start) == start  # no turn opened: its UserPromptSubmit names it
