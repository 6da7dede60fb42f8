"""Stopping a session of Qwen Code 0.24.4, GitHub Copilot CLI 1.0.102,
OpenCode 1.18.33, Cline 3.0.65, pi 0.73.1, Kilo 7.7.7 and Factory Droid 0.225.2
(test_stop.py proves the same rows for Claude Code, Codex and Gemini CLI). Each
row starts the seven at once (one
fake Chat Completions API serves them all), then stops them, then each CLI's
test reads its outcome:

* A Cancel clicked in Slack stops each under ``spanvisor run`` within 2 s of
  the decision while its model holds its answer back: the launcher signals
  the CLI's process group (Copilot CLI's and Qwen Code's wrappers pass no
  signal on), SIGINT then SIGTERM after 0.8 s (``opencode run`` ignores
  SIGINT) then SIGKILL after 0.6 s more. The task, its id with ``:`` and
  ``/``, is one task, ends ``cancelled`` with who cancelled, and Slack says
  the launcher stopped it.
* A signal sent to the CLI itself (SIGINT, SIGTERM) under the launcher.
* Without the launcher, a Cancel clicked in Slack blocks the session's next
  tool call at its gate (Qwen Code's, Copilot CLI's and Factory Droid's command hook,
  OpenCode's and Kilo's plugin, Cline's hook file, pi's extension).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spanvisor_slack import actions as A
from tests.codingagents import endhooks as eh
from tests.codingagents import stopping as st
from tests.codingagents.agents import Ran
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, held, text
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

CLIS = st.CLIS
# Alone, each session is silent while its model waits, and the matrix loses
# a silent task after served.LOST_AFTER_S: every session alone in one channel
# slows Slack's word on the cancel for all (its real pace), and with seven a
# loaded machine lost one. Factory Droid's row alone is test_droid.py's.
ALONE = tuple(c for c in CLIS if c != "droid")
WAIT_S = st.WAIT_S
# The model answers only after this long: the session is busy until stopped
# (a stopped CLI closes its connection, which ends the hold at once). Longer
# than it takes, loaded, to see all seven busy with their Cancel button, one
# after the other: at 60 s the last one's answer came first once (v11: Factory
# Droid completed 78 s after its start, before its button was looked for).
HOLD_S = 300.0
# The launcher's escalation once it has the decision (SIGINT, SIGTERM 0.8 s
# later, SIGKILL 0.6 s after that) stops a CLI in about 2 s; measured
# 0.06-0.25 s on an idle machine, printed by each run. The verdict asks only
# that the CLI is gone well before its held answer would have let it finish:
# how soon depends on the machine's load, which a test must not race.
STOP_S = 20.0
# A CLI signalled exits within this long, or it ran on.
SIGNALLED_S = 15.0
# The model answers this long after the signal: on SIGTERM Cline exits only
# once the model call it is in has its answer (the others are gone long
# before; a model that never answers would keep Cline running).
ANSWER_AFTER_SIGNAL_S = 4.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


@dataclass
class Stopped:
    busy: st.Busy
    took: float | None  # seconds from the decision until the CLI was gone
    ran: Ran


# Slow by design: four real CLIs started at once and held busy by their model
# until cancelled; the first test's setup, shared by the four.
@pytest.fixture(scope="module")
def cancelled(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Stopped]:
    """The four under the launcher, each cancelled by alice's click in Slack."""
    tmp = tmp_path_factory.mktemp("cancel")
    started: dict[str, st.Busy] = {}
    out: dict[str, Stopped] = {}
    try:
        for cli in CLIS:
            started[cli] = st.launched(cli, tmp, cli_bin, matrix, api, Script([held(text("too late"), HOLD_S)]))
        found = {}
        for cli, b in started.items():
            st.busy(b, matrix)
            found[cli] = matrix.shown_button(b.task_id, A.CANCEL, WAIT_S, cli)
        with ThreadPoolExecutor(len(CLIS)) as pool:
            gone, decided = {}, {}
            for cli, b in started.items():
                pids = b.cli_pids()
                assert pids, f"{cli} runs under the launcher"
                gone[cli] = pool.submit(st.gone_at, pids, WAIT_S)
                assert matrix.click(*found[cli]) == 200
                decided[cli] = time.monotonic()
            for cli, b in started.items():
                at = gone[cli].result()
                took = None if at is None else at - decided[cli]
                print(f"{cli} stopped {took} s after the decision")
                out[cli] = Stopped(b, took, b.running.wait())
    finally:
        for b in started.values():
            b.running.stop()
    return out


