"""Qwen Code, Copilot CLI, OpenCode, Cline, pi, Kilo and Factory Droid started for the stop rows:
under ``spanvisor run`` kept busy by a model that holds its answer back, or
alone with the gate (each CLI's own) and its end hooks. The four share the
fake Chat Completions API, so a row starts all seven at once."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from spanvisor.launcher.stop import tree
from tests.codingagents import cline_cli as cl
from tests.codingagents import copilot_cli as cp
from tests.codingagents import droid_cli as dc
from tests.codingagents import endhooks as eh
from tests.codingagents import kilo_cli as kc
from tests.codingagents import opencode_cli as oc
from tests.codingagents import pi_cli as pc
from tests.codingagents import qwen_code as qc
from tests.codingagents.agents import Running, start
from tests.codingagents.fake_chat import is_side_request
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, Turn, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

CLIS = ("qwen", "copilot", "opencode", "cline", "pi", "kilo", "droid")
AGENT = {
    "qwen": "qwen-code",
    "copilot": "github-copilot",
    "opencode": "opencode",
    "cline": "cline",
    "pi": "pi",
    "kilo": "kilo",
    "droid": "droid",
}
WAIT_S = 120.0


def shell(cli: str, command: str) -> Turn:
    """A shell call as each CLI's model asks for it."""
    if cli == "qwen":
        return tool(qc.SHELL, command=command)
    if cli == "cline":
        return tool(cl.SHELL, commands=[command])
    if cli == "pi":
        return tool(pc.SHELL, command=command)
    if cli == "droid":
        return dc.shell(command)
    return tool(cp.SHELL if cli == "copilot" else oc.SHELL, command=command, description="run it")


def asked(api: FakeModelAPI, run_id: str) -> bool:
    """The CLI asked its model a turn (a title request is none)."""
    return any(
        s.method == "POST" and "completions" in s.path and not is_side_request(s.body) for s in api.requests(run_id)
    )


class Busy:
    """One CLI under the launcher, waiting on its model."""

    def __init__(self, cli: str, running: Running, api: FakeModelAPI, run_id: str, task_id: str) -> None:
        self.cli, self.running, self.api, self.run_id, self.task_id = cli, running, api, run_id, task_id

    def cli_pids(self) -> list[int]:
        """The CLI and what runs under it (the launcher left out)."""
        return tree(self.running.proc.pid)[1:]


def launched(cli: str, tmp: Path, cli_bin: Path, matrix: Matrix, api: FakeModelAPI, script: Script) -> Busy:
    """``cli`` started under the launcher, its task id with ``:`` and ``/``."""
    run_id = api.script(uuid.uuid4().hex[:12], script)
    task_id = f"stop:{cli}/{run_id}"
    prompt = f"work until stopped ({run_id})"
    home = tmp / cli / "home"
    # As a user starts each: no output format of its own (the launcher asks for its own).
    if cli == "qwen":
        env, argv = qc.env(home, matrix, api, run_id, telemetry=False), qc.argv(cli_bin, prompt, None)
    elif cli == "copilot":
        env, argv = cp.env(home, api, run_id), cp.argv(prompt, None)
    elif cli == "opencode":
        env, argv = oc.env(home, api, run_id), oc.argv(cli_bin, prompt, None)
    elif cli == "pi":
        env, argv = pc.env(home, api, run_id), pc.argv(cli_bin, prompt, None)
    elif cli == "kilo":
        env, argv = kc.env(home, api, run_id), kc.argv(cli_bin, prompt, None)
    elif cli == "droid":
        env, argv = dc.env(home, api, run_id), dc.argv(cli_bin, prompt, None)
    else:
        env, argv = cl.env(home, api, run_id), cl.argv(cli_bin, prompt, json_lines=False)
    # The launcher keeps its task live (the matrix loses a silent task in
    # seconds): a CLI slow to obey a signal is not ended by liveness first.
    env["SPANVISOR_HEARTBEAT"] = "1s"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    return Busy(cli, start(argv, env, tmp / cli / "work", launcher), api, run_id, task_id)


def busy(b: Busy, matrix: Matrix) -> None:
    """Wait until ``b`` asked its model and its task is open."""
    wait_until(lambda: asked(b.api, b.run_id), WAIT_S, f"{b.cli} to ask its model\n{_said(b.running)}")
    wait_until(lambda: matrix.task(b.task_id) is not None, WAIT_S, f"task {b.task_id} to open")


def _said(running: Running) -> str:
    return " ".join(running.argv)


def alone(
    cli: str, tmp: Path, cli_bin: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, extra: dict[str, str]
) -> tuple[Running, Path]:
    """``cli`` alone, with its gate (``extra`` names its policy) and its end hooks."""
    prompt = f"work until cancelled ({run_id})"
    home, work = tmp / cli / "home", tmp / cli / "work"
    work.mkdir(parents=True)
    if cli == "qwen":
        env = qc.env(home, matrix, api, run_id)
        qc.add_hook(home)
        eh.add_qwen_hooks(home)
        argv = qc.argv(cli_bin, prompt)
    elif cli == "copilot":
        env = cp.env(home, api, run_id, matrix)
        cp.add_hook(home)
        eh.add_copilot_hooks(home)
        argv = cp.argv(prompt)
    elif cli == "opencode":
        env = oc.with_plugin(oc.env(home, api, run_id))
        argv = oc.argv(cli_bin, prompt)
    elif cli == "pi":
        env = pc.with_extension(pc.env(home, api, run_id))
        argv = pc.argv(cli_bin, prompt)
    elif cli == "kilo":
        env = kc.with_plugin(kc.env(home, api, run_id))
        argv = kc.argv(cli_bin, prompt)
    elif cli == "droid":
        env = dc.env(home, api, run_id)
        dc.add_hooks(home)
        argv = dc.argv(cli_bin, prompt)
    else:
        env = cl.env(home, api, run_id)
        cl.add_hook(home)
        eh.add_cline_hooks(home)
        env["SPANVISOR_BIN"] = cl.SPANVISOR_BIN
        argv = cl.argv(cli_bin, prompt)
    return start(argv, {**env, **extra}, work), work


def new_task(matrix: Matrix, cli: str, before: set[str]) -> str:
    """The one task of ``cli``'s agent opened since ``before``."""

    def found() -> str | None:
        fresh = {r["task_id"] for r in matrix.tasks_of(AGENT[cli])} - before
        assert len(fresh) <= 1, fresh
        return fresh.pop() if fresh else None

    return str(wait_until(found, WAIT_S, f"the {cli} session's task"))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def gone_at(pids: list[int], within: float) -> float | None:
    """When none of ``pids`` runs any more (monotonic), None if not within."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return time.monotonic()
        time.sleep(0.02)
    return None
