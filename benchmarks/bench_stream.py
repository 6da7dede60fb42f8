"""The event stream (``GET /v1/events``): latency to a client, and what
1,000 connected clients cost the ingest.

    .venv/bin/python benchmarks/bench_stream.py [--tasks 200] [--clients 1000] [--quick]

1. **Event → SSE client, one process**: a real receiver-path pipeline with
   the stream sink and a timing sink (batch delay 0, like the stream's: it
   records when the pipeline dispatched each event), one aiohttp SSE client
   on loopback; per event, the client's arrival time minus the dispatch
   time; p50/p95/p99 over every event of ``--tasks`` tasks posted as OTLP.
2. **Across replicas**: two pipelines and receivers on one (embedded)
   PostgreSQL with the PostgreSQL feed; spans posted to B, the client on A;
   dispatch on B to arrival on A (one process, one clock: the path is the
   database's insert, NOTIFY and read back). Then one pipeline with the
   PostgreSQL feed and the PostgreSQL sink, as a default ``serve`` with a
   database runs them: the feed's rows wait for the audit writer's next
   transaction.
3. **1,000 clients**: ingest throughput (spans posted as OTLP/HTTP until the
   pipeline has made every task's events) with no stream client, then with
   ``--clients`` clients connected and reading every event, then reading
   only ``task_finished`` (a subprocess, so their parsing is not this
   process's GIL, but on the same cores), one run each; the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline  # noqa: E402
from tests.stream._sse import Frame, read  # noqa: E402
from tests.stream.conftest import AUTH, TOKEN, Served, tasks  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

from spanvisor.events import Event, TaskFinished  # noqa: E402
from spanvisor.sink import SinkResult  # noqa: E402
from spanvisor.testing import InMemorySink  # noqa: E402


class TimingSink(InMemorySink):
    """When the pipeline dispatched each event (no batch delay)."""

    name = "timing"
    batch_delay_s = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, float] = {}

    async def export(self, events: Sequence[Event]) -> SinkResult:
        now = time.perf_counter()
        for e in events:
            self.at[e.event_id] = now
        return await super().export(events)


def serve(data: Path, audit: bool = False, **env: str) -> tuple[Served, TimingSink]:
    """``audit``: the PostgreSQL sink runs too, as in a default ``serve``
    with a database: its transactions then carry the feed's rows."""
    from spanvisor.stream.sink import StreamSink

    timing, stream = TimingSink(), StreamSink()
    sinks: list[Any] = [timing, stream]
    if audit:
        from spanvisor_postgres import PostgresSink

        sinks.append(PostgresSink())
    pipeline = make_pipeline(data, sinks, plugins=True, SPANVISOR_OTLP_TOKEN=TOKEN, **env)
    receiver = RunningReceiver(pipeline, local_settings(data, token=TOKEN))
    return Served(receiver, timing, stream), timing