def _one_task(matrix: Matrix, b: st.Busy) -> dict[str, Any]:
    row = eh.ended(matrix, b.task_id)
    mine = [r["task_id"] for r in matrix.tasks_of(row["agent_id"]) if b.run_id in (r["task_name"] or "")]
    assert mine == [b.task_id], "one task, its id with ':' and '/' as the launcher named it"
    return row


@pytest.mark.parametrize("cli", CLIS)
def test_a_cancel_clicked_in_slack_stops_the_cli_under_the_launcher(
    cli: str, cancelled: dict[str, Stopped], matrix: Matrix
) -> None:
    s = cancelled[cli]
    assert s.took is not None and s.took <= STOP_S, f"{cli} stopped {s.took} s after the decision\n{s.ran.said()}"
    assert "Cancelled by" in s.ran.stderr and "stopping" in s.ran.stderr, s.ran.said()
    row = _one_task(matrix, s.busy)
    assert row["status"] == "cancelled", row
    assert row["message"].startswith("Cancelled by") and "stopped by spanvisor run" in row["message"], row

    def said() -> str | None:
        [p] = matrix.parents_of(s.busy.task_id)
        shown = json.dumps([p.blocks, p.attachments])
        return shown if "stopped by spanvisor run" in shown else None

    wait_until(said, WAIT_S, "the Slack parent to say the launcher stopped the session")


@dataclass
class Signalled:
    busy: st.Busy
    took: float | None  # seconds from the signal to the CLI's exit; None: it ran on past SIGNALLED_S
    ran: Ran


def _answer_all(scripts: list[eh.Gated]) -> None:
    for g in scripts:
        g.go()


def _exit_after(proc: subprocess.Popen[str]) -> float | None:
    start = time.monotonic()
    try:
        proc.wait(timeout=SIGNALLED_S)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - start


# Slow by design: four real CLIs per signal, the model answering 4 s after it
# (Cline exits on SIGTERM only once its call has an answer).
@pytest.fixture(scope="module")
def signalled(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], dict[str, Signalled]]:
    """The four under the launcher, ``signum`` sent to each CLI and what runs
    under it (as ``kill`` or a process manager would; not to the launcher)."""
    done: dict[int, dict[str, Signalled]] = {}

    def run(signum: int) -> dict[str, Signalled]:
        if signum in done:
            return done[signum]
        tmp = tmp_path_factory.mktemp(signal.Signals(signum).name)
        started: dict[str, st.Busy] = {}
        scripts: dict[str, eh.Gated] = {}
        out: dict[str, Signalled] = {}
        try:
            for cli in CLIS:
                scripts[cli] = eh.Gated([text("too late")], 0)
                started[cli] = st.launched(cli, tmp, cli_bin, matrix, api, scripts[cli])
            for b in started.values():
                st.busy(b, matrix)
            with ThreadPoolExecutor(len(CLIS)) as pool:
                exits = {cli: pool.submit(_exit_after, b.running.proc) for cli, b in started.items()}
                for b in started.values():
                    st.signal_all(b.cli_pids(), signum)
                answer = threading.Timer(ANSWER_AFTER_SIGNAL_S, _answer_all, (list(scripts.values()),))
                answer.start()
                for cli, b in started.items():
                    took = exits[cli].result()
                    if took is None:  # it ran on: stopped as a process manager would, firmer
                        st.signal_all(b.cli_pids(), signal.SIGTERM)
                    print(f"{cli} exited {took} s after the {signal.Signals(signum).name}")
                    out[cli] = Signalled(b, took, b.running.wait())
        finally:
            for g in scripts.values():
                g.go()
            for b in started.values():
                b.running.stop()
        done[signum] = out
        return out

    return run


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("cli", CLIS)
def test_a_signal_to_the_cli_itself_ends_the_task_cancelled(
    cli: str, signum: int, signalled: Callable[[int], dict[str, Signalled]], matrix: Matrix
) -> None:
    s = signalled(signum)[cli]
    assert s.took is not None, f"{cli} ran on {SIGNALLED_S:.0f} s after the signal\n{s.ran.said()}"
    row = _one_task(matrix, s.busy)
    # Factory Droid 0.225.2 signalled in a model call waits for its answer,
    # finishes its run and exits 0 with its completion (the launcher prints
    # its answer): it did complete. Signalled before that call, it exits 0
    # with none: cancelled. Which one depends on the machine's load.
    finished = cli == "droid" and "too late" in s.ran.stdout
    want = "complete" if finished else "cancelled"
    assert (row["status"], row["error_message"]) == (want, None), (row, s.ran.said())


