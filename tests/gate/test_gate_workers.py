"""The launcher's gate starts no thread per call (issue 70): its calls run
on long-lived workers, bounded (a call past the bound is a block that says
why, at once, and calls waiting for a person never make a new call wait),
and every backstop is an entry on the process's one timer thread."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli import hook, run_gate
from spanvisor.cli.run_gate import LocalGate, decide_call
from spanvisor.cli.run_gate_http import HttpGate
from spanvisor.gate import local, workers
from tests.waiting import wait_until

POLICY = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


def call_doc(command: str) -> str:
    return json.dumps({"session_id": "s", "tool_name": "Bash", "tool_input": {"command": command}})


def session_env(tmp: Path, gate: LocalGate) -> dict[str, str]:
    """What a launched session's hook sends: its socket named (no cancel look)."""
    return {
        "HOME": str(tmp),
        "SPANVISOR_DATA_DIR": str(tmp / "data"),
        "SPANVISOR_HOOK_DELIVERY": "off",
        "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9",
        local.ENV_SOCKET: gate.path,
    }


def ask(gate: LocalGate, tmp: Path, command: str, *args: str) -> tuple[int, str, str]:
    """One hook call over the launcher's socket, as the full hook sends it:
    (exit status, decision, stderr)."""
    policy = tmp / "policy.toml"
    if not policy.exists():
        policy.write_text(POLICY)
    doc = {
        "argv": ["claude-code", "--policy", str(policy), *args],
        "stdin": call_doc(command),
        "cwd": str(tmp),
        "env": session_env(tmp, gate),
        "started": time.monotonic(),
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(gate.path)
        s.sendall(local.frame(doc))
        said = local.read_frame(s, time.monotonic() + 60)
    assert said is not None, "the launcher answered"
    lines = [ln for ln in str(said["stdout"]).splitlines() if ln.startswith("{")]
    decision = json.loads(lines[-1])["hookSpecificOutput"]["permissionDecision"] if lines else ""
    return int(said["code"]), decision, str(said["stderr"])


class Starts:
    """Every thread started in this process while it counts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        real = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            self.names.append(thread.name)
            real(thread)

        monkeypatch.setattr(threading.Thread, "start", start)


@pytest.fixture
def gate() -> Iterator[LocalGate]:
    g = LocalGate()
    yield g
    g.close()


def test_two_hundred_calls_over_the_socket_start_no_thread(
    gate: LocalGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ask(gate, tmp_path, "ls -la")[:2] == (0, "allow")  # warm: the timer thread starts with the first call
    assert gate.timers.thread is not None and gate.timers.started == 1
    before = threading.active_count()
    starts = Starts(monkeypatch)
    said = [ask(gate, tmp_path, "ls -la" if i % 2 else "rm -rf x")[:2] for i in range(200)]
    assert said == [(0, "deny"), (0, "allow")] * 100
    assert starts.names == [], "no thread started for a call"
    assert threading.active_count() <= before
    assert gate.answered == 201
    assert gate.timers.started == 1 and gate.workers.started == run_gate.CORE_WORKERS
    # (each backstop cancelled once its call's audit note is done, just after the answer)
    wait_until(lambda: gate.timers.pending() == 0 or None, 30, "every backstop cancelled")


def test_two_hundred_calls_to_the_http_listener_start_no_thread(
    gate: LocalGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = {**session_env(tmp_path, gate), "SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml")}
    listener = HttpGate(gate.decide, env, str(tmp_path), gate.workers)
    port, path = listener.server.server_address[1], listener.url.split("/", 3)[3]

    def post(command: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # a new connection each call
        try:
            conn.request("POST", f"/{path}", call_doc(command).encode(), {"Content-Type": "application/json"})
            doc = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return str(doc["hookSpecificOutput"]["permissionDecision"])

    try:
        assert post("ls -la") == "allow"
        before = threading.active_count()
        starts = Starts(monkeypatch)
        said = [post("ls -la" if i % 2 else "ls; rm x") for i in range(200)]
        assert said == ["deny", "allow"] * 100
        assert starts.names == [], "no thread started for a connection or a call"
        assert threading.active_count() <= before
    finally:
        listener.close()


def test_calls_waiting_never_starve_new_ones_and_one_past_the_bound_is_a_block_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_gate, "CORE_WORKERS", 1)
    monkeypatch.setattr(run_gate, "MAX_WORKERS", 3)
    release = threading.Event()
    real = hook.main

    def main(argv: list[str], **kw: Any) -> int:
        if "wait" in kw["stdin"].decode():  # a call waiting for a person: it holds its worker
            release.wait(60)
        return real(argv, **kw)

    monkeypatch.setattr(hook, "main", main)
    gate = LocalGate()
    waiting: list[tuple[int, str, str]] = []

    def wait_call(n: int) -> threading.Thread:
        t = threading.Thread(target=lambda: waiting.append(ask(gate, tmp_path, f"ls wait-{n}")), daemon=True)
        t.start()
        return t

    try:
        held = [wait_call(0), wait_call(1)]
        wait_until(lambda: gate.workers.busy == 2 or None, 30, "two calls waiting")
        t0 = time.monotonic()
        assert ask(gate, tmp_path, "ls -la")[:2] == (0, "allow")  # a third worker, started for it
        held.append(wait_call(2))
        wait_until(lambda: gate.workers.busy == 3 or None, 30, "three calls waiting")
        code, decision, err = ask(gate, tmp_path, "ls -la")
        assert (code, decision) == (2, "deny"), (code, decision, err)
        assert "deciding 3 calls already" in err and "wait for a person" in err, err
        assert time.monotonic() - t0 < 20, "answered at once, not queued"
        assert waiting == [], "the waiting calls still wait"
        assert gate.workers.alive == 3
        release.set()
        for t in held:
            t.join(60)
        assert sorted(d[:2] for d in waiting) == [(0, "allow")] * 3
        assert ask(gate, tmp_path, "ls")[:2] == (0, "allow"), "a worker free again"
    finally:
        release.set()
        gate.close()


def test_the_http_listener_past_its_bound_denies_at_once_saying_why(tmp_path: Path) -> None:
    release = threading.Event()

    def decide(send: Callable[[int, str, str], None], _argv: list[str], raw: bytes, *_: object) -> None:
        if b"wait" in raw:
            release.wait(60)
        send(0, '{"hookSpecificOutput": {"permissionDecision": "allow"}}', "")

    calls = workers.Workers("test-calls", 0, 2)
    listener = HttpGate(decide, {}, str(tmp_path), calls)
    port, path = listener.server.server_address[1], listener.url.split("/", 3)[3]
    got: list[dict[str, Any]] = []

    def post(command: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", f"/{path}", call_doc(command).encode())
            doc: dict[str, Any] = json.loads(conn.getresponse().read())
            return doc
        finally:
            conn.close()

    held = [threading.Thread(target=lambda n=n: got.append(post(f"wait {n}")), daemon=True) for n in range(2)]
    try:
        for t in held:
            t.start()
        wait_until(lambda: listener.calls.busy == 2 or None, 30, "two calls waiting")
        doc = post("ls")["hookSpecificOutput"]
        assert doc["permissionDecision"] == "deny" and "deciding 2 calls already" in doc["permissionDecisionReason"]
        assert got == []
        release.set()
        for t in held:
            t.join(60)
        assert [d["hookSpecificOutput"]["permissionDecision"] for d in got] == ["allow", "allow"]
    finally:
        release.set()
        listener.close()
        calls.close()


def test_the_backstop_blocks_an_undecided_call_from_the_shared_timer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision that hangs (a policy file that never opens, a silent
    request): the block goes out just past the deadline, sent by the one
    timer thread; no threading.Timer is made."""
    hung = threading.Event()

    def main(*_: object, **__: object) -> int:
        hung.wait(30)
        return 0

    monkeypatch.setattr(hook, "main", main)
    monkeypatch.setattr(threading, "Timer", None)
    sent: list[tuple[int, str, str, float]] = []

    def send(code: int, out: str, err: str) -> None:
        sent.append((code, threading.current_thread().name, err, time.monotonic()))

    started = time.monotonic()
    # Gemini CLI given 3 s: the deadline 1 s after the start (a 2 s margin), the launcher's backstop 0.5 s later.
    argv = ["gemini", "--cli-timeout", "3"]
    worker = threading.Thread(target=decide_call, args=(send, argv, b"{}", started, {"HOME": str(tmp_path)}, "/"))
    worker.start()
    try:
        wait_until(lambda: sent or None, 10, "the backstop's block")
    finally:
        hung.set()
        worker.join(10)
    [(code, thread, err, at)] = sent
    assert code == 2 and "no answer before the CLI's hook timeout" in err
    assert thread == workers.shared().name
    assert 1.4 <= at - started < 3.0, at - started
    # With nothing left to wait for, the shared thread ends after a moment.
    wait_until(lambda: workers.shared().thread is None or None, 30, "the shared timer thread ended")


def test_the_launchers_backstop_is_an_entry_on_its_sessions_timer_thread(
    gate: LocalGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = threading.Event()
    real = hook.main

    def main(argv: list[str], **kw: Any) -> int:
        if "hang" in kw["stdin"].decode():
            hung.wait(30)
        return real(argv, **kw)

    monkeypatch.setattr(hook, "main", main)
    assert ask(gate, tmp_path, "ls")[:2] == (0, "allow")
    t0 = time.monotonic()
    try:
        code, decision, err = ask(gate, tmp_path, "ls hang", "--cli-timeout", "3")
    finally:
        hung.set()
    assert (code, decision) == (2, "deny") and "no answer before the CLI's hook timeout" in err, (code, err)
    assert time.monotonic() - t0 < 3.0
    assert gate.timers.started == 1, "the session's one timer thread"


def test_the_timer_thread_runs_calls_in_time_order_and_never_a_cancelled_one() -> None:
    timers = workers.Timers("test-timers")
    ran: list[str] = []
    now = time.monotonic()
    try:
        timers.schedule(now + 0.3, lambda: ran.append("c"))
        timers.schedule(now + 0.1, lambda: ran.append("a"))
        gone = timers.schedule(now + 0.15, lambda: ran.append("never"))
        timers.schedule(now + 0.2, lambda: 1 / 0)  # a failing call stops nothing
        timers.schedule(now + 0.25, lambda: ran.append("b"))
        assert timers.cancel(gone) and not timers.cancel(gone)
        wait_until(lambda: len(ran) == 3 or None, 10, "the three calls")
        assert ran == ["a", "b", "c"]
        assert timers.pending() == 0 and timers.started == 1
        late = timers.schedule(time.monotonic() + 60, lambda: ran.append("never"))
    finally:
        timers.close()
    assert timers.thread is None and not late.fired and timers.pending() == 0


def test_cancelled_timers_do_not_pile_up() -> None:
    """Each call schedules a backstop minutes ahead and cancels it within
    milliseconds: the heap is rebuilt without the cancelled ones."""
    timers = workers.Timers("test-timers")
    far = time.monotonic() + 600
    try:
        for i in range(10_000):
            timers.cancel(timers.schedule(far + i, lambda: None))
        assert timers.pending() == 0
        assert len(timers._heap) <= 2 * 257
    finally:
        timers.close()


def test_a_pool_keeps_its_core_and_ends_a_bursts_extra_workers() -> None:
    pool = workers.Workers("test-pool", 1, 4, idle_s=0.2)
    release = threading.Event()
    try:
        assert all(pool.submit(release.wait, 30) for _ in range(4))
        assert not pool.submit(release.wait, 30), "at the bound: no queue"
        wait_until(lambda: pool.busy == 4 or None, 30, "four workers busy")
        assert (pool.alive, pool.started) == (4, 4)
        release.set()
        wait_until(lambda: pool.alive == 1 or None, 30, "the extra workers gone")
        done = threading.Event()
        assert pool.submit(done.set)
        assert done.wait(10) and pool.started == 4, "the kept worker ran it"
    finally:
        release.set()
        pool.close()
