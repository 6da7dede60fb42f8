"""Gemini CLI 0.61.0 without the launcher, its turn and session-end hooks
set as docs/reference/coding-agents.md shows them (``BeforeAgent``, ``AfterAgent``,
``SessionEnd`` running ``spanvisor hook gemini``): each end of the session
ends its task as the CLI reported it.

* success: ``complete``;
* SIGTERM and SIGINT mid-turn (``SessionEnd`` with its turn open): ``cancelled``;
* an API error: Gemini CLI exits without any hook (and without its last
  records): the session ends by liveness, ``lost``;
* a call the gate denied: the session goes on and ends ``complete``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import gemini_cli as gc
from tests.codingagents.agents import Ran, run, start
from tests.codingagents.fake_gemini import fake_gemini, function_responses
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


def _env(tmp: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, gate: bool = False, **extra: str) -> dict[str, str]:
    home = tmp / "home"
    env = gc.env(home, matrix, api, run_id)
    if gate:
        gc.add_hook(home)
    eh.add_gemini_hooks(home)
    # Gemini CLI passes its environment to its hooks: SPANVISOR_OTLP_ENDPOINT says where serve is.
    return {**env, "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint, **extra}


def test_a_session_alone_ends_complete_by_its_session_end_hook(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script([tool("run_shell_command", command="echo ends-ok"), text("Done.")])
    run_id = api.script(uuid.uuid4().hex[:12], script)
    ran = run(gc.argv(cli_bin, f"end well ({run_id})"), _env(tmp_path, matrix, api, run_id), tmp_path / "w")
    assert ran.code == 0, ran.said()
    row = eh.ended(matrix, gc.task_of(ran))
    assert (row["status"], row["message"], row["error_message"]) == ("complete", "Finished", None), row
    assert row["task_name"] == f"end well ({run_id})"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_mid_turn_alone_ends_cancelled(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path, signame: str
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)]))
    env = _env(tmp_path, matrix, api, run_id)
    running = start(gc.argv(cli_bin, f"stopped by {signame} ({run_id})"), env, tmp_path / "w")
    try:
        eh.signal_cli(running, api, run_id, eh.SIGNALS[signame])
        running.wait()
    finally:
        running.stop()
    row = eh.ended(matrix, eh.task_named(matrix, "gemini-cli", run_id)["task_id"])
    assert (row["status"], row["error_message"]) == ("cancelled", None), row
    assert "ended before its turn finished" in row["message"], row


@dataclass
class Failed:
    """The session alone an API error ended, run once for the file."""

    opened: dict[str, Any]
    ran: Ran


# Autouse: the session runs before the file's first test, so its liveness
# window runs through all of them and the last test waits only for the rest.
@pytest.fixture(scope="module", autouse=True)
def api_error(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Failed:
    """The session alone whose call fails, shared by the test that reads its
    exit and the file's last test, which sees liveness end it: its window runs
    during the tests between."""
    tmp = tmp_path_factory.mktemp("api-error")
    # The failing call waits until serve has heard of the session (its
    # records leave every 5 s; failing sooner, it would leave none at all).
    script = eh.Gated([tool("run_shell_command", command="echo first"), error(400, "INVALID_ARGUMENT", "scripted")], 1)
    run_id = api.script(uuid.uuid4().hex[:12], script)
    running = start(gc.argv(cli_bin, f"fail ({run_id})"), _env(tmp, matrix, api, run_id), tmp / "w")
    try:
        opened = eh.task_named(matrix, "gemini-cli", run_id)
        script.go()
        ran = running.wait()
    finally:
        script.go()
        running.stop()
    return Failed(opened, ran)


def test_an_api_error_alone_makes_gemini_cli_exit_non_zero(api_error: Failed) -> None:
    assert api_error.ran.code != 0, api_error.ran.said()


def test_a_call_the_gate_denied_leaves_the_session_to_end_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script([tool("run_shell_command", command="rm build.txt"), text("Left it.")])
    run_id = api.script(uuid.uuid4().hex[:12], script)
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_RM)
    env = _env(tmp_path, matrix, api, run_id, gate=True, SPANVISOR_HOOK_POLICY=str(policy))
    ran = run(gc.argv(cli_bin, f"delete build ({run_id})"), env, tmp_path / "w")
    assert ran.code == 0, ran.said()
    asked = [s.body for s in api.requests(run_id) if s.method == "POST"]
    assert any("no-deleting" in str(r) for r in function_responses(asked[-1])), asked[-1]
    row = eh.ended(matrix, gc.task_of(ran))
    assert (row["status"], row["message"]) == ("complete", "Finished"), row


# Last in the file: the API error's session exited during the tests above.
def test_the_api_error_ran_no_hook_so_the_session_is_left_to_liveness(matrix: Matrix, api_error: Failed) -> None:
    # No end: liveness ends it (lost), as test_claude_code.py waits for.
    eh.left_to_liveness(matrix, api_error.opened["task_id"], api_error.ran)
