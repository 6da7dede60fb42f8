"""End to end through `spanvisor serve`: OTLP in, PostgreSQL rows and Slack calls out.

    .venv/bin/python benchmarks/bench_e2e.py          # about 60 s

1. Latency, not rate-limited: one small task every 5 s is POSTed as OTLP to
   a `spanvisor serve` (sinks postgres + slack, default intervals) backed by
   the embedded PostgreSQL and the local fake Slack. For each task: time from
   the 200 to its finished row in `agent_tasks`, and to the fake Slack
   receiving its parent `chat.postMessage`. p50 and p95.
2. Throughput: four clients POST tasks with many checkpoints (sink:
   postgres only); checkpoint rows visible in PostgreSQL per second.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver")]

from agent_traces import request_for, task_spans  # type: ignore[import-not-found]  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402

from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

SPACING_S = 5.0


class SlackThread:
    def __init__(self) -> None:
        self.fake = FakeSlack()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def parent_at(self, task_id: str) -> float | None:
        for c in list(self.fake.calls):
            meta = c.args.get("metadata")
            if c.method == "chat.postMessage" and isinstance(meta, dict | str) and task_id in str(meta):
                return c.at
        return None

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def serve(
    data_dir: Path, db_url: str, sinks: str, slack_url: str | None, **extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        **extra,
        "SPANVISOR_DATA_DIR": str(data_dir),
        "SPANVISOR_DATABASE_URL": db_url,
        "SPANVISOR_SINKS": sinks,
        "SPANVISOR_OTLP_BIND": "127.0.0.1",
        "SPANVISOR_OTLP_HTTP_PORT": "0",
        "SPANVISOR_OTLP_GRPC_PORT": "0",
        "SPANVISOR_ADMIN_PORT": "0",
    }
    if slack_url:
        env |= {
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": slack_url,
        }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"http=(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError("serve did not start:\n" + log.read_text())


def post(port: int, body: bytes) -> int:
    """POST until acknowledged, as a Collector would; returns how many 503s it took."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )
    refused = 0
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                if resp.status == 200:
                    return refused
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise
            refused += 1
            time.sleep(float(exc.headers.get("Retry-After") or 0.5))


async def query(url: str, sql: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def latency(base: Path, db_url: str, tasks: int) -> tuple[list[float], list[float]]:
    import asyncpg

    slack = SlackThread()
    proc, port = serve(base / "lat", db_url, "postgres,slack", slack.base_url)
    to_row: list[float] = []
    to_slack: list[float] = []

    async def watch(task_id: str, acked: float) -> tuple[float, float]:
        conn = await asyncpg.connect(db_url)
        row_at = slack_at = None
        try:
            while (row_at is None or slack_at is None) and time.monotonic() - acked < 30:
                if row_at is None and await conn.fetchval(
                    "SELECT 1 FROM agent_tasks WHERE task_id = $1 AND ended_at IS NOT NULL", task_id
                ):
                    row_at = time.monotonic()
                if slack_at is None:
                    slack_at = slack.parent_at(task_id)
                await asyncio.sleep(0.005)
        finally:
            await conn.close()
        return (row_at or float("nan")) - acked, (slack_at or float("nan")) - acked

    try:
        for i in range(tasks):
            task_id = f"lat-{i}"
            body = request_for(task_spans_for(task_id)).SerializeToString()
            post(port, body)
            acked = time.monotonic()
            r, s = asyncio.run(watch(task_id, acked))
            to_row.append(r)
            to_slack.append(s)
            # One task every 5 s: its parent and its thread replies stay within
            # Slack's ~1 post/s per channel, so this measures spanvisor, not pacing.
            time.sleep(max(0.0, SPACING_S - (time.monotonic() - acked)))
    finally:
        proc.terminate()
        proc.wait(30)
        slack.close()
    return to_row, to_slack


def task_spans_for(task_id: str) -> Any:
    import random

    from agent_traces import agent_task, make_provider

    tp, cap = make_provider()
    agent_task(tp.get_tracer("agent"), task_id, random.Random(1), checkpoints=3, plain_per_step=2)
    tp.shutdown()
    return cap.spans


def throughput(
    base: Path, db_url: str, requests: int, clients: int, replicas: int = 1, seed: int = 500
) -> tuple[float, float, int]:
    """(checkpoint events/s, all timeline rows/s, 503s) until every row is visible."""
    # A short Retry-After keeps the clients close behind the sink: with the
    # default 2 s, clients mostly sleep once the durable queue pushes back.
    servers = [
        serve(base / f"tp{replicas}-{r}", db_url, "postgres", None, SPANVISOR_RETRY_AFTER="0.2s")
        for r in range(replicas)
    ]
    bodies = [
        request_for(task_spans(4, seed=seed + i, checkpoints=40, plain_per_step=1)).SerializeToString()
        for i in range(requests)
    ]
    expected = requests * 4 * 40  # agent.checkpoint events; model calls and state changes add rows too
    count_events = "SELECT count(*) FROM agent_checkpoints WHERE source = 'event'"
    before_events = asyncio.run(query(db_url, count_events))
    before_rows = asyncio.run(query(db_url, "SELECT count(*) FROM agent_checkpoints"))
    refused = [0] * clients
    t0 = time.monotonic()

    def client(k: int) -> None:
        port = servers[k % replicas][1]
        for body in bodies[k::clients]:
            refused[k] += post(port, body)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked_s = time.monotonic() - t0
    try:
        n = 0
        while time.monotonic() - t0 < 180:
            n = asyncio.run(query(db_url, count_events)) - before_events
            if n >= expected:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        rows = asyncio.run(query(db_url, "SELECT count(*) FROM agent_checkpoints")) - before_rows
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
    print(
        f"  ({replicas} replica(s): all {requests} requests acknowledged after {acked_s:.1f} s; every row visible after {elapsed:.1f} s)"
    )
    return n / elapsed, rows / elapsed, sum(refused)


async def migrated(url: str) -> None:
    import asyncpg

    from spanvisor_postgres.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-e2e-"))
    pg = EmbeddedPostgres(base / "postgres")
    try:
        url = pg.acquire()
        asyncio.run(migrated(url))  # before serve starts, so the first query finds the tables
        to_row, to_slack = latency(base, url, tasks=8)
        events_rate, rows_rate, refused = throughput(base, url, requests=150, clients=4)
        events_2, rows_2, refused_2 = throughput(base, url, requests=150, clients=4, replicas=2, seed=5000)
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)
    print(
        "receipt (HTTP 200) -> finished task row in PostgreSQL: "
        f"p50 {pct(to_row, 50) * 1000:.0f} ms, p95 {pct(to_row, 95) * 1000:.0f} ms"
    )
    print(
        "receipt (HTTP 200) -> parent chat.postMessage at the fake Slack: "
        f"p50 {pct(to_slack, 50) * 1000:.0f} ms, p95 {pct(to_slack, 95) * 1000:.0f} ms"
    )
    for label, rows, events, refusals in (
        ("1 replica ", rows_rate, events_rate, refused),
        ("2 replicas", rows_2, events_2, refused_2),
    ):
        print(
            f"{label}: timeline rows persisted end to end (4 clients, sink postgres): {rows:,.0f} rows/s "
            f"(of which agent.checkpoint events {events:,.0f}/s; {refusals} backpressure 503s; goal >= 10,000)"
        )


if __name__ == "__main__":
    main()
