"""A Cancel that a slow ``serve`` tells late still stops the session
(issue 63, "without the launcher, a Cancel is a suggestion"): the hook's
look at the task's cancel may come after its call was answered (the
policy's allow stands for that call, the one in flight), but it is
finished by a process of its own and remembered, so the session's next
call is denied. Before, a late look was dropped and every later call ran.

The control API here answers every look only after :data:`DELAY_S` (a
``serve`` far away or busy), far longer than the look's budget, so no
call's own look can tell it in time: only the remembered one can."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until

DELAY_S = 1.0
CANCEL = {"cancel": {"by": "alice", "comment": "stop now", "time_ns": 1}, "run_id": None}


class SlowControlApi(http.server.ThreadingHTTPServer):
    """GET of a task's view: its cancel, after :data:`DELAY_S`."""

    def __init__(self) -> None:
        self.looks = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.looks += 1
                time.sleep(DELAY_S)
                body = json.dumps({"task_id": "t", "status": "working", **CANCEL}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the hook stopped waiting; its late look asks again

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def api() -> Iterator[SlowControlApi]:
    server = SlowControlApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _ask(tmp_path: Path, command: str, session: str, variables: dict[str, str], *options: str) -> tuple[int, Any]:
    """One call of ``session`` through a cold ``spanvisor hook`` under a
    policy that allows everything: its exit status and what it answered."""
    (tmp_path / "policy.toml").write_text('default = "allow"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SPANVISOR_DATA_DIR=str(tmp_path / "data"),
        SPANVISOR_HOOK_DELIVERY="off",
        **variables,
    )
    call = {"session_id": session, "tool_name": "Bash", "tool_input": {"command": command}}
    argv = [sys.executable, "-P", "-m", "spanvisor.cli", "hook", "claude-code"]
    argv += ["--policy", str(tmp_path / "policy.toml"), *options]
    ran = subprocess.run(argv, input=json.dumps(call).encode(), capture_output=True, env=env, timeout=120, check=False)
    lines = [ln for ln in ran.stdout.decode().splitlines() if ln.startswith("{")]
    return ran.returncode, json.loads(lines[-1])["hookSpecificOutput"] if lines else {}


def _hook(tmp_path: Path, api: SlowControlApi, command: str) -> tuple[int, str]:
    variables = {"SPANVISOR_CONTROL_URL": api.url, "SPANVISOR_HOOK_CANCEL_WAIT": "50ms"}
    code, said = _ask(tmp_path, command, "late-1", variables)
    return code, str(said.get("permissionDecision", ""))


def test_a_cancel_told_after_the_answer_denies_the_sessions_next_call(tmp_path: Path, api: SlowControlApi) -> None:
    # The call in flight: its look cannot finish within 50 ms, so the policy's allow stands.
    assert _hook(tmp_path, api, "echo one") == (0, "allow")
    # Its look goes on after the hook exited and remembers alice's cancel;
    # the next calls' own looks are as late, so a denial can only be the memory.
    wait_until(lambda: _hook(tmp_path, api, "touch two.txt") == (0, "deny"), 60, "the next call denied by the cancel")
    assert api.looks >= 2


def _locked(tmp_path: Path, api: SlowControlApi, *options: str, started: float | None = None) -> tuple[str, str]:
    """A locked hook (the system gate's, an operator's managed entry) for
    one call, its cancel wait set by its command line or not at all; the
    environment asks for 5 s, which a locked hook does not read, and may
    claim an earlier start (``started``), which it does read."""
    tmp_path.mkdir()
    locked = ("--locked", "--url", api.url, "--central", "off", *options)
    variables = {"SPANVISOR_HOOK_CANCEL_WAIT": "5s"}
    if started is not None:
        variables["SPANVISOR_HOOK_STARTED"] = repr(started)
    _, said = _ask(tmp_path, "echo one", "locked-1", variables, *locked)
    return str(said.get("permissionDecision")), str(said.get("permissionDecisionReason"))


def test_a_locked_hooks_cancel_wait_is_its_command_lines(tmp_path: Path, api: SlowControlApi) -> None:
    """A busy serve answers the look in 1 s. A locked hook ignores
    SPANVISOR_HOOK_CANCEL_WAIT (the agent's environment could shorten it),
    so it waited 100 ms whatever its operator wanted, and the call in flight
    ran; ``--cancel-wait`` on its command line (``gate serve --cancel-wait``
    for the system gate) waits for the look, and the cancel denies it."""
    assert _locked(tmp_path / "default", api)[0] == "allow"  # 100 ms: the look came too late for this call
    decision, reason = _locked(tmp_path / "waits", api, "--cancel-wait", "5s")
    assert decision == "deny" and "stop now" in reason, reason


def test_a_start_claimed_earlier_shortens_no_cancel_look(tmp_path: Path, api: SlowControlApi) -> None:
    """The hook's start may be handed on (``SPANVISOR_HOOK_STARTED``, which
    a locked hook reads: a repository's ``env`` block can set it, as a hook's
    request to the system gate can claim it). Claimed 50 s early, the look's
    wait was over before it began (its 30 ms floor), and the call in flight
    ran whatever ``--cancel-wait`` said; the wait now counts from when the
    deciding process got the call."""
    early = time.monotonic() - 50.0
    decision, reason = _locked(tmp_path / "claimed", api, "--cancel-wait", "5s", started=early)
    assert decision == "deny" and "stop now" in reason, reason
