"""Live tasks through restarts of a real ``spanvisor serve`` (SIGTERM and
SIGKILL) on PostgreSQL: the live channel's records are journaled, so after a
restart every open live task keeps its title and progress and takes new
records, a waiting approval accepts exactly one decision, and an agent that
dies after the restart is stalled, then lost after SPANVISOR_LOST_AFTER.

The agents here are raw OTLP/HTTP log clients (``ExportLogsServiceRequest``
protobuf), the live channel's wire format, so the test controls exactly
when each one speaks and when it goes silent.

Each case (SIGTERM, SIGKILL) has a serve, a database and agents of its own,
exactly as if it ran alone; the two cases of one test run at once on two
threads (a module fixture starts both, each test waits for its own), so
their stall and lost windows, idle time spent waiting, overlap instead of
adding up."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from serve_proc import LOG_TAIL, ServeProcess, db_rows, slack_env
from tests.waiting import wait_until

from spanvisor.spans import conventions as cv

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(400)]

STALL_AFTER_S = 10
# Longer than any gap between a live agent's records here, a restart included
# (the silence while nobody listens is not counted: docs/reference/conventions.md).
LOST_AFTER_S = 20
N = 5
DEAD = 4  # the agent killed after the restart
HOWS = ("sigterm", "sigkill")


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def _ids(n: int) -> tuple[bytes, bytes]:
    return bytes.fromhex(f"{0xABC0 + n:032x}"), bytes.fromhex(f"{0xDEF0 + n:016x}")


class Agents:
    """N live agents speaking through one serve's /v1/logs."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.port = 0
        self.beating = set(range(N))
        # When each agent last began to send a record (its last word).
        self.sent: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def task_id(self, n: int) -> str:
        return f"{self.run}-{n}"

    def say(self, n: int, name: str, attrs: dict[str, Any]) -> bool:
        trace, root = _ids(n)
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.append(_kv("service.name", "worker-pod"))
        rec = rl.scope_logs.add().log_records.add()
        rec.trace_id, rec.span_id, rec.event_name, rec.time_unix_nano = trace, root, name, time.time_ns()
        rec.attributes.extend(_kv(k, v) for k, v in attrs.items())
        http = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/logs",
            data=req.SerializeToString(),
            method="POST",
            headers={"Content-Type": "application/x-protobuf"},
        )
        self.sent[n] = time.time()
        try:
            with urllib.request.urlopen(http, timeout=15) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def must_say(self, n: int, name: str, attrs: dict[str, Any]) -> None:
        wait_until(lambda: self.say(n, name, attrs), 30, f"{name} of task {n} to be accepted", every=0.2)

    def start(self) -> None:
        for n in range(N):
            start = {cv.TASK_NAME: f"Task number {n}", cv.AGENT_ID: f"agent-{n}", cv.TASK_ID: self.task_id(n)}
            self.must_say(n, cv.LIVE_TASK_START, start)
            self.must_say(n, cv.LIVE_TASK_UPDATE, {cv.PROGRESS: 10.0 + n, cv.MESSAGE: f"step one of {n}"})
        ask = {cv.APPROVAL_ID: "deploy", cv.APPROVAL_QUESTION: "Deploy to prod?"}
        self.must_say(2, cv.EVENT_APPROVAL_REQUEST, ask)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            for n in sorted(self.beating):
                self.say(n, cv.LIVE_HEARTBEAT, {})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(20)


