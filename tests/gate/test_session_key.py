"""How the system gate keys a session run without the launcher
(:mod:`spanvisor.hook.sessionkey`), against a local OTLP/HTTP endpoint that
counts what it is sent: once per session, the first secret standing, never
for a launched session, never waiting on a receiver that is down more than
once per retry window, and no proof until the key reached the receiver.
(The end to end proof, the real gate under a user of its own and a real
receiver, is ``test_system_gate.py``.)"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.cli import gate_serve
from spanvisor.gate import turns
from spanvisor.gate.deadline import Deadline
from spanvisor.hook import sessionkey
from spanvisor.receiver.codingagents.ids import session_task_id

SID = "0f3c2a1e-5b7d-4c11-9a0e-8d2f6b1c3e77"
TASK = session_task_id("claude-code", SID)
CALL = json.dumps({"session_id": SID, "tool_name": "Bash", "tool_input": {"command": "ls"}}).encode()


class Endpoint:
    """OTLP/HTTP that records each POST's body and answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), **more}


def _process(pid: int) -> str:
    """``<pid>:<start time>``, as the gate names the CLI a call came from."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f"{pid}:{f.read().rsplit(')', 1)[-1].split()[19]}"


def _gone_cli() -> str:
    """A CLI that has exited."""
    import subprocess

    proc = subprocess.Popen(["sleep", "0"])
    named = _process(proc.pid)
    proc.wait()
    return named


def _ensure(env: dict[str, str], url: str, under: str | None = None) -> bool:
    deadline = Deadline.for_cli("claude-code", None)
    return sessionkey.ensure("claude-code", CALL, url, "tok", env, deadline, under or _gone_cli())


def _key_in(body: bytes) -> str:
    doc = json.loads(body)
    [record] = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert record["eventName"] == "agent.task.start"
    attrs = {a["key"]: a["value"]["stringValue"] for a in record["attributes"]}
    assert attrs["agent.task.id"] == TASK
    return str(attrs["agent.session.key"])


def test_a_session_is_keyed_once_and_its_end_proves_the_key(tmp_path: Path, endpoint: Endpoint) -> None:
    env = _env(tmp_path)
    assert sessionkey.proof(TASK, env) is None
    assert _ensure(env, endpoint.url) and _ensure(env, endpoint.url)
    [body] = endpoint.bodies  # the second call found it keyed
    proof = sessionkey.proof(TASK, env)
    assert proof is not None and hashlib.sha256(proof.encode()).hexdigest() == _key_in(body)
    assert proof not in body.decode()  # the secret itself never leaves before the end
    [kept] = list((tmp_path / "state").rglob("*.key"))
    assert kept.stat().st_mode & 0o077 == 0
    turns.forget(TASK, env)
    assert sessionkey.proof(TASK, env) is None and not list((tmp_path / "state").rglob("*.key"))


def test_no_proof_while_the_cli_it_was_keyed_under_runs(tmp_path: Path, endpoint: Endpoint) -> None:
    """Any process of the agents' group can hand the gate a session's end;
    the CLI sends its own as it exits. While it runs, the end goes unproved."""
    import os

    env = _env(tmp_path)
    assert _ensure(env, endpoint.url, under=_process(os.getpid()))  # this process: it runs
    assert sessionkey.proof(TASK, env, within_s=0.2) is None
    held = turns.secret_of(TASK, env)
    assert held is not None and held.cli == _process(os.getpid())


def test_a_receiver_that_refuses_is_tried_again_only_after_the_retry_window(tmp_path: Path, endpoint: Endpoint) -> None:
    env = _env(tmp_path)
    endpoint.status = 503
    assert not _ensure(env, endpoint.url)
    assert not _ensure(env, endpoint.url)
    assert len(endpoint.bodies) == 1  # not again within the window: a receiver down costs a call once
    assert sessionkey.proof(TASK, env) is None  # an end cannot prove a key the receiver never had
    held = turns.secret_of(TASK, env)
    assert held is not None
    turns.secret_said(TASK, held._replace(tried=time.time() - sessionkey.RETRY_S - 1), env)
    endpoint.status = 200
    assert _ensure(env, endpoint.url)
    first, again = endpoint.bodies
    assert _key_in(first) == _key_in(again)  # the same secret: the first made stands
    assert sessionkey.proof(TASK, env) == held.secret


def test_a_receiver_that_is_down_or_silent_leaves_the_session_unkeyed(tmp_path: Path) -> None:
    """Refused, or taking the connection and never answering (the post's
    deadline ends it: what that costs a call is measured by
    ``benchmarks/bench_gate.py --only keyed``, not here): the call goes on
    unkeyed, and the next call within the retry window does not try again."""
    assert not _ensure(_env(tmp_path), "http://127.0.0.1:9")
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections wait in the backlog: never accepted, never answered
        env = _env(tmp_path, XDG_STATE_HOME=str(tmp_path / "silent"))
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert not _ensure(env, url)
        assert not _ensure(env, url)
        assert sessionkey.proof(TASK, env) is None
    finally:
        silent.close()


def test_the_launchers_session_and_a_call_without_a_session_are_not_keyed(tmp_path: Path, endpoint: Endpoint) -> None:
    assert not _ensure(_env(tmp_path, SPANVISOR_TASK_ID="launched-1"), endpoint.url)
    raw = json.dumps({"tool_name": "Bash", "tool_input": {"command": "ls"}}).encode()
    assert not sessionkey.ensure("claude-code", raw, endpoint.url, None, _env(tmp_path), Deadline.for_cli(None, 60))
    assert endpoint.bodies == []


def test_the_first_secret_stands_whoever_makes_one_later(tmp_path: Path) -> None:
    env = _env(tmp_path)
    made = [turns.made_secret(TASK, f"{i:064x}", env) for i in range(3)]
    assert {m.secret for m in made} == {f"{0:064x}"}
    assert [p.name for p in (tmp_path / "state").rglob("*") if p.is_file()] == [
        f"{turns._path(TASK, '', env).name}.key"
    ]


def test_only_the_gate_passes_the_flag_a_hooks_request_cannot_carry_it() -> None:
    assert gate_serve.passed_on(["claude-code", "--key-sessions", "--at-terminal"]) == ["claude-code", "--at-terminal"]


def test_the_cancel_wait_is_the_gates_own_never_a_requests() -> None:
    """A hook's request asking for no wait (so its look comes too late and
    a cancelled session's call runs) is not obeyed; the gate's own
    ``--cancel-wait`` goes to every call, and one it cannot read stops it."""
    assert gate_serve.passed_on(["claude-code", "--cancel-wait", "0", "--cli-timeout", "60"]) == [
        "claude-code",
        "--cli-timeout",
        "60",
    ]
    parser = argparse.ArgumentParser()
    gate_serve.add_arguments(parser)
    args = parser.parse_args(["--socket", "/run/g.sock", "--policy", "/etc/p.toml", "--cancel-wait", "2s"])
    assert gate_serve.own_options(args)[-2:] == ["--cancel-wait", "2s"]
    args.cancel_wait = "soon"
    with pytest.raises(gate_serve.CannotStart, match="--cancel-wait"):
        gate_serve.own_options(args)


def test_a_gate_that_cannot_keep_a_secret_decides_all_the_same(tmp_path: Path) -> None:
    """A gate whose user's state folder cannot be written (a system user's
    home of /nonexistent, a full disk) keys nothing, and every call is
    still decided by the policy, never blocked for it."""
    import os
    import subprocess
    import sys

    policy = tmp_path / "allow.toml"
    policy.write_text('default = "allow"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(HOME="/proc/nonexistent", XDG_STATE_HOME="/proc/nonexistent/state", SPANVISOR_HOOK_DELIVERY="off")
    spanvisor = str(Path(sys.executable).with_name("spanvisor"))
    done = subprocess.run(
        [spanvisor, "hook", "claude-code", "--key-sessions", "--locked", "--policy", str(policy)],
        input=CALL,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    said = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert said["hookSpecificOutput"]["permissionDecision"] == "allow", (said, done.stderr)


def test_a_secret_far_into_a_prompt_is_not_half_shown_in_the_name() -> None:
    """A name is cut from the prompt's start: a secret the cut went through
    showed its first half, which redaction did not know to hide."""
    from spanvisor.clis.records import MAX_NAME, clean

    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
    for prompt in ("deploy" + " " * 290 + f"with {secret} now", "deploy " + "x " * 150 + secret):
        name = clean(prompt, MAX_NAME)
        assert name is not None and "A1b2" not in name, name
