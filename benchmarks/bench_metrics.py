"""How fast the Prometheus sink absorbs events, and how long a scrape takes.

    .venv/bin/python benchmarks/bench_metrics.py            # full run
    .venv/bin/python benchmarks/bench_metrics.py --quick    # smoke run

Reports, in one run:
- events/s (of CPU time) through ``PrometheusSink.export`` (batches of 512, as the pipeline
  hands them) for a load of agent spans as ``spanvisor serve`` sees it (every
  span a model call with its model, tokens and cost, or a tool call: nearly
  every event a checkpoint), best of a few rounds;
- events/s for whole task lifecycles, for new events and for replayed ones
  (dedup by event id);
- time and size of one scrape (plain text and OpenMetrics) with 50 agents at
  the default label cap, and with the cap raised to 1000 agents, each time
  with many tasks open (the gauges are computed over open tasks at scrape).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from spanvisor.events import Checkpoint, Event, TaskStarted, stable_id
from spanvisor_prometheus import PrometheusSink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "prometheus"))
from prom_streams import S, lifecycle, make_ctx, view

BATCH = 512
T0 = 1_700_000_000 * S


def stream(agents: int, tasks: int, checkpoints: int, open_every: int) -> list[Event]:
    """``tasks`` tasks spread over ``agents``; every ``open_every``-th stays open."""
    out: list[Event] = []
    for n in range(tasks):
        outcome = None if n % open_every == 0 else ("error" if n % 7 == 0 else "complete")
        out += lifecycle(
            f"agent-{n % agents:04d}",
            n,
            T0 + n * S,
            checkpoints=checkpoints,
            outcome=outcome,
            peak_ratio=0.3 + (n % 7) / 10,
            repo=f"repo-{n % 30}",
        )
    return out


def agent_spans(agents: int, tasks: int, calls: int) -> list[Event]:
    """What a load of agent spans gives the sink: per task a start, then
    ``calls`` model calls (priced, with their tokens) each followed by a tool
    call, the tasks' spans interleaved as concurrent agents send them."""
    views = [
        view(f"agent-{n % agents:04d}", n, T0 + n * S, repo=f"repo-{n % 30}", context_limit=200_000)
        for n in range(tasks)
    ]
    out: list[Event] = [
        TaskStarted(event_id=stable_id(v.task_id, "start"), time_ns=v.started_ns, task=v) for v in views
    ]
    for i in range(1, calls + 1):
        for n, before in enumerate(views):
            t = before.started_ns + i * S
            v = views[n] = dataclasses.replace(
                before, input_tokens=1500 * i, output_tokens=200 * i, context_tokens=1700 * i, updated_ns=t
            )
            attrs: dict[str, object] = {
                "model": "claude-sonnet-4" if i % 4 else "claude-haiku-4",
                "operation": "chat",
                "input_tokens": 1500,
                "output_tokens": 200,
                "cost_usd": 0.0075,
                "cost_source": "genai-prices",
            }
            out.append(
                Checkpoint(
                    event_id=stable_id(v.task_id, "model", i),
                    time_ns=t,
                    task=v,
                    source="model_call",
                    changed=("tokens",),
                    attributes=attrs,
                )
            )
            out.append(
                Checkpoint(
                    event_id=stable_id(v.task_id, "tool", i),
                    time_ns=t + 1,
                    task=v,
                    source="tool_call",
                    attributes={"tool": "bash", "duration_s": 0.2},
                )
            )
    return out


def absorb_rate(sink_cls: Any, events: list[Event], rounds: int) -> float:
    """Best events/s of ``rounds`` fresh sinks absorbing ``events`` (new events)."""
    best = 0.0
    for _ in range(rounds):
        registry = CollectorRegistry()
        sink = sink_cls(registry=registry)
        asyncio.run(sink.start(make_ctx(metrics_dedup_window=len(events) + 1)))
        seconds = asyncio.run(absorb(sink, events))
        asyncio.run(sink.shutdown(1))
        best = max(best, len(events) / seconds)
    return best


async def absorb(sink: PrometheusSink, events: list[Event]) -> float:
    """Seconds of this thread's CPU (the pipeline thread's cost, and steady on
    a machine shared with other work, unlike the wall clock)."""
    t0 = time.thread_time()
    for i in range(0, len(events), BATCH):
        await sink.export(events[i : i + BATCH])
    return time.thread_time() - t0


def scrape_ms(registry: CollectorRegistry, fn: object, runs: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        size = len(fn(registry))  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), size


async def run(agents: int, tasks: int, checkpoints: int, runs: int, cap: int) -> None:
    events = stream(agents, tasks, checkpoints, open_every=4)
    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    await sink.start(make_ctx(metrics_max_agents=cap, metrics_dedup_window=len(events) + 1))
    new_s = await absorb(sink, events)
    replay_s = await absorb(sink, events)
    text_ms, text_bytes = scrape_ms(registry, generate_latest, runs)
    om_ms, om_bytes = scrape_ms(registry, generate_openmetrics, runs)
    series = sum(1 for line in generate_latest(registry).decode().splitlines() if line and not line.startswith("#"))
    print(
        f"agents={agents:5d} cap={cap:5d} tasks={tasks:6d} open={len(sink.metrics.open):5d} "
        f"events={len(events):7d} | new {len(events) / new_s:10,.0f} ev/s | "
        f"replayed {len(events) / replay_s:10,.0f} ev/s | series={series:6d} | "
        f"scrape text {text_ms:6.1f} ms ({text_bytes / 1024:6.0f} KiB) | "
        f"openmetrics {om_ms:6.1f} ms ({om_bytes / 1024:6.0f} KiB)"
    )
    await sink.shutdown(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tasks, runs = (2_000, 3) if args.quick else (20_000, 10)
    print(f"python {sys.version.split()[0]}; batches of {BATCH}; median of {runs} scrapes")
    spans = agent_spans(50, 200 if args.quick else 1000, 20)
    rate = absorb_rate(PrometheusSink, spans, 3 if args.quick else 5)
    print(f"agent spans: {len(spans):7d} events | {rate:10,.0f} ev/s (best of rounds)")
    for agents, cap in ((50, 50), (1000, 50), (1000, 1000)):
        asyncio.run(run(agents, tasks, checkpoints=8, runs=runs, cap=cap))


if __name__ == "__main__":
    main()
