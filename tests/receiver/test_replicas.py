"""Two `spanvisor serve` replicas, one PostgreSQL, the fake Slack.

100 tasks' spans (in end order, as a Collector batches them) are sprayed over
both replicas at random: exactly 100 Slack parents, every task finished once
and every checkpoint row once. Then the same with one replica SIGKILLed
mid-stream, the client resending what was not acknowledged, and the replica
restarted on its data directory (its journal replays what it acknowledged).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from agent_traces import request_for, task_spans
from serve_proc import FakeSlackThread, ServeProcess, post, slack_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

N_TASKS = 100


def _need(module: str) -> None:
    # The sinks these tests need are part of the project: a failing import is a failure.
    __import__(module)


def _replica(data_dir: Path, db_url: str, slack_url: str) -> ServeProcess:
    env = slack_env(
        data_dir,
        slack_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_SINKS="postgres,slack",
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SHUTDOWN_TIMEOUT="10s",
    )
    return ServeProcess(data_dir, env)


def _send(body: bytes, targets: list[ServeProcess], timeout: float = 60) -> None:
    """Post until some live replica answers 2xx, as a client resending what got none."""
    deadline = time.monotonic() + timeout
    while True:
        live = [t for t in targets if t.alive] or targets
        if post(live[0].url, body):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"no replica accepted a batch within {timeout:.0f}s")
        time.sleep(0.05)


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


def _wait_complete(db_url: str, slack: FakeSlackThread, replicas: list[ServeProcess], timeout: float = 90) -> None:
    def done() -> bool:
        n = _db(db_url, "SELECT count(*) AS n FROM agent_tasks WHERE status = 'complete'")[0]["n"]
        return bool(n >= N_TASKS and len(slack.parents()) >= N_TASKS)

    wait_until(done, timeout, f"{N_TASKS} complete tasks and Slack parents", every=0.5)
    # A late duplicate can only come from a running replica: stop them all
    # (a graceful stop drains every sink), then nothing more can arrive.
    for r in replicas:
        assert r.terminate() == 0, r.log_text()


def _check(db_url: str, slack: FakeSlackThread, seed: int) -> None:
    tasks = _db(db_url, "SELECT task_id, status FROM agent_tasks")
    want = {f"T{seed}-{i}" for i in range(N_TASKS)}
    assert {r["task_id"] for r in tasks} == want
    assert all(r["status"] == "complete" for r in tasks)
    parents = slack.parents()
    assert len(parents) == N_TASKS, f"{len(parents)} Slack parents for {N_TASKS} tasks"
    assert slack.parent_posts() == N_TASKS
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
    replicas = [_replica(tmp_path / f"r{i}", db_url, slack.base_url) for i in range(2)]
    try:
        rng = random.Random(5)
        for body in _batches(seed=5):
            _send(body, rng.sample(replicas, 2))
        _wait_complete(db_url, slack, replicas)
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
    replicas = [_replica(tmp_path / f"r{i}", db_url, slack.base_url) for i in range(2)]
    try:
        rng = random.Random(9)
        batches = _batches(seed=9)
        for k, body in enumerate(batches):
            if k == len(batches) // 2:
                replicas[0].kill()
            # The client resends every batch it got no 2xx for, to a live replica.
            _send(body, rng.sample(replicas, 2))
        replicas[0].start()  # same data dir: its journal replays what it acknowledged
        _wait_complete(db_url, slack, replicas)
        _check(db_url, slack, seed=9)
    finally:
        for r in replicas:
            r.stop()
        slack.close()
