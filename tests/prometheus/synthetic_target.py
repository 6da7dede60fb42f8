"""A stand-in scrape target: the metrics sink fed a synthetic event stream.

Used by test_prom_real_server.py when TARGET = "synthetic" (before `spanvisor
demo` existed, or to test the sink alone). Serves on SPANVISOR_METRICS_PORT
like the demo, feeds three agents' tasks over ``--seconds``, then lingers.

    python tests/prometheus/synthetic_target.py --seconds 3 --linger 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from prom_streams import lifecycle, make_ctx
from prometheus_client import CollectorRegistry

from spanvisor.events import Event
from spanvisor_prometheus import PrometheusSink


async def main(seconds: float, linger: float) -> None:
    ctx = make_ctx(metrics_port=int(os.environ["SPANVISOR_METRICS_PORT"]))
    sink = PrometheusSink(registry=CollectorRegistry())
    await sink.start(ctx)
    now = time.time_ns()
    streams: list[list[Event]] = [
        lifecycle("rivet", 1, now, checkpoints=6, duration_s=seconds, repo="plant-ops/line3", agent_checkpoints=True),
        lifecycle("sprocket", 2, now, checkpoints=3, outcome="error", duration_s=seconds / 2, agent_checkpoints=True),
        lifecycle("gauge", 3, now, checkpoints=8, peak_ratio=0.9, duration_s=seconds, model="claude-sonnet-4"),
    ]
    ctx.stats.gauge("queue_depth", lambda: 0.0, sink="prometheus")
    ctx.stats.gauge("outbox_events", lambda: 0.0, sink="postgres")
    # Interleave the streams by event time, as the agents would produce them.
    events = sorted((e for s in streams for e in s), key=lambda e: e.time_ns)
    start = time.monotonic()
    for ev in events:
        delay = (ev.time_ns - now) / 1e9 - (time.monotonic() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        result = await sink.export([ev])
        ctx.stats.inc("spans_received_total", path="processor")
        ctx.stats.inc("spans_in_tasks_total")
        ctx.stats.inc("events_emitted_total", kind=ev.kind)
        ctx.stats.observe("sink_latency_seconds", time.perf_counter() - t0, sink="prometheus")
        ctx.stats.inc("sink_deliveries_total", sink="prometheus", outcome=result.value)
    print(f"synthetic target: {len(events)} events on port {sink.bound_port}", flush=True)
    await asyncio.sleep(linger)
    await sink.shutdown(2)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--linger", type=float, default=20.0)
    args = ap.parse_args()
    asyncio.run(main(args.seconds, args.linger))
