"""GitHub Copilot CLI 1.0.102 without the launcher, its turn and session-end
hooks set as docs/reference/coding-agents-hooks.md shows them
(``userPromptSubmitted``, ``agentStop``, ``errorOccurred``, ``sessionEnd``
running ``spanvisor hook copilot``): each end of a session ends its task as
the CLI reported it. Five sessions at once (one CLI start's time):

* success: ``complete``;
* an API error (a 400): ``error`` with the API's message, which its
  ``errorOccurred`` hook carries (``sessionEnd`` says ``error``);
* SIGTERM and SIGINT (Ctrl-C) mid-turn: Copilot CLI runs ``sessionEnd``
  saying ``complete`` and exits 0, its turn never finished: ``cancelled``;
* a call the gate denied by policy (its ``preToolUse`` hook too): the
  model is told, the session goes on and ends ``complete``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import copilot_cli as cp
from tests.codingagents import endhooks as eh
from tests.codingagents.agents import start
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import ruling
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'
SIGNALLED = {"term": signal.SIGTERM, "int": signal.SIGINT}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    env = cp.env(home, api, run_id, matrix)
    eh.add_copilot_hooks(home)
    return {**env, "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint}


def test_each_end_of_a_session_alone_ends_its_task_as_copilot_reported_it(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    scripts = {
        "ok": Script([tool(cp.SHELL, command="echo ends-ok", description="say"), text("Done.")]),
        "fail": Script([error(400, "invalid_request_error", "scripted failure 7f")]),
        "term": Script([held(text("too late"), 300)]),
        "int": Script([held(text("too late"), 300)]),
        "denied": Script([tool(cp.SHELL, command="rm build.txt", description="tidy"), text("Left it.")]),
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], s) for row, s in scripts.items()}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            env = _env(tmp_path / row / "home", matrix, api, run_id)
            if row == "denied":
                cp.add_hook(tmp_path / row / "home")
                (tmp_path / row / "policy.toml").write_text(DENY_RM)
                (tmp_path / row / "build.txt").write_text("keep")
                env["SPANVISOR_HOOK_POLICY"] = str(tmp_path / row / "policy.toml")
            running[row] = start(cp.argv(f"end {row} ({run_id})"), env, tmp_path / row)
        for row, signum in SIGNALLED.items():
            eh.signal_cli(running[row], api, ids[row], signum)
        ran = {row: r.wait() for row, r in running.items()}
    finally:
        for r in running.values():
            r.stop()
    codes = {row: r.code for row, r in ran.items()}
    assert codes == {"ok": 0, "fail": 1, "term": 0, "int": 0, "denied": 0}, [r.said() for r in ran.values()]
    ok = eh.ended(matrix, cp.task_of(ran["ok"]))
    assert (ok["status"], ok["message"], ok["error_message"]) == ("complete", "Finished", None), ok
    assert ok["task_name"] == f"end ok ({ids['ok']})"
    failed = eh.ended(matrix, cp.task_of(ran["fail"]))
    assert (failed["status"], failed["error_message"]) == ("error", "scripted failure 7f"), failed
    # Signalled, it prints no result line naming its session: its task is found by name.
    for row in SIGNALLED:
        term = eh.ended(matrix, eh.task_named(matrix, "github-copilot", ids[row])["task_id"])
        assert (term["status"], term["error_message"]) == ("cancelled", None), (row, term)
        assert "ended before its turn finished" in term["message"], (row, term)
    denied = cp.task_of(ran["denied"])
    assert ruling(matrix, denied) == "bash: rm build.txt: denied by policy:no-deleting"
    assert (tmp_path / "denied" / "build.txt").exists()
    left = eh.ended(matrix, denied)
    assert (left["status"], left["message"], left["error_message"]) == ("complete", "Finished", None), left