def latencies(client_on: Served, post_to: Served, timing: TimingSink, n_tasks: int, seed: int) -> list[float]:
    arrived: dict[str, float] = {}

    async def go() -> None:
        def seen(frames: list[Frame]) -> bool:
            now = time.perf_counter()
            for f in frames[len(arrived) :]:
                arrived[f.event_id] = now
            return sum(f.event == "task_finished" for f in frames) >= n_tasks

        reader = asyncio.ensure_future(
            read(f"{client_on.events_url}?after={client_on.head()}", headers=dict(AUTH), until=seen, timeout=300)
        )
        await asyncio.sleep(0.3)
        spans = tasks(n_tasks, seed, checkpoints=3, plain_per_step=2)
        step = max(1, len(spans) // 50)
        for i in range(0, len(spans), step):  # a steady trickle, not one burst
            await asyncio.to_thread(post_to.post, spans[i : i + step])
            await asyncio.sleep(0.02)
        await reader

    asyncio.run(go())
    return [(arrived[i] - timing.at[i]) * 1000 for i in arrived if i in timing.at]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def report(what: str, ms: list[float]) -> None:
    print(
        f"{what}: {len(ms)} events, p50 {statistics.median(ms):.1f} ms, p95 {pct(ms, 0.95):.1f} ms, "
        f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms",
        flush=True,
    )


CLIENTS = r"""
import asyncio, sys, aiohttp
async def one(session, url, ready):
    async with session.get(url, headers={"Authorization": "Bearer %s"}) as r:
        ready.append(r.status)
        async for _ in r.content.iter_any():
            pass
async def main(url, n):
    ready = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        tasks = [asyncio.ensure_future(one(s, url, ready)) for _ in range(n)]
        while len(ready) < n:
            await asyncio.sleep(0.05)
        print("connected", sum(x == 200 for x in ready), flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def ingest(s: Served, timing: TimingSink, n_tasks: int, seed: int) -> float:
    spans = tasks(n_tasks, seed, checkpoints=3, plain_per_step=8)
    bodies = [spans[i : i + 200] for i in range(0, len(spans), 200)]
    before = len(timing.of_type(TaskFinished))
    start = time.perf_counter()
    for b in bodies:
        s.post(b)
    wait_until(lambda: len(timing.of_type(TaskFinished)) >= before + n_tasks, 300, "every task")
    return len(spans) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--parts", default="latency,replicas,load", help="comma-separated: latency, replicas, load")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20 tasks, 50 clients")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.clients = 20, 50
    base = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        parts = set(args.parts.split(","))
        if "latency" in parts:
            s, timing = serve(base / "one")
            try:
                report("event -> SSE client, one process", latencies(s, s, timing, args.tasks, 1))
            finally:
                s.receiver.close()
        if "replicas" in parts:
            replicas(base, args.tasks)
        if "load" in parts:
            load(base, args.tasks, args.clients)
        print(f"({os.cpu_count()} cores, Python {sys.version.split()[0]}, one run each)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def replicas(base: Path, n_tasks: int) -> None:
    from spanvisor_postgres.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(base / "postgres", durable=False)
    url = pg.acquire()
    try:
        env = {"SPANVISOR_DATABASE_URL": url, "SPANVISOR_STREAM_FEED": "postgres"}
        a, _ = serve(base / "a", SPANVISOR_REPLICA_ID="a", **env)
        b, timing_b = serve(base / "b", SPANVISOR_REPLICA_ID="b", **env)
        try:
            report("event -> SSE client, across replicas (PostgreSQL feed)", latencies(a, b, timing_b, n_tasks, 2))
        finally:
            a.receiver.close()
            b.receiver.close()
        # The default serve with a database: the feed's rows ride in the
        # audit writer's transactions (its batch delay, SPANVISOR_BATCH_DELAY).
        c, timing_c = serve(base / "c", audit=True, SPANVISOR_REPLICA_ID="c", **env)
        try:
            report(
                "event -> SSE client, one process, PostgreSQL feed with the PostgreSQL sink",
                latencies(c, c, timing_c, n_tasks, 12),
            )
        finally:
            c.receiver.close()
    finally:
        pg.release()


def load(base: Path, n_tasks: int, clients: int) -> None:
    s, timing = serve(base / "load", SPANVISOR_STREAM_MAX_CLIENTS=str(clients + 10))
    try:
        ingest(s, timing, 20, 3)  # warm-up
        alone = ingest(s, timing, n_tasks, 4)
        print(f"ingest, no stream client: {alone:,.0f} spans/s", flush=True)
        # Every client reading every event, then clients that follow only the ends.
        for seed, (what, query) in enumerate((("every event", ""), ("task_finished only", "?kind=task_finished")), 5):
            child = subprocess.Popen(
                [sys.executable, "-c", CLIENTS % TOKEN, s.events_url + query, str(clients)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            with_clients = ingest(s, timing, n_tasks, seed)
            dropped = s.receiver.pipeline.stats.value("dropped_total", reason="stream_slow_client", sink="stream")
            child.terminate()
            child.wait(10)
            wait_until(lambda: s.receiver.pipeline.stats.value("stream_clients") == 0, 60, "the clients gone")
            print(f"ingest, {line} clients reading {what}: {with_clients:,.0f} spans/s; "
                  f"ratio {with_clients / alone:.2f}; clients cut off so far: {dropped:.0f}", flush=True)  # fmt: skip
    finally:
        s.receiver.close()


if __name__ == "__main__":
    threading.excepthook = lambda a: print("thread error:", a.exc_value, file=sys.stderr)
    main()
