"""PostgreSQL audit trail: rows/s persisted (one statement, COPY, executemany), export-to-visible latency.

Run: .venv/bin/python benchmarks/bench_postgres.py [--rows 100000] [--calls] [--methods copy]

Starts its own embedded PostgreSQL (fsync on, as in production use) in a
temporary directory, drives ``PostgresSink.export`` the way the pipeline
does (batches of SPANVISOR_BATCH_SIZE = 512 events) and prints one table:
``unnest`` (the default: the batch in one statement, one round trip),
``copy`` (COPY into staging tables) and ``executemany``.
Takes well under a minute on a 2-core machine. ``--calls`` makes every
second checkpoint a model call (its tokens and cost in its attributes) and
finishes every task at the end, as agents' streams are; ``--methods`` runs
only the write methods named (comma-separated).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spanvisor.config import Config  # noqa: E402
from spanvisor.events import Checkpoint, Event, TaskFinished, TaskStarted, TaskView, stable_id  # noqa: E402
from spanvisor.sink import SinkContext, SinkResult  # noqa: E402
from spanvisor.statestores.memory import InMemoryStateStore  # noqa: E402
from spanvisor.stats import PipelineStats  # noqa: E402
from spanvisor_postgres import PostgresSink  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402
from spanvisor_postgres.migrate import migrate  # noqa: E402
from spanvisor_postgres.settings import SETTINGS  # noqa: E402

T0 = time.time_ns()


def checkpoints(tasks: int, per_task: int, tag: str, calls: bool = False) -> list[Event]:
    """Realistic checkpoints: tasks interleaved, each with a message and a few attributes
    (``calls``: every second one a model call, and every task finished at the end)."""
    out: list[Event] = []
    views = []
    for t in range(tasks):
        v = TaskView(
            task_id=stable_id(tag, t),
            trace_id=stable_id(tag, "trace", t),
            root_span_id=f"{t:016x}",
            agent_id=f"agent-{t % 7}",
            agent_name="Bench",
            task_name=f"Benchmark task {t}",
            repo="acme/bench",
            status="working",
            steps=("plan", "act", "verify"),
            model="claude-sonnet-4",
            context_limit=200_000,
            started_ns=T0 + t,
            updated_ns=T0 + t,
        )
        views.append(v)
        out.append(TaskStarted(event_id=stable_id(tag, t, "start"), time_ns=T0 + t, task=v))
    for i in range(per_task):
        for t, prev in enumerate(views):
            now = T0 + (i + 1) * 1_000_000 + t
            v = dataclasses.replace(
                prev,
                progress=100 * i / per_task,
                step=prev.steps[i % 3],
                message=f"Processed record batch {i} of {per_task}",
                context_tokens=1000 + i * 10,
                input_tokens=i * 500,
                output_tokens=i * 50,
                updated_ns=now,
            )
            views[t] = v
            call = calls and i % 2 == 1
            attributes: dict[str, object] = {"batch": i, "tool": "sql"}
            if call:
                attributes = {"model": "gpt-4o", "input_tokens": 500, "output_tokens": 50, "cost_usd": 0.00175}
                attributes["cost_source"] = "table"
            out.append(
                Checkpoint(
                    event_id=stable_id(tag, t, i),
                    time_ns=now,
                    task=v,
                    source="model_call" if call else "event",
                    changed=("tokens",) if call else ("progress", "message"),
                    attributes=attributes,
                )
            )
    if calls:
        end = T0 + (per_task + 1) * 1_000_000
        for t, prev in enumerate(views):
            v = dataclasses.replace(prev, status="complete", ended_ns=end + t, updated_ns=end + t)
            out.append(
                TaskFinished(
                    event_id=stable_id(tag, t, "end"), time_ns=end + t, task=v, outcome="complete", duration_s=1.0
                )
            )
    return out


def config(data_dir: Path, url: str) -> Config:
    return Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(data_dir), database_url=url)


async def fresh_db(admin_url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    return url


async def throughput(
    admin_url: str, tmp: Path, method: str, rows: int, batch: int, tasks: int = 200, calls: bool = False
) -> float:
    url = await fresh_db(admin_url, f"bench_{method}_{tasks}")
    events = checkpoints(tasks, rows // tasks, method, calls)
    sink = PostgresSink(write_method=method)  # type: ignore[arg-type]
    await sink.start(SinkContext(config(tmp / method, url), InMemoryStateStore(), PipelineStats()))
    n_rows = sum(1 for e in events if isinstance(e, Checkpoint))
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        assert await sink.export(events[i : i + batch]) is SinkResult.SUCCESS
    elapsed = time.perf_counter() - t0
    assert sink.outbox is not None and sink.outbox.size == 0
    await sink.shutdown(5)
    return n_rows / elapsed


async def latency(admin_url: str, tmp: Path, rate: float, seconds: float) -> list[float]:
    """At ``rate`` checkpoints/s, each exported as it comes: time until another connection sees it."""
    import asyncpg

    url = await fresh_db(admin_url, "bench_latency")
    events = checkpoints(10, int(rate * seconds / 10) + 1, "lat")
    sink = PostgresSink()
    await sink.start(SinkContext(config(tmp / "lat", url), InMemoryStateStore(), PipelineStats()))
    watcher = await asyncpg.connect(url)
    samples: list[float] = []
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for e in events[: int(rate * seconds)]:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        t0 = time.perf_counter()
        await sink.export([e])
        if isinstance(e, Checkpoint):
            # Polling from another connection is the measurement itself.
            while not await watcher.fetchval("SELECT 1 FROM agent_checkpoints WHERE event_id = $1", e.event_id):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            samples.append(time.perf_counter() - t0)
    await watcher.close()
    await sink.shutdown(5)
    return samples


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--calls", action="store_true", help="every second checkpoint a model call; tasks finish")
    parser.add_argument("--methods", default="unnest,copy,executemany", help="comma-separated write methods")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    kind = "checkpoint and model-call rows/s" if args.calls else "checkpoint rows/s"
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-pg-"))
    server = EmbeddedPostgres(base / "postgres")  # durable: fsync on
    try:
        t0 = time.perf_counter()
        url = await asyncio.to_thread(server.acquire)
        startup = time.perf_counter() - t0
        admin = url.rsplit("/", 1)[0] + "/postgres"
        results: list[tuple[str, str, str]] = [
            ("embedded server first start (initdb + start)", f"{startup:.2f} s", "-")
        ]
        # 10 tasks at once is a busy team's agents; 200 interleaved tasks is
        # the harsh case, where each batch also upserts ~200 task rows.
        for tasks in (10, 200):
            for method in methods:
                rate = await throughput(admin, base, method, args.rows, args.batch, tasks, args.calls)
                results.append(
                    (
                        f"{kind}, {tasks} tasks, batches of {args.batch}, {method}",
                        f"{rate:,.0f}",
                        ">= 20,000",
                    )
                )
        lat = await latency(admin, base, rate=100.0, seconds=5.0)
        results.append(("export -> visible row at 100 checkpoints/s, p50", f"{pct(lat, 50) * 1000:.1f} ms", "-"))
        results.append(("export -> visible row at 100 checkpoints/s, p95", f"{pct(lat, 95) * 1000:.1f} ms", "< 1 s"))
        results.append(("export -> visible row at 100 checkpoints/s, max", f"{max(lat) * 1000:.1f} ms", "-"))
    finally:
        await asyncio.to_thread(server.release)
        shutil.rmtree(base, ignore_errors=True)
    widths = [max(len(r[i]) for r in [("measure", "result", "goal"), *results]) for i in range(3)]
    print(f"{'measure':<{widths[0]}}  {'result':>{widths[1]}}  {'goal':<{widths[2]}}")
    print("  ".join("─" * w for w in widths))
    for m, r, g in results:
        print(f"{m:<{widths[0]}}  {r:>{widths[1]}}  {g:<{widths[2]}}")


if __name__ == "__main__":
    asyncio.run(main())
