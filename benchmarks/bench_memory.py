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

``--trace DIR``: where each KB goes. ``serve`` runs under tracemalloc
(``benchmarks/_memtrace``; its RSS is then larger, so read the figures of
a run without it) and writes a snapshot at each sample; the run ends with
the Python heap the open tasks added a task, by file, and what grew from the
middle sample of the stream to the last, by line. ``--trim`` also reads RSS
after glibc's ``malloc_trim(0)`` at each sample: what the allocator kept of
freed memory, against objects still alive. ``--layout DIR`` (without
tracemalloc, so RSS is the real one): where RSS lies at each sample, in
pymalloc's arenas (and the bytes of live objects in them), glibc malloc's
heap (objects above 512 bytes, C libraries), file-backed pages, and what
``malloc_trim(0)`` gives back.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
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


def waiting_runs(srv: Server) -> str:
    """Runs whose facts wait for the control log (the state store), from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.admin, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    m = re.search(r"^spanvisor_control_runs_waiting(?:\{[^}]*\})? (\S+)$", text, re.M)
    return f", {float(m.group(1)):,.0f} runs waiting for the control log" if m else ""


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


class Tracer:
    """Snapshots of ``serve``'s Python heap (``--trace``), one a sample."""

    def __init__(self, out: str | None, frames: int, trim: bool, layout: str | None = None) -> None:
        self.out = Path(out) if out else None
        self.layout = Path(layout) if layout else None
        self.env: dict[str, str] = {}
        self.snaps: list[Path] = []
        if self.layout is not None:
            self.layout.mkdir(parents=True, exist_ok=True)
            for old in self.layout.glob("layout*"):
                old.unlink()
            self.env = {
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(Path(__file__).resolve().parent / "_memtrace"), os.environ.get("PYTHONPATH")) if p
                ),
                "MEMTRACE_LAYOUT": str(self.layout),
            }
        elif self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            for old in self.out.glob("snap*"):
                old.unlink()
            self.env = {
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(Path(__file__).resolve().parent / "_memtrace"), os.environ.get("PYTHONPATH")) if p
                ),
                "MEMTRACE_DIR": str(self.out),
                "MEMTRACE_FRAMES": str(frames),
                **({"MEMTRACE_TRIM": "1"} if trim else {}),
            }

    def sample(self, srv: Server) -> str:
        if self.layout is not None:
            done = self.layout / f"layout{len(self.snaps)}.txt"
            self.snaps.append(done)
            os.kill(srv.proc.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 120
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            return "\n    [" + done.read_text().strip() + "]"
        if self.out is None:
            return ""
        n = len(self.snaps)
        done = self.out / f"snap{n}.txt"
        os.kill(srv.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.snaps.append(self.out / f"snap{n}.pickle")
        rss, traced, trimmed = done.read_text().split()
        return f" [traced heap {traced} MB; RSS {rss} MB, {trimmed} after malloc_trim]"

    def report(self, tasks: int) -> None:
        if self.layout is not None or len(self.snaps) < 3:
            return
        load = tracemalloc.Snapshot.load
        rest, opened, mid, last = load(str(self.snaps[0])), load(str(self.snaps[1])), None, None
        print(f"\nPython heap the {tasks:,} open tasks added, by file (bytes a task):")
        diff = opened.compare_to(rest, "filename")
        print(f"  {sum(d.size_diff for d in diff) / tasks:7,.0f}  in all")
        for d in diff[:20]:
            print(f"  {d.size_diff / tasks:7,.0f}  {_short(d.traceback[0].filename)}")
        if len(self.snaps) >= 5:
            mid, last = load(str(self.snaps[2 + (len(self.snaps) - 2) // 2 - 1])), load(str(self.snaps[-1]))
            diff = last.compare_to(mid, "lineno")
            print(
                f"\nfrom the middle of the stream to its end: {sum(d.size_diff for d in diff) / 2**20:+.1f} MB, by line:"
            )
            for d in diff[:15]:
                f = d.traceback[0]
                print(f"  {d.size_diff / 2**20:+7.2f} MB {d.count_diff:+9,}  {_short(f.filename)}:{f.lineno}")


def _short(filename: str) -> str:
    for mark in ("/src/", "/plugins/", "/site-packages/"):
        if mark in filename:
            return filename.split(mark, 1)[1]
    return filename


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
    ap.add_argument("--trace", metavar="DIR", help="serve under tracemalloc, a snapshot a sample in DIR")
    ap.add_argument("--frames", type=int, default=1, help="--trace: frames a traceback")
    ap.add_argument("--trim", action="store_true", help="--trace: RSS after malloc_trim(0) too")
    ap.add_argument(
        "--layout", metavar="DIR", help="no tracing: where RSS lies at each sample (pymalloc, malloc, files)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1,000 tasks, 100,000 spans")
    a = ap.parse_args()
    if a.quick:
        a.tasks, a.spans = 1000, 100_000
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start")
    print(f"sinks: {a.sinks}")
    tracer = Tracer(a.trace, a.frames, a.trim, a.layout)
    saved = dict(os.environ)
    os.environ.update(tracer.env)  # the server's environment is a copy of ours
    try:
        srv = Server(tempfile.mkdtemp(prefix="spanvisor-bench-mem-"), sinks=a.sinks)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        settle(srv)
        base = rss_mb(srv.proc.pid)
        print(f"serve at rest: RSS {base:,.0f} MB{tracer.sample(srv)}", flush=True)
        small = Template(MIXES["small"], roots=False)
        check_unique(small.copy(1), small.copy(2))
        requests = math.ceil(a.tasks / MIXES["small"].tasks)
        send(srv, small, 1, requests)
        settle(srv)
        opened = requests * MIXES["small"].tasks
        after = rss_mb(srv.proc.pid)
        print(
            f"{opened:,} open tasks: RSS {after:,.0f} MB (+{after - base:,.0f} MB, "
            f"{1024 * (after - base) / opened:.1f} KB a task){tracer.sample(srv)}",
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
            print(
                f"  {sent:>9,} spans streamed: RSS {samples[-1][1]:,.0f} MB{waiting_runs(srv)}{tracer.sample(srv)}",
                flush=True,
            )
        elapsed = time.monotonic() - t0
        late = [r for _, r in samples[5:]]
        print(
            f"stream of {sent:,} spans in {elapsed:.0f} s: RSS {samples[0][1]:,.0f} MB after the first tenth, "
            f"{min(late):,.0f}-{max(late):,.0f} MB over the second half (spread {max(late) - min(late):,.0f} MB)"
        )
        print(windows_full(mix))
        tracer.report(opened)
    finally:
        srv.stop()
        shutil.rmtree(srv.log.parent, ignore_errors=True)  # its data directory


if __name__ == "__main__":
    main()