@dataclass
class Alone:
    script: eh.Gated
    running_said: Ran
    work: Path
    task_id: str


@pytest.fixture(scope="module")
def alone(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Alone]:
    """The four alone, each with its gate and end hooks: its first call
    runs; its model's next answer waits until alice clicked Cancel; then
    that answer (``touch two.txt``) goes to the gate."""
    tmp = tmp_path_factory.mktemp("alone")
    policy = tmp / "policy.toml"
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
    scripts = {
        cli: eh.Gated([st.shell(cli, "echo one"), st.shell(cli, "touch two.txt"), text("ok")], 1) for cli in ALONE
    }
    before = {cli: {r["task_id"] for r in matrix.tasks_of(st.AGENT[cli])} for cli in ALONE}
    running, works, tasks = {}, {}, {}
    try:
        for cli in ALONE:
            run_id = api.script(uuid.uuid4().hex[:12], scripts[cli])
            running[cli], works[cli] = st.alone(cli, tmp, cli_bin, matrix, api, run_id, extra)

        def cancel(cli: str) -> None:
            # Each at once, in its own thread: a session alone is silent while
            # its model waits, and the matrix loses a silent task after
            # served.LOST_AFTER_S; so the model answers as soon as Slack said
            # what the cancel does. Said before the model answers: once the
            # gate blocked the call the task ends, and its end replaces the
            # card's "cancel requested" (an edit not yet sent is never sent).
            wait_until(scripts[cli].reached.is_set, WAIT_S, f"{cli} to ask for its second turn (its first call ran)")
            task = tasks[cli] = st.new_task(matrix, cli, before[cli])
            found = matrix.shown_button(task, A.CANCEL, WAIT_S, cli)
            assert matrix.click(*found) == 200
            wait_until(lambda: (matrix.control(task) or {}).get("cancel"), WAIT_S, "the cancel recorded")

            def says() -> bool:
                return "next tool call will be blocked by spanvisor hook" in matrix.ever_shown(task)

            wait_until(says, WAIT_S, f"Slack to say {cli}'s next tool call will be blocked")
            scripts[cli].go()

        with ThreadPoolExecutor(len(ALONE)) as pool:
            list(pool.map(cancel, ALONE))
        return {cli: Alone(scripts[cli], running[cli].wait(), works[cli], tasks[cli]) for cli in ALONE}
    finally:
        for cli in ALONE:
            scripts[cli].go()
        for r in running.values():
            r.stop()


@pytest.mark.parametrize("cli", ALONE)
def test_without_the_launcher_a_cancel_clicked_in_slack_blocks_the_sessions_next_tool_call(
    cli: str, alone: dict[str, Alone], matrix: Matrix, api: FakeModelAPI
) -> None:
    a = alone[cli]
    ran = a.running_said
    assert not (a.work / "two.txt").exists(), f"the call after the cancel did not run\n{ran.said()}"
    run_id = next(r for r, s in api.scripts.items() if s is a.script)
    told = json.dumps([s.body for s in api.requests(run_id) if s.method == "POST"])
    assert "cancelled by " in told, f"the model was told the session was cancelled\n{ran.said()}"
    row = eh.ended(matrix, a.task_id)
    assert row["status"] == "cancelled" and row["message"].startswith("Cancelled by"), row
    assert "spanvisor hook" in row["message"], row
