"""Memory of ``spanvisor serve``: open tasks, and a long stream of spans.

    .venv/bin/python benchmarks/bench_memory.py [--tasks 10000] [--spans 1000000] [--quick]

Starts a real ``spanvisor serve`` at its defaults (journal on; the sinks a
default ``serve`` runs without PostgreSQL or a terminal: Prometheus and the
event stream, whose in-memory ring keeps the last 10,000 events for
clients that reconnect; ``--sinks`` to choose) and reads its resident set size (VmRSS,
``/proc``) once every span sent so far has been tracked (the inbox empty
again, from ``/metrics``):

1. **Open tasks**: ``--tasks`` tasks that start and never finish (each a
   stamped model call and checkpoint span whose root is never sent, so the
   tracker keeps them open), over OTLP/HTTP; RSS before and after.
2. **A stream**: ``--spans`` spans of the project mix, every span unique
   (``_payloads.py``), every task finished; RSS after each tenth. It should
   level off once the bounded windows (duplicate window, finished tasks)
   are full, and stay there. The run ends by saying after how many spans of
   this mix each window is full at the defaults: the duplicate window holds
   spans that carry content (16 % of the mix), the finished-task record
   tasks (12 per ~520 spans), so on this mix the first fills after about
   1.2 million spans and the second after about 8.6 million: a shorter run
   still sees the record grow (see src/spanvisor/tracking/recent.py).

Four clients, honouring Retry-After, as in ``bench_ingest.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from _payloads import MIXES, Template, check_unique
from bench_ingest import Run, Server
from spanvisor.config import Config
from spanvisor.receiver.decode import decode_request
from spanvisor.tracking.tracebuffer import can_cause_events


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def settle(srv: Server, timeout_s: float = 120.0) -> None:
    """Until the inbox is empty (every span sent so far tracked)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and srv.inbox_depth() > 0:
        time.sleep(0.05)
    time.sleep(0.3)  # the last pump's events reach the sink


def send(srv: Server, tpl: Template, first: int, count: int) -> int:
    """POST ``count`` unique copies of ``tpl`` (4 clients); spans acknowledged."""
    run = Run([tpl.copy(first + k) for k in range(count)], tpl.n_spans, 4, 3600.0)
    return int(run.drive("http", [srv])["spans"])


def windows_full(tpl: Template) -> str:
    """After how many spans of ``tpl`` the tracker's two windows are full, at the defaults."""
    window = int(Config.load(env={}, extra=())["dedup_window"])
    spans = decode_request(ExportTraceServiceRequest.FromString(tpl.copy(1))).spans
    content = sum(1 for s in spans if can_cause_events(s))
    dup = window * len(spans) / max(1, content)
    done = window * len(spans) / max(1, tpl.n_tasks)
    return (
        f"windows at the defaults ({window:,} entries): the duplicate window is full after ~{dup:,.0f} spans "
        f"of this mix ({content} of {len(spans)} spans carry content), the finished-task record after ~{done:,.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000, help="open tasks")
    ap.add_argument("--spans", type=int, default=1_000_000, help="spans streamed")
    ap.add_argument("--sinks", default="prometheus,stream", help="SPANVISOR_SINKS (before: prometheus)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1,000 tasks, 100,000 spans")
    a = ap.parse_args()
    if a.quick:
        a.tasks, a.spans = 1000, 100_000
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start")
    print(f"sinks: {a.sinks}")
    srv = Server(tempfile.mkdtemp(prefix="spanvisor-bench-mem-"), sinks=a.sinks)
    try:
        settle(srv)
        base = rss_mb(srv.proc.pid)
        print(f"serve at rest: RSS {base:,.0f} MB", flush=True)
        small = Template(MIXES["small"], roots=False)
        check_unique(small.copy(1), small.copy(2))
        requests = math.ceil(a.tasks / MIXES["small"].tasks)
        send(srv, small, 1, requests)
        settle(srv)
        opened = requests * MIXES["small"].tasks
        after = rss_mb(srv.proc.pid)
        print(
            f"{opened:,} open tasks: RSS {after:,.0f} MB (+{after - base:,.0f} MB, "
            f"{1024 * (after - base) / opened:.1f} KB a task)",
            flush=True,
        )
        mix = Template(MIXES["mix"])
        per_tenth = max(1, round(a.spans / 10 / mix.n_spans))
        first = 10_000_000
        sent = 0
        samples: list[tuple[int, float]] = []
        t0 = time.monotonic()
        for tenth in range(10):
            sent += send(srv, mix, first + tenth * per_tenth, per_tenth)
            settle(srv)
            samples.append((sent, rss_mb(srv.proc.pid)))
            print(f"  {sent:>9,} spans streamed: RSS {samples[-1][1]:,.0f} MB", flush=True)
        elapsed = time.monotonic() - t0
        late = [r for _, r in samples[5:]]
        print(
            f"stream of {sent:,} spans in {elapsed:.0f} s: RSS {samples[0][1]:,.0f} MB after the first tenth, "
            f"{min(late):,.0f}-{max(late):,.0f} MB over the second half (spread {max(late) - min(late):,.0f} MB)"
        )
        print(windows_full(mix))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
