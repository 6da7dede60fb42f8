"""pi 0.73.1 without the launcher, with spanvisor's extension (as
docs/reference/coding-agents-hooks.md sets it up): at pi's
``session_shutdown`` the extension sends the session's end to ``spanvisor
hook pi``, and the task ends as pi reported its last run. Three sessions
at once:

* success (its last answer's ``stopReason`` is ``stop``): ``complete``,
  named by its first prompt, which the extension sent as the person asked
  it;
* an API error (``stopReason`` ``error``): ``error`` with the API's
  message;
* a call the gate denied by policy (the extension is the gate too): the
  model is told, the session goes on and ends ``complete``.

SIGTERM and SIGINT end pi without its ``session_shutdown`` (checked with a
probe extension): such a session ends by liveness, as OpenCode's does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import pi_cli as pc
from tests.codingagents.agents import start
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import ruling
from tests.codingagents.script import Script, error, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

ALLOW = 'default = "allow"\n'
DENY_RM = ALLOW + '[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, rules: str = ALLOW) -> dict[str, str]:
    env = pc.with_extension(pc.env(home, api, run_id))
    # The extension is the gate too: a policy that allows (without one, every call asks a person).
    policy = home / "policy.toml"
    policy.write_text(rules)
    return {**env, "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint, "SPANVISOR_HOOK_POLICY": str(policy)}


# Slow by design: a real pi session per end, started together.
def test_each_end_of_a_session_alone_ends_its_task_as_pi_reported_it(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    scripts = {
        "ok": Script([tool(pc.SHELL, command="echo ends-ok"), text("Done.")]),
        "fail": Script([tool(pc.SHELL, command="echo first"), error(400, "x", "scripted 7f")]),
        "denied": Script([tool(pc.SHELL, command="rm build.txt"), text("Left it.")]),
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], s) for row, s in scripts.items()}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            (tmp_path / row / "build.txt").write_text("keep")
            env = _env(tmp_path / row / "home", matrix, api, run_id, DENY_RM if row == "denied" else ALLOW)
            running[row] = start(pc.argv(cli_bin, f"end {row} ({run_id})"), env, tmp_path / row)
        ran = {row: r.wait() for row, r in running.items()}
    finally:
        for r in running.values():
            r.stop()
    assert (ran["ok"].code, ran["fail"].code, ran["denied"].code) == (0, 0, 0), [r.said() for r in ran.values()]
    ok = eh.ended(matrix, pc.task_of(ran["ok"]))
    assert (ok["status"], ok["message"], ok["error_message"]) == ("complete", "Finished", None), ok
    # Named by its first prompt (the extension's before_agent_start), not "pi session <id>".
    assert ok["task_name"] == f"end ok ({ids['ok']})", ok
    failed = eh.ended(matrix, pc.task_of(ran["fail"]))
    assert failed["status"] == "error" and "scripted 7f" in (failed["error_message"] or ""), failed
    denied = pc.task_of(ran["denied"])
    assert ruling(matrix, denied) == "bash: rm build.txt: denied by policy:no-deleting"
    assert (tmp_path / "denied" / "build.txt").exists()
    left = eh.ended(matrix, denied)
    assert (left["status"], left["message"], left["error_message"]) == ("complete", "Finished", None), left
