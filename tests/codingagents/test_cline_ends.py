"""Cline 3.0.65 without the launcher, with the end scripts spanvisor ships
copied to ``~/.cline/hooks`` (``TaskStart``, ``TaskComplete``,
``TaskError``, ``TaskCancel``) as docs/reference/coding-agents-hooks.md
says: each task is named by its prompt as it starts, and each end of a
task ends its spanvisor task as Cline reported it. Six sessions at once:

* success: ``complete``, named by its prompt;
* an API error (a 400): ``error`` with the API's message (``TaskError``
  carries it);
* a call the gate denied that is not a shell call (its ``PreToolUse``
  answers ``{"cancel": true}``, which stops the run): Cline runs
  ``SessionShutdown``, no task end: ``cancelled``;
* a shell call the gate denied (its commands replaced by one that fails
  saying why: nothing of them runs): the run goes on and ends
  ``complete``;
* SIGTERM mid-call: Cline does not stop there; it waits for its model's
  answer, runs ``TaskComplete`` and exits 0: the task ends as Cline
  reports it, ``complete``;
* SIGINT (Ctrl-C) mid-call: Cline stops its run, runs ``SessionShutdown``
  with no task end and exits 0: ``cancelled``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import cline_cli as cl
from tests.codingagents import endhooks as eh
from tests.codingagents.agents import start
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import ruling
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_READ = 'default = "allow"\n[[rule]]\nname = "no-reading"\ntool = ["read_files"]\ndecision = "deny"\n'
DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'
POLICIES = {"denied": DENY_READ, "shell": DENY_RM}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def test_each_end_of_a_task_alone_ends_its_task_as_cline_reported_it(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    scripts = {
        "ok": Script([tool(cl.SHELL, commands=["echo ends-ok"]), text("Done.")]),
        "fail": Script([error(400, "invalid_request_error", "scripted failure 7f")]),
        "denied": Script([tool("read_files", file_paths=["secret.txt"]), text("Read it.")]),
        "shell": Script([tool(cl.SHELL, commands=["rm build.txt"]), text("Left it.")]),
        "term": Script([held(text("Answered after the signal."), 4)]),
        "int": Script([held(text("Answered after the signal."), 4)]),
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], s) for row, s in scripts.items()}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            home = tmp_path / row / "home"
            env = cl.env(home, api, run_id)
            eh.add_cline_hooks(home)
            env.update(SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_BIN=cl.SPANVISOR_BIN)
            if row in POLICIES:
                cl.add_hook(home)
                (home / "policy.toml").write_text(POLICIES[row])
                (tmp_path / row / "build.txt").write_text("keep")
                env["SPANVISOR_HOOK_POLICY"] = str(home / "policy.toml")
            running[row] = start(cl.argv(cli_bin, f"end {row} ({run_id})"), env, tmp_path / row)
        eh.signal_cli(running["term"], api, ids["term"], signal.SIGTERM)
        eh.signal_cli(running["int"], api, ids["int"], signal.SIGINT)
        ran = {row: r.wait() for row, r in running.items()}
    finally:
        for r in running.values():
            r.stop()
    assert (ran["ok"].code, ran["fail"].code) == (0, 1), [r.said() for r in ran.values()]
    assert not (tmp_path / "denied" / "secret.txt").exists()
    ok = eh.ended(matrix, cl.task_of(ran["ok"]))
    assert (ok["status"], ok["message"], ok["error_message"]) == ("complete", "Finished", None), ok
    # Named by its prompt at its TaskStart (Cline tells its hooks none: read from its manifest).
    assert ok["task_name"] == f"end ok ({ids['ok']})", ok
    failed = eh.ended(matrix, cl.task_of(ran["fail"]))
    assert (failed["status"], failed["error_message"]) == ("error", "scripted failure 7f"), failed
    denied = eh.ended(matrix, cl.task_of(ran["denied"]))
    assert (denied["status"], denied["error_message"]) == ("cancelled", None), denied
    assert denied["message"].startswith("Cline stopped its run before its task finished"), denied
    shell = cl.task_of(ran["shell"])
    assert "rm build.txt: denied by policy:no-deleting" in ruling(matrix, shell)
    assert (tmp_path / "shell" / "build.txt").exists()
    left = eh.ended(matrix, shell)
    assert (left["status"], left["message"], left["error_message"]) == ("complete", "Finished", None), left
    assert (ran["term"].code, ran["int"].code) == (0, 0), [ran["term"].said(), ran["int"].said()]
    term = eh.ended(matrix, cl.task_of(ran["term"]))
    assert (term["status"], term["message"]) == ("complete", "Finished"), term
    stopped = eh.ended(matrix, cl.task_of(ran["int"]))
    assert (stopped["status"], stopped["error_message"]) == ("cancelled", None), stopped
    assert stopped["message"].startswith("Cline stopped its run before its task finished"), stopped
