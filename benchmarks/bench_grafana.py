"""Grafana annotation sink: throughput and calls per task, against the local fake.

    .venv/bin/python benchmarks/bench_grafana.py [--tasks 500] [--checkpoints 1000]

Reports, in one run:
- tasks/s through one sink (TaskStarted then TaskFinished: one POST and one
  PATCH each) over loopback HTTP to the fake Grafana, and p50/p95 latency of
  one annotation call;
- HTTP calls per task with 0 and N checkpoints per task (checkpoints must cost
  no call), and the sink's cost per ignored event.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests" / "grafana"):
    sys.path.insert(0, str(p))

from dataclasses import replace  # noqa: E402

from grafana_helpers import T0, finished, start_sink, started, view  # noqa: E402
from tests.fakes.grafana_api import FakeGrafana  # noqa: E402

from spanvisor.events import Checkpoint, Event  # noqa: E402


def checkpoints(task_id: str, n: int) -> list[Event]:
    v = view(task_id)
    return [
        Checkpoint(event_id=f"{task_id}-cp{i}", time_ns=T0 + i, task=replace(v, progress=i % 100)) for i in range(n)
    ]


async def main(tasks: int, per_task: int) -> None:
    async with FakeGrafana() as fake:
        sink = await start_sink(fake)
        latencies: list[float] = []
        t0 = time.perf_counter()
        for i in range(tasks):
            for ev in (started(f"b{i}"), finished(f"b{i}")):
                s = time.perf_counter()
                await sink.export([ev])
                latencies.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
        calls_plain = len(fake.calls("POST")) + len(fake.calls("PATCH"))
        q = statistics.quantiles(latencies, n=100)
        print(f"tasks/s (POST+PATCH each, loopback fake): {tasks / elapsed:,.0f}")
        print(f"annotation call latency: p50 {q[49] * 1e3:.2f} ms, p95 {q[94] * 1e3:.2f} ms")
        print(f"HTTP calls per task, 0 checkpoints: {calls_plain / tasks:.2f}")

        fake.requests.clear()
        batch: list[Event] = []
        n_tasks = 20
        for i in range(n_tasks):
            batch += [started(f"c{i}"), *checkpoints(f"c{i}", per_task), finished(f"c{i}")]
        ignored = [e for e in batch if isinstance(e, Checkpoint)]
        t1 = time.perf_counter()
        await sink.export(ignored)
        per_event_us = (time.perf_counter() - t1) / len(ignored) * 1e6
        await sink.export(batch)
        calls = len(fake.calls("POST")) + len(fake.calls("PATCH"))
        print(f"HTTP calls per task, {per_task} checkpoints: {calls / n_tasks:.2f}")
        print(f"cost per ignored event: {per_event_us:.2f} µs")
        await sink.shutdown(1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--checkpoints", type=int, default=1000)
    args = ap.parse_args()
    asyncio.run(main(args.tasks, args.checkpoints))
