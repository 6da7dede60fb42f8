"""Stopping a session, with the real CLIs under ``spanvisor run``, each kept
busy by a fake model that holds its answer back.

* A Cancel clicked in Slack (signed, as Slack posts it) stops the CLI
  within 2 s of the decision: the launcher follows its task's decisions
  and stops the CLI as a terminal would (SIGINT to it and what runs under
  it, firmer after a grace). The task ends ``cancelled`` with who cancelled,
  and Slack says the launcher stopped it.
* A signal sent to the CLI itself (not to the launcher) ends the task
  ``cancelled`` for every CLI, SIGINT and SIGTERM alike (Claude Code exits
  0 on SIGINT and 143 on SIGTERM, Codex 1 and killed, Gemini CLI's worker 0
  with no result).
* Without the launcher, a Cancel clicked in Slack blocks the session's
  next tool call (``spanvisor hook`` sees the task's cancel), and Slack
  says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.launcher.stop import tree
from spanvisor_slack import actions as A
from tests.codingagents import claude_code as cc
from tests.codingagents import codex_cli as cx
from tests.codingagents import endhooks as eh
from tests.codingagents import gemini_cli as gc
from tests.codingagents.agents import Running, start
from tests.codingagents.fake_gemini import fake_gemini
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import fake_openai
from tests.codingagents.script import Script, held, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

CLIS = ("claude-code", "codex", "gemini")
WAIT_S = 120.0
# The model answers only after this long: the session is busy until stopped.
HOLD_S = 300.0
# A CLI that honours a signal is gone in a tenth of a second; one that did
# not within this long gets SIGTERM, as from a process manager (below).
SIGNAL_AGAIN_S = 10.0
# The launcher's escalation once it has the decision (SIGINT, SIGTERM 0.8 s
# later, SIGKILL 0.6 s after that) stops a CLI in about 2 s; measured
# 0.06-0.25 s on an idle machine, printed by each run. The verdict asks only
# that the CLI is gone well before its held answer would have let it finish:
# how soon depends on the machine's load, which a test must not race.
STOP_S = 20.0


@pytest.fixture(scope="module")
def openai_api() -> Iterator[FakeModelAPI]:
    fake = fake_openai()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def gemini_api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


class Busy:
    """One CLI under the launcher, waiting on its model."""

    def __init__(self, cli: str, running: Running, api: FakeModelAPI, run_id: str, task_id: str) -> None:
        self.cli, self.running, self.api, self.run_id, self.task_id = cli, running, api, run_id, task_id

    def asked(self) -> bool:
        return any(s.method == "POST" and "count" not in s.path for s in self.api.requests(self.run_id))

    def cli_pids(self) -> list[int]:
        """The CLI and what runs under it (the launcher left out)."""
        return tree(self.running.proc.pid)[1:]


def _busy(
    cli: str,
    tmp: Path,
    cli_bin: Path,
    matrix: Matrix,
    anthropic: FakeModelAPI,
    openai_api: FakeModelAPI,
    gemini_api: FakeModelAPI,
) -> Busy:
    api = {"claude-code": anthropic, "codex": openai_api, "gemini": gemini_api}[cli]
    run_id = api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), HOLD_S)]))
    task_id = f"stop:{cli}/{run_id}"  # ':' and '/' as well: one task under every CLI
    prompt = f"work until stopped ({run_id})"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    if cli == "claude-code":
        env = cc.env(tmp / "home", matrix, api, run_id)
        argv = cc.argv(cli_bin, prompt, launcher=True)
    elif cli == "codex":
        env = cx.env(tmp / "home", api, run_id)
        argv = cx.argv(cli_bin, prompt)
    else:
        env = gc.env(tmp / "home", matrix, api, run_id, telemetry=False)
        argv = gc.argv(cli_bin, prompt)
    # The launcher keeps its task live (the matrix loses a silent task in
    # seconds): a CLI slow to obey a signal is not ended by liveness first.
    env["SPANVISOR_HEARTBEAT"] = "1s"
    busy = Busy(cli, start(argv, env, tmp / "work", launcher), api, run_id, task_id)
    wait_until(busy.asked, WAIT_S, f"{cli} to ask its model")
    wait_until(lambda: matrix.task(task_id) is not None, WAIT_S, f"task {task_id} to open")
    return busy


def _ended(matrix: Matrix, task_id: str) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None else None

    return dict(wait_until(row, WAIT_S, f"task {task_id} to end"))


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("cli", CLIS)
def test_a_cancel_clicked_in_slack_stops_the_cli_under_the_launcher(
    cli: str,
    cli_bin: Path,
    matrix: Matrix,
    anthropic: FakeModelAPI,
    openai_api: FakeModelAPI,
    gemini_api: FakeModelAPI,
    tmp_path: Path,
) -> None:
    busy = _busy(cli, tmp_path, cli_bin, matrix, anthropic, openai_api, gemini_api)
    try:
        found = matrix.shown_button(busy.task_id, A.CANCEL, WAIT_S, cli)
        pids = busy.cli_pids()
        assert pids, "the CLI runs under the launcher"
        assert matrix.click(*found) == 200
        decided = time.monotonic()
        wait_until(lambda: not any(_alive(p) for p in pids), WAIT_S, f"{cli} to stop")
        took = time.monotonic() - decided
        print(f"{cli} stopped {took:.2f} s after the decision")
        ran = busy.running.wait()
    finally:
        busy.running.stop()
    assert took <= STOP_S, f"{cli} stopped {took:.2f} s after the decision"
    assert "Cancelled by" in ran.stderr and "stopping" in ran.stderr, ran.said()
    row = _ended(matrix, busy.task_id)
    assert row["status"] == "cancelled", row
    assert row["message"].startswith("Cancelled by") and "stopped by spanvisor run" in row["message"], row
    # Slack says so: the task's one parent shows who cancelled and that the launcher stopped it.
    [parent] = matrix.parents_of(busy.task_id)

    def said() -> str | None:
        [p] = matrix.parents_of(busy.task_id)
        shown = json.dumps([p.blocks, p.attachments])
        return shown if "stopped by spanvisor run" in shown else None

    wait_until(said, WAIT_S, "the Slack parent to say the launcher stopped the session")
    del parent


def test_slacks_stop_button_on_the_session_stops_claude_code_under_the_launcher(
    cli_bin: Path,
    matrix: Matrix,
    anthropic: FakeModelAPI,
    openai_api: FakeModelAPI,
    gemini_api: FakeModelAPI,
    tmp_path: Path,
) -> None:
    """The thread is a Slack agent session showing ``processing``; Slack's own
    stop button is the cancel the launcher follows, by the person who pressed
    it, and the session closes with the task."""
    busy = _busy("claude-code", tmp_path, cli_bin, matrix, anthropic, openai_api, gemini_api)
    try:
        [parent] = wait_until(lambda: matrix.parents_of(busy.task_id), WAIT_S, "the Slack parent")
        wait_until(lambda: matrix.session(parent)[-1:] == ["processing"], WAIT_S, "the session to show processing")
        pids = busy.cli_pids()
        assert pids, "the CLI runs under the launcher"
        assert matrix.press_stop(parent) == 200
        wait_until(lambda: not any(_alive(p) for p in pids), WAIT_S, "Claude Code to stop")
        ran = busy.running.wait()
    finally:
        busy.running.stop()
    assert "Cancelled by" in ran.stderr and "stopping" in ran.stderr, ran.said()
    row = _ended(matrix, busy.task_id)
    assert row["status"] == "cancelled" and "stopped by spanvisor run" in row["message"], row
    [cancel] = [r for r in matrix.interventions(busy.task_id) if r["action"] == "cancel"]
    assert cancel["source"] == "slack" and cancel["outcome"] == "applied", cancel
    wait_until(lambda: matrix.session(parent)[-1:] == ["closed"], WAIT_S, "the session to close")
    assert matrix.session(parent)[0] == "processing", matrix.session(parent)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("cli", CLIS)
def test_a_signal_to_the_cli_itself_ends_the_task_cancelled(
    cli: str,
    signum: int,
    cli_bin: Path,
    matrix: Matrix,
    anthropic: FakeModelAPI,
    openai_api: FakeModelAPI,
    gemini_api: FakeModelAPI,
    tmp_path: Path,
) -> None:
    busy = _busy(cli, tmp_path, cli_bin, matrix, anthropic, openai_api, gemini_api)
    try:
        # As `kill` or a process manager would: the CLI and what runs under
        # it (Gemini CLI's parent ignores both signals; its worker does not).
        _signal_all(busy.cli_pids(), signum)
        try:
            busy.running.proc.wait(timeout=SIGNAL_AGAIN_S)
        except subprocess.TimeoutExpired:
            # Seen twice on a loaded machine (never alone): Codex ran on for
            # minutes after a SIGINT, and after a second one. As a process
            # manager does, the test follows with SIGTERM; the end must still
            # be a signal's (cancelled), never an error or success.
            _signal_all(busy.cli_pids(), signal.SIGTERM)
        ran = busy.running.wait()
    finally:
        busy.running.stop()
    row = _ended(matrix, busy.task_id)
    assert (row["status"], row["error_message"]) == ("cancelled", None), (
        row["status"],
        row["error_message"],
        ran.said(),
    )
    assert [r["task_id"] for r in matrix.tasks_of(row["agent_id"]) if busy.run_id in (r["task_name"] or "")] == [
        busy.task_id
    ], "one task, its id with ':' and '/' as the launcher named it"


@pytest.mark.parametrize("cli", CLIS)
def test_without_the_launcher_a_cancel_clicked_in_slack_blocks_the_sessions_next_tool_call(
    cli: str,
    cli_bin: Path,
    matrix: Matrix,
    anthropic: FakeModelAPI,
    openai_api: FakeModelAPI,
    gemini_api: FakeModelAPI,
    tmp_path: Path,
) -> None:
    """The session runs with the gate's hook and the end hooks, no launcher:
    its first call runs; the model's next answer waits until alice clicked
    Cancel; that next call (``touch two.txt``) is denied, ``cancelled by
    alice``, and never runs; the session's end is ``cancelled``. Slack says
    what the cancel does to a session without the launcher."""
    api = {"claude-code": anthropic, "codex": openai_api, "gemini": gemini_api}[cli]
    tool_name, key = {"claude-code": ("Bash", "command"), "codex": ("exec_command", "cmd")}.get(
        cli, ("run_shell_command", "command")
    )
    script = eh.Gated([tool(tool_name, **{key: "echo one"}), tool(tool_name, **{key: "touch two.txt"}), text("ok")], 1)
    run_id = api.script(uuid.uuid4().hex[:12], script)
    prompt = f"work until cancelled ({run_id})"
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir(parents=True)
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n')
    extra = {
        "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint,
        "SPANVISOR_HOOK_POLICY": str(policy),
        # The look at its longest (5 s): at load 10 and more a serve busy
        # with four CLIs answered after 2 s, and a look that comes late lets
        # the call run (the default's 100 ms is issue 63's open "a cancel is
        # a suggestion"; this proves what a look that completes does).
        "SPANVISOR_HOOK_CANCEL_WAIT": "5s",
    }
    if cli == "claude-code":
        env = cc.env(home, matrix, api, run_id, **extra)
        argv = cc.argv(cli_bin, prompt, eh.claude_settings(tmp_path / "settings.json", gate=True))
    elif cli == "codex":
        env = cx.env(home, api, run_id, matrix, hook=True, **extra)
        eh.add_codex_hooks(home)
        argv = cx.argv(cli_bin, prompt, hook=True)
    else:
        env = {**gc.env(home, matrix, api, run_id), **extra}
        gc.add_hook(home)
        eh.add_gemini_hooks(home)
        argv = gc.argv(cli_bin, prompt)
    agent = {"claude-code": "claude-code", "codex": "codex_exec", "gemini": "gemini-cli"}[cli]
    running = start(argv, env, work)
    try:
        wait_until(script.reached.is_set, WAIT_S, f"{cli} to ask for its second turn (its first call ran)")
        task_id = eh.task_named(matrix, agent, run_id)["task_id"]
        found = matrix.shown_button(task_id, A.CANCEL, WAIT_S, cli)
        assert matrix.click(*found) == 200
        wait_until(lambda: (matrix.control(task_id) or {}).get("cancel"), WAIT_S, "the cancel recorded")

        # The model answers as soon as Slack said what the cancel does (the
        # session is silent while it waits, and the matrix loses a silent task
        # after served.LOST_AFTER_S). Said before: once the gate blocked the
        # call the task ends, and its end replaces the card's "cancel
        # requested" (an edit not yet sent is never sent).
        def says() -> bool:
            return "next tool call will be blocked by spanvisor hook" in matrix.ever_shown(task_id)

        wait_until(says, WAIT_S, "Slack to say the session's next tool call will be blocked")
        script.go()
        ran = running.wait()
    finally:
        script.go()
        running.stop()
    assert not (work / "two.txt").exists(), f"the call after the cancel did not run\n{ran.said()}"
    told = json.dumps([s.body for s in api.requests(run_id) if s.method == "POST"])
    assert "cancelled by " in told, f"the model was told the session was cancelled\n{ran.said()}"
    row = _ended(matrix, task_id)
    assert row["status"] == "cancelled" and row["message"].startswith("Cancelled by"), row
    assert "spanvisor hook" in row["message"], row
