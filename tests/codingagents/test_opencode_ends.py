"""OpenCode 1.18.33 without the launcher, with spanvisor's plugin (as
docs/reference/coding-agents-hooks.md sets it up): as OpenCode shuts down,
the plugin sends each session's end to ``spanvisor hook opencode``, and the
task ends as OpenCode reported its last turn. Three sessions at once:

* success (``session.idle`` after its turn): ``complete``, named by its
  first prompt, which the plugin sent as the person asked it;
* an API error (``session.error``, then ``session.idle``): ``error`` with
  the API's message.

* a call the gate denied by policy (the plugin is the gate too): the
  model is told, the session goes on and ends ``complete``.

SIGTERM and SIGINT (Ctrl-C) kill ``opencode run`` without shutting its
plugins down (no ``dispose``, measured with a probe plugin; SIGINT's exit
is the signal's): such a session ends by liveness (strict xfail below).
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import opencode_cli as oc
from tests.codingagents.agents import start
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import ruling
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

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
    env = oc.with_plugin(oc.env(home, api, run_id))
    # The plugin is the gate too: a policy that allows (without one, every call asks a person).
    policy = home / "policy.toml"
    policy.write_text(rules)
    return {**env, "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint, "SPANVISOR_HOOK_POLICY": str(policy)}


# Slow by design: a real OpenCode session per end, started together.
def test_each_end_of_a_session_alone_ends_its_task_as_opencode_reported_it(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    scripts = {
        "ok": Script([tool(oc.SHELL, command="echo ends-ok", description="say"), text("Done.")]),
        "fail": Script([tool(oc.SHELL, command="echo first", description="say"), error(400, "x", "scripted 7f")]),
        "denied": Script([tool(oc.SHELL, command="rm build.txt", description="tidy"), text("Left it.")]),
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], s) for row, s in scripts.items()}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            (tmp_path / row / "build.txt").write_text("keep")
            env = _env(tmp_path / row / "home", matrix, api, run_id, DENY_RM if row == "denied" else ALLOW)
            running[row] = start(oc.argv(cli_bin, f"end {row} ({run_id})"), env, tmp_path / row)
        ran = {row: r.wait() for row, r in running.items()}
    finally:
        for r in running.values():
            r.stop()
    assert (ran["ok"].code, ran["fail"].code, ran["denied"].code) == (0, 1, 0), [r.said() for r in ran.values()]
    ok = eh.ended(matrix, oc.task_of(ran["ok"]))
    assert (ok["status"], ok["message"], ok["error_message"]) == ("complete", "Finished", None), ok
    # Named by its first prompt (the plugin's chat.message), not "OpenCode session <id>".
    assert ok["task_name"] == f"end ok ({ids['ok']})", ok
    failed = eh.ended(matrix, oc.task_of(ran["fail"]))
    assert (failed["status"], failed["error_message"]) == ("error", "scripted 7f"), failed
    denied = oc.task_of(ran["denied"])
    assert ruling(matrix, denied) == "bash: rm build.txt: denied by policy:no-deleting"
    assert (tmp_path / "denied" / "build.txt").exists()
    left = eh.ended(matrix, denied)
    assert (left["status"], left["message"], left["error_message"]) == ("complete", "Finished", None), left


def _asked_twice(api: FakeModelAPI, run_id: str) -> bool:
    return sum(s.method == "POST" for s in api.requests(run_id)) >= 2


def _opened_by_command(matrix: Matrix, before: set[str], rows: Iterable[str]) -> dict[str, str] | None:
    """Each new task keyed by the row whose ``echo <row>`` its gate's record names."""
    new = {r["task_id"] for r in matrix.tasks_of("opencode")} - before
    found = {row: t for t in new for row in rows if any(f"echo {row}" in str(c["message"]) for c in matrix.timeline(t))}
    return found if len(found) == len(list(rows)) else None


@pytest.mark.xfail(
    strict=True,
    reason="OpenCode 1.18.33 killed by SIGTERM or SIGINT (Ctrl-C) shuts no plugin down (no dispose, no session "
    "event): the session ends by liveness, lost",
)
# Slow by design: two real OpenCode sessions held until signalled, then their ends.
def test_sigterm_and_sigint_alone_end_cancelled(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    signals = {"term": signal.SIGTERM, "int": signal.SIGINT}
    scripts = {
        row: [tool(oc.SHELL, command=f"echo {row}", description="say"), held(text("too late"), 300)] for row in signals
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], Script(script)) for row, script in scripts.items()}
    before = {r["task_id"] for r in matrix.tasks_of("opencode")}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            env = _env(tmp_path / row / "home", matrix, api, run_id)
            running[row] = start(oc.argv(cli_bin, f"stopped ({run_id})"), env, tmp_path / row)
        # Signalled, it prints nothing naming its session: its task is the one its gate's record opened,
        # the record naming its first command.
        tasks = wait_until(lambda: _opened_by_command(matrix, before, signals), eh.WAIT_S, "their tasks")
        for row, signum in signals.items():
            # Its first call went through the gate, then it asked again: the signal.
            wait_until(partial(_asked_twice, api, ids[row]), eh.WAIT_S, "a second turn")
            eh.signal_cli(running[row], api, ids[row], signum)
        for r in running.values():
            r.wait()
    finally:
        for r in running.values():
            r.stop()
    ends = eh.ends_of(matrix, tasks, eh.HOOK_END_S)  # liveness would end them later, lost
    assert ends == {"term": "cancelled", "int": "cancelled"}, ends
