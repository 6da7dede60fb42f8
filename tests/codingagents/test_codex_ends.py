"""Codex CLI 0.169.0 without the launcher, its turn and session-end hooks
set as docs/reference/coding-agents.md shows them (``UserPromptSubmit``, ``Stop``,
``Interrupt``, ``SessionEnd`` running ``spanvisor hook codex``; the hooks
run with ``--dangerously-bypass-hook-trust``): each end of the session
ends its task as the CLI reported it.

* success: ``complete``;
* an API error (``SessionEnd`` with its turn open): ``error``;
* SIGINT (``Interrupt``, then ``SessionEnd``): ``cancelled``;
* SIGTERM kills Codex before any hook: the session ends by liveness, ``lost``;
* a call the gate denied: the session goes on and ends ``complete``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import codex_cli as cx
from tests.codingagents import endhooks as eh
from tests.codingagents.agents import Ran, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import fake_openai, function_outputs
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm -r *"]\ndecision = "deny"\n'


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_openai()
    try:
        yield fake
    finally:
        fake.close()


def _env(tmp: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, gate: bool = False, **extra: str) -> dict[str, str]:
    # Codex passes its environment to its hooks: SPANVISOR_OTLP_ENDPOINT says where serve is.
    env = cx.env(tmp / "home", api, run_id, matrix, hook=gate, SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, **extra)
    eh.add_codex_hooks(tmp / "home")
    return env


def _argv(cli_bin: Path, prompt: str) -> list[str]:
    return cx.argv(cli_bin, prompt, hook=True)  # hooks run only trusted, or with the flag


def test_a_session_alone_ends_complete_by_its_session_end_hook(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("exec_command", cmd="echo ends-ok"), text("Done.")]))
    ran = run(_argv(cli_bin, f"end well ({run_id})"), _env(tmp_path, matrix, api, run_id), tmp_path / "w")
    assert ran.code == 0 and cx.said(ran) == ["Done."], ran.said()
    row = eh.ended(matrix, cx.task_of(ran))
    assert (row["status"], row["message"], row["error_message"]) == ("complete", "Finished", None), row
    assert row["task_name"] == f"end well ({run_id})"


def test_an_api_error_alone_ends_error(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path) -> None:
    script = Script([error(400, "invalid_request_error", "scripted: refused without the launcher")])
    run_id = api.script(uuid.uuid4().hex[:12], script)
    ran = run(_argv(cli_bin, f"fail ({run_id})"), _env(tmp_path, matrix, api, run_id), tmp_path / "w")
    assert ran.code == 1, ran.said()
    row = eh.ended(matrix, cx.task_of(ran))
    assert row["status"] == "error" and "before its turn finished" in row["error_message"], row


def test_sigint_alone_ends_cancelled(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)]))
    running = start(
        _argv(cli_bin, f"stopped by SIGINT ({run_id})"), _env(tmp_path, matrix, api, run_id), tmp_path / "w"
    )
    try:
        eh.signal_cli(running, api, run_id, signal.SIGINT)
        ran = running.wait()
    finally:
        running.stop()
    row = eh.ended(matrix, cx.task_of(ran))
    assert (row["status"], row["message"]) == ("cancelled", "Codex was interrupted (SIGINT)"), (row, ran.said())


@dataclass
class Killed:
    """The session alone SIGTERM killed, run once for the file."""

    opened: dict[str, Any]
    ran: Ran


# Autouse: the session runs before the file's first test, so its liveness
# window runs through all of them and the last test waits only for the rest.
@pytest.fixture(scope="module", autouse=True)
def sigterm(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Killed:
    """The session alone killed by SIGTERM, shared by the test that reads its
    exit and the file's last test, which sees liveness end it: its window runs
    during the tests between."""
    tmp = tmp_path_factory.mktemp("sigterm")
    run_id = api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)]))
    running = start(_argv(cli_bin, f"stopped by SIGTERM ({run_id})"), _env(tmp, matrix, api, run_id), tmp / "w")
    try:
        # Its records leave every second: once serve has its task, the signal.
        opened = eh.task_named(matrix, "codex_exec", run_id)
        eh.signal_cli(running, api, run_id, signal.SIGTERM)
        ran = running.wait()
    finally:
        running.stop()
    return Killed(opened, ran)


def test_sigterm_alone_kills_codex_after_serve_opened_its_task(sigterm: Killed) -> None:
    assert sigterm.ran.code == -signal.SIGTERM, sigterm.ran.said()
    assert sigterm.opened["task_id"] == cx.task_of(sigterm.ran)


def test_a_call_the_gate_denied_leaves_the_session_to_end_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("exec_command", cmd="rm -r build"), text("Left it.")]))
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_RM)
    env = _env(tmp_path, matrix, api, run_id, gate=True, SPANVISOR_HOOK_POLICY=str(policy))
    ran = run(_argv(cli_bin, f"delete build ({run_id})"), env, tmp_path / "w")
    assert ran.code == 0 and cx.said(ran) == ["Left it."], ran.said()
    asked = [s.body for s in api.requests(run_id) if s.path == "/v1/responses"]
    [denied] = function_outputs(asked[-1])
    assert "no-deleting" in denied, denied
    row = eh.ended(matrix, cx.task_of(ran))
    assert (row["status"], row["message"]) == ("complete", "Finished"), row


# Last in the file: the killed session died during the tests above.
def test_codex_killed_before_any_hook_is_left_to_liveness(matrix: Matrix, sigterm: Killed) -> None:
    # No hook ran, so no end: liveness ends it (lost), as test_claude_code.py waits for.
    eh.left_to_liveness(matrix, sigterm.opened["task_id"], sigterm.ran)