def _call(port: int, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _serve(data: Path, db_url: str) -> ServeProcess:
    env = slack_env(
        data,
        "http://127.0.0.1:9",
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres",
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
        SPANVISOR_LOST_AFTER=f"{LOST_AFTER_S}s",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    return ServeProcess(data, env)


def _restart(proc: ServeProcess, how: str) -> None:
    if how == "sigterm":
        assert proc.terminate(60) == 0
    else:
        proc.kill()
    proc.start()


Scenario = Callable[[ServeProcess, str, str], None]


def _selected(request: pytest.FixtureRequest, test: str) -> list[str]:
    """The cases of ``test`` this session runs (both, unless -k or node ids pick)."""
    ids = {item.nodeid for item in request.session.items}
    return [how for how in HOWS if f"{request.node.nodeid}::{test}[{how}]" in ids]


class Cases:
    """The selected cases of one scenario, started at once, each on a thread
    with a serve (on its own data dir and database) of its own."""

    def __init__(self, pg_server: Any, tmp: pytest.TempPathFactory, scenario: Scenario, hows: list[str]) -> None:
        self.data: dict[str, Path] = {}
        self.done: dict[str, Future[None]] = {}
        self._pool = ThreadPoolExecutor(max(1, len(hows)), thread_name_prefix=scenario.__name__)
        for how in hows:
            # Made here, one after the other: the first one builds the template.
            db_url = pg_server.database()
            self.data[how] = tmp.mktemp(f"{scenario.__name__.strip('_')}-{how}")
            self.done[how] = self._pool.submit(self._run, scenario, self.data[how], db_url, how)

    @staticmethod
    def _run(scenario: Scenario, data: Path, db_url: str, how: str) -> None:
        proc = _serve(data, db_url)
        try:
            scenario(proc, db_url, how)
        finally:
            proc.stop()

    def verdict(self, how: str) -> None:
        """The case's outcome: its failure is raised here, with what its serve said.
        Every case is waited for first: the threads a case starts appear while
        the first test runs, so they are that test's and must end with it
        (tests/threads.py); loaded, the other case once outlived it."""
        wait(self.done.values(), timeout=300)
        try:
            self.done[how].result(300)
        except BaseException:
            for log in sorted(self.data[how].glob("serve-*.log")):
                text = log.read_text(errors="replace")
                print(f"--- {how}: {log.name}, its last {LOG_TAIL:,} characters ---\n{text[-LOG_TAIL:]}")
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _survive_then_lost(proc: ServeProcess, db_url: str, how: str) -> None:
    agents = Agents(f"live-{how}")
    agents.port = proc.http
    ids = [agents.task_id(n) for n in range(N)]

    def rows() -> dict[str, dict[str, Any]]:
        got = db_rows(db_url, "SELECT * FROM agent_tasks WHERE task_id = ANY($1::text[])", ids)
        return {r["task_id"]: r for r in got}

    try:
        agents.start()
        wait_until(
            lambda: len(rows()) == N and all(r["progress"] for r in rows().values()), 60, "5 tasks written", every=0.5
        )
        _restart(proc, how)
        agents.port = proc.http

        # Every task is known again: new progress lands on the task it names,
        # title kept, no second task and nothing finished.
        for n in range(N):
            agents.must_say(n, cv.LIVE_TASK_UPDATE, {cv.PROGRESS: 80.0 + n, cv.MESSAGE: f"step two of {n}"})

        def updated() -> bool:
            r = rows()
            return len(r) == N and all(r[agents.task_id(n)]["progress"] == 80.0 + n for n in range(N))

        wait_until(updated, 60, "every task to take its new progress after the restart", every=0.5)
        for n, r in ((n, rows()[agents.task_id(n)]) for n in range(N)):
            assert r["task_name"] == f"Task number {n}" and r["ended_at"] is None, r

        # The approval asked before the restart accepts exactly one decision.
        task2 = agents.task_id(2)
        wait_until(
            lambda: (
                [a["approval_id"] for a in _call(proc.http, "GET", f"/v1/control/tasks/{task2}")[1]["approvals"]]
                == ["deploy"]
            ),
            60,
            "the waiting approval after the restart",
            every=0.5,
        )
        body = {"action": "approve", "actor": "alice", "approval_id": "deploy"}
        status, doc = _call(proc.http, "POST", f"/v1/control/tasks/{task2}/decisions", body)
        assert status == 200 and doc["outcome"] == "applied", doc
        status, doc = _call(proc.http, "POST", f"/v1/control/tasks/{task2}/decisions", {**body, "actor": "bob"})
        assert status == 409 and doc["outcome"] == "already_decided", doc

        # The agent of task 4 dies after the restart: stalled, then lost once
        # silent for SPANVISOR_LOST_AFTER; the others, still speaking, are not.
        agents.beating.discard(DEAD)
        dead = agents.task_id(DEAD)

        def lost() -> dict[str, Any] | None:
            r = rows()[dead]
            return r if r["status"] == "lost" else None

        r = wait_until(lost, 120, "the dead agent's task to be lost", every=0.5)
        # Its silence began when it last began to send (a heartbeat already on
        # its way when it was told to stop included): not lost before it.
        last_word = agents.sent[DEAD]
        assert r["ended_at"].timestamp() >= last_word + LOST_AFTER_S - 2.0  # not before its silence
        kinds = db_rows(db_url, "SELECT kind FROM agent_checkpoints WHERE task_id = $1 ORDER BY seq", dead)
        assert "stalled" in [k["kind"] for k in kinds]
        others = rows()
        assert all(others[agents.task_id(n)]["status"] != "lost" for n in range(N) if n != DEAD), others
    finally:
        agents.close()


@pytest.fixture(scope="module")
def survive_then_lost(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cases]:
    hows = _selected(request, "test_open_live_tasks_survive_a_restart_and_a_dead_agent_is_then_lost")
    cases = Cases(pg_server, tmp_path_factory, _survive_then_lost, hows)
    try:
        yield cases
    finally:
        cases.close()


# Slow by design: each case's serve is restarted, then its dead agent's task
# waits out the lost window; the two cases run at once, so the windows overlap.
@pytest.mark.parametrize("how", HOWS)
def test_open_live_tasks_survive_a_restart_and_a_dead_agent_is_then_lost(survive_then_lost: Cases, how: str) -> None:
    survive_then_lost.verdict(how)


def _stalled_then_restarted(proc: ServeProcess, db_url: str, how: str) -> None:
    # A stall and its end are events of the task that no journaled record
    # holds: the restart rebuilds the task from its records alone, and its
    # next view must still be newer than the row those events wrote.
    agents = Agents(f"stalled-{how}")
    agents.port = proc.http
    quiet = agents.task_id(0)

    def row() -> dict[str, Any]:
        got = db_rows(db_url, "SELECT * FROM agent_tasks WHERE task_id = $1", quiet)
        return got[0] if got else {}

    def kinds() -> list[str]:
        got = db_rows(db_url, "SELECT kind FROM agent_checkpoints WHERE task_id = $1 ORDER BY seq", quiet)
        return [r["kind"] for r in got]

    try:
        agents.start()
        wait_until(lambda: row().get("progress") == 10.0, 60, "the task written", every=0.5)
        agents.beating.discard(0)
        wait_until(lambda: "stalled" in kinds(), 60, "the task to stall", every=0.5)
        agents.beating.add(0)
        wait_until(lambda: "resumed" in kinds(), 60, "the task to resume", every=0.5)
        _restart(proc, how)
        agents.port = proc.http
        agents.must_say(0, cv.LIVE_TASK_UPDATE, {cv.PROGRESS: 90.0, cv.MESSAGE: "after the restart"})
        wait_until(lambda: row().get("progress") == 90.0, 60, "the new progress after the restart", every=0.5)
        assert row()["message"] == "after the restart"
    finally:
        agents.close()


@pytest.fixture(scope="module")
def stalled_then_restarted(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cases]:
    hows = _selected(request, "test_a_task_that_stalled_before_a_restart_takes_new_progress_after_it")
    cases = Cases(pg_server, tmp_path_factory, _stalled_then_restarted, hows)
    try:
        yield cases
    finally:
        cases.close()


# Slow by design: each case's task waits out the stall window before its
# serve's restart; the two cases run at once, so the windows overlap.
@pytest.mark.parametrize("how", HOWS)
def test_a_task_that_stalled_before_a_restart_takes_new_progress_after_it(
    stalled_then_restarted: Cases, how: str
) -> None:
    stalled_then_restarted.verdict(how)
