"""Two `spanvisor serve` replicas, one PostgreSQL, the fake Slack.

100 tasks' spans (in end order, as a Collector batches them) are sprayed over
both replicas at random: exactly 100 Slack parents, every task finished once
and every checkpoint row once. Then the same with one replica SIGKILLed
mid-stream, the client resending what was not acknowledged, and the replica
restarted on its data directory (its journal replays what it acknowledged).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from agent_traces import request_for, task_spans

pytestmark = pytest.mark.slow

N_TASKS = 100


def _need(module: str) -> None:
    # The sinks these tests need are part of the project: a failing import is a failure.
    __import__(module)


class FakeSlackThread:
    def __init__(self) -> None:
        from tests.fakes.slack_api import FakeSlack

        self.fake = FakeSlack(channel_rate=500, channel_burst=500)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Replica:
    def __init__(self, data_dir: Path, db_url: str, slack_url: str) -> None:
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "SPANVISOR_DATA_DIR": str(data_dir),
            "SPANVISOR_DATABASE_URL": db_url,
            "SPANVISOR_SINKS": "postgres,slack",
            "SPANVISOR_STATE_STORE": "postgres",
            "SLACK_BOT_TOKEN": "xoxb-replicas",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": slack_url,
            "SPANVISOR_OTLP_BIND": "127.0.0.1",
            "SPANVISOR_OTLP_HTTP_PORT": "0",
            "SPANVISOR_OTLP_GRPC_PORT": "0",
            "SPANVISOR_ADMIN_PORT": "0",
            "SPANVISOR_SHUTDOWN_TIMEOUT": "10s",
            # The fake allows 500 posts/s; Slack's real ~1/s pacing would make
            # 100 parents take 100 s.
            "SPANVISOR_SLACK_CHANNEL_INTERVAL": "10ms",
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
            "SPANVISOR_SLACK_REPLY_INTERVAL": "10ms",
        }
        self.start()

    def start(self) -> None:
        self.log = self.data_dir / f"serve-{time.monotonic_ns()}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"http=(\d+) grpc=(\d+) admin=(\d+)", self.log.read_text())
            if m:
                self.http = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("serve did not start:\n" + self.log.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}/v1/traces"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _post(url: str, body: bytes) -> bool:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _batches(seed: int) -> list[bytes]:
    spans = task_spans(N_TASKS, seed=seed, checkpoints=3, plain_per_step=2)
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(spans):
        n = rng.randint(5, 40)
        out.append(request_for(spans[i : i + n]).SerializeToString())
        i += n
    return out


def _db(url: str, sql: str) -> Any:
    import asyncpg

    async def q() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(q())


def _wait_complete(db_url: str, slack: FakeSlackThread, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = _db(db_url, "SELECT count(*) AS n FROM agent_tasks WHERE status = 'complete'")[0]["n"]
        if done >= N_TASKS and len(slack.fake.parents()) >= N_TASKS:
            time.sleep(1.0)  # let anything late (a duplicate would be) arrive
            return
        time.sleep(0.5)


def _check(db_url: str, slack: FakeSlackThread, seed: int) -> None:
    tasks = _db(db_url, "SELECT task_id, status FROM agent_tasks")
    want = {f"T{seed}-{i}" for i in range(N_TASKS)}
    assert {r["task_id"] for r in tasks} == want
    assert all(r["status"] == "complete" for r in tasks)
    parents = slack.fake.parents()
    assert len(parents) == N_TASKS, f"{len(parents)} Slack parents for {N_TASKS} tasks"
    # Every agent.checkpoint span event ("step k of T") gives exactly one row.
    # (Rows the tracker derives from state changes may differ from a single
    # process's, since each replica sees part of a task: not checked here.)
    rows = _db(
        db_url,
        "SELECT task_id, message, count(*) AS n FROM agent_checkpoints"
        " WHERE kind = 'checkpoint' AND source = 'event' GROUP BY task_id, message",
    )
    got = {(r["task_id"], r["message"]): r["n"] for r in rows}
    expected = {(t, f"step {k} of {t}") for t in want for k in range(3)}
    assert set(got) == expected
    assert set(got.values()) == {1}


def test_two_replicas_spray(tmp_path: Path, pg_server: Any) -> None:
    _need("spanvisor_postgres.sink")
    _need("spanvisor_slack.sink")
    db_url = pg_server.database()
    slack = FakeSlackThread()
    replicas = [Replica(tmp_path / f"r{i}", db_url, slack.base_url) for i in range(2)]
    try:
        rng = random.Random(5)
        for body in _batches(seed=5):
            while not _post(rng.choice(replicas).url, body):
                time.sleep(0.1)
        _wait_complete(db_url, slack)
        _check(db_url, slack, seed=5)
    finally:
        for r in replicas:
            r.stop()
        slack.close()


def test_sigkill_mid_stream_resend_unacknowledged(tmp_path: Path, pg_server: Any) -> None:
    _need("spanvisor_postgres.sink")
    _need("spanvisor_slack.sink")
    db_url = pg_server.database()
    slack = FakeSlackThread()
    replicas = [Replica(tmp_path / f"r{i}", db_url, slack.base_url) for i in range(2)]
    try:
        rng = random.Random(9)
        batches = _batches(seed=9)
        killed = False
        for k, body in enumerate(batches):
            if not killed and k == len(batches) // 2:
                replicas[0].proc.kill()  # SIGKILL: no drain, no goodbye
                replicas[0].proc.wait(10)
                killed = True
            target = rng.choice(replicas)
            # The client resends every batch it got no 2xx for, to a live replica.
            while not _post(target.url, body):
                target = replicas[1]
                time.sleep(0.05)
        replicas[0].start()  # same data dir: its journal replays what it acknowledged
        _wait_complete(db_url, slack)
        _check(db_url, slack, seed=9)
    finally:
        for r in replicas:
            r.stop()
        slack.close()
