"""Claude Code 2.1.330 without the launcher, its turn and session-end hooks
set as docs/reference/coding-agents.md shows them (``Stop``, ``StopFailure``,
``SessionEnd`` running ``spanvisor hook claude-code``): each end of the
session ends its task as the CLI reported it, never ``lost``.

* success: ``complete``, the tokens counted once;
* an API error: ``error``, with the API's message from ``StopFailure``;
* SIGTERM and SIGINT mid-turn (``SessionEnd`` with its prompt unanswered):
  ``cancelled``;
* a call the gate denied: the session goes on and ends ``complete``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents import endhooks as eh
from tests.codingagents.agents import run, start
from tests.codingagents.fake_anthropic import result_text, tool_results
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'


def _env(tmp: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, **extra: str) -> dict[str, str]:
    # Claude Code gives its hooks no OTEL_* variable: the hook is told where serve is.
    return cc.env(tmp / "home", matrix, api, run_id, SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, **extra)


def _argv(cli_bin: Path, prompt: str, settings: Path) -> list[str]:
    return cc.argv(cli_bin, prompt, settings)


def test_a_session_alone_ends_complete_by_its_session_end_hook(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(uuid.uuid4().hex[:12], Script([tool("Bash", command="echo ends-ok"), text("Done.")]))
    settings = eh.claude_settings(tmp_path / "settings.json")
    ran = run(
        _argv(cli_bin, f"end well ({run_id})", settings), _env(tmp_path, matrix, anthropic, run_id), tmp_path / "w"
    )
    assert ran.code == 0, ran.said()
    row = eh.ended(matrix, cc.task_of(ran))
    assert (row["status"], row["message"], row["error_message"]) == ("complete", "Finished", None), row
    assert row["task_name"] == f"end well ({run_id})", "the name the CLI's records gave"
    assert (row["input_tokens"], row["output_tokens"]) == (2_000, 100), "counted once"


def test_an_api_error_alone_ends_error_with_the_apis_message(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script([error(400, "invalid_request_error", "scripted: refused without the launcher")])
    run_id = anthropic.script(uuid.uuid4().hex[:12], script)
    settings = eh.claude_settings(tmp_path / "settings.json")
    ran = run(_argv(cli_bin, f"fail ({run_id})", settings), _env(tmp_path, matrix, anthropic, run_id), tmp_path / "w")
    assert ran.code == 1, ran.said()
    row = eh.ended(matrix, cc.task_of(ran))
    assert row["status"] == "error", row
    assert "API Error: 400 scripted: refused without the launcher" in row["error_message"], row


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_mid_turn_alone_ends_cancelled(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path, signame: str
) -> None:
    run_id = anthropic.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)]))
    settings = eh.claude_settings(tmp_path / "settings.json")
    env = _env(tmp_path, matrix, anthropic, run_id)
    running = start(_argv(cli_bin, f"stopped by {signame} ({run_id})", settings), env, tmp_path / "w")
    try:
        eh.signal_cli(running, anthropic, run_id, eh.SIGNALS[signame])
        ran = running.wait()
    finally:
        running.stop()
    row = eh.ended(matrix, cc.task_of(ran))
    assert (row["status"], row["error_message"]) == ("cancelled", None), (row, ran.said())
    said = {"SIGTERM": "ended before its turn finished", "SIGINT": "was interrupted (SIGINT)"}[signame]
    assert said in row["message"], row


def test_a_call_the_gate_denied_leaves_the_session_to_end_complete(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script([tool("Bash", command="rm -rf build"), text("I was not allowed to delete it.")])
    run_id = anthropic.script(uuid.uuid4().hex[:12], script)
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_RM)
    settings = eh.claude_settings(tmp_path / "settings.json", gate=True)
    env = _env(tmp_path, matrix, anthropic, run_id, SPANVISOR_HOOK_POLICY=str(policy))
    ran = run(_argv(cli_bin, f"delete build ({run_id})", settings), env, tmp_path / "w")
    assert ran.code == 0, ran.said()
    asked = [s for s in anthropic.requests(run_id) if s.path.startswith("/v1/messages")]
    [denied] = [result_text(r) for r in tool_results(asked[-1].body)]
    assert "denied by policy:no-deleting" in denied or "no-deleting" in denied, denied
    row = eh.ended(matrix, cc.task_of(ran))
    assert (row["status"], row["message"]) == ("complete", "Finished"), row
