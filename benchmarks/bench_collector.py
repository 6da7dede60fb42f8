"""Persisted spans/s through a real OpenTelemetry Collector into one ``spanvisor serve``, beside direct OTLP.

    .venv/bin/python benchmarks/bench_collector.py [--spans 100000] [--rounds 5] [--clients 4] [--quick]   # about 2.5 minutes

Starts its own embedded PostgreSQL (fsync on) in a temporary directory, and
uses the Collector the tests build from the Collector's own modules with its
builder (``tests/collector/build.py``: core v0.165.0, contrib v0.165.1,
``tests/collector/builder.yaml``; built first if it is not yet, which needs
Go and the Go module proxy). Loopback only.

Each round runs two configurations, in alternating order, each with a fresh
``spanvisor serve`` (``SPANVISOR_SINKS=postgres``, the audit trail alone,
every other setting at its default) on that PostgreSQL:

* **direct**: ``--clients`` clients POST OTLP/HTTP protobuf to serve, each
  waiting for its answer and honouring ``Retry-After`` on a 503, as a
  Collector does (every 503 counted);
* **collector**: the same clients POST the same kind of bodies to a fresh
  Collector running ``collector-config/single-node.yaml`` verbatim (only its
  addresses, serve's URL and its queue's folder substituted: its
  ``file_storage`` queue, ``batch`` of 4,096, gzip and retry as shipped),
  which exports them to serve. The Collector answers once a span is in its
  queue, so its clients finish early; what counts is when PostgreSQL has it.

Every span is unique (``benchmarks/_payloads.py``, all agent spans: per task
an ``invoke_agent`` root, 40 model calls with usage and 40 checkpoint spans;
486 spans a request). **Persisted spans/s** = spans sent / the time from the
first send until every row they cause (each task's finished ``agent_tasks``
row and every timeline row, counted beforehand by the tracker on one
request) is visible on another connection. **CPU per span**: user + system
time over that same window from ``/proc/<pid>/stat`` of serve's process (all
its threads), of the Collector's process, and of PostgreSQL's (its
postmaster and backends), in microseconds per persisted span. Also said: the
503s serve answered (``spanvisor_receiver_requests_total{outcome="retry"}``
on its /metrics), the events a sink dropped (``spanvisor_dropped_total``),
the tracker's events and the PostgreSQL sink's batches (the same work on
both paths: a difference would show there), and the Collector's own count of spans sent and of spans it failed to send
or enqueue (its telemetry, on a Prometheus port of this run's).

Each figure is one configuration's median over the rounds, and the
Collector's ratio to direct OTLP is the median of the ratios within each
round: load from elsewhere on a shared machine moves both sides of a round
alike. Not measured here: two replicas behind the Collector's
``load_balancing`` exporter (tests/collector/test_gateway.py runs them, on
a Collector of release 0.159.0, the newest the module proxy serves it at).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from tests.collector._collector import Collector, free_port, scrape, single_node, total  # noqa: E402
from tests.collector.build import build  # noqa: E402
from tests.receiver.serve_proc import ServeProcess, console_env  # noqa: E402

from _cpuwatch import cores, postmaster_of, snapshot  # noqa: E402
from _payloads import MIXES, Template, check_unique  # noqa: E402
from _rowcount import Counter  # noqa: E402
from spanvisor.events import ArtifactAdded, Checkpoint, ContextWarning, TaskFinished  # noqa: E402
from spanvisor.receiver.decode import decode_request  # noqa: E402
from spanvisor.tracking.tracker import TaskTracker  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

PERSIST_DEADLINE_S = 300.0
EXPORTER = "otlp_http/spanvisor"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, every thread (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows_per_request(tpl: Template) -> tuple[int, int]:
    """(timeline rows, finished tasks) one copy of the template causes, from the tracker itself."""
    tracker = TaskTracker()
    rows = tasks = 0
    for span in decode_request(ExportTraceServiceRequest.FromString(tpl.copy(0))).spans:
        for ev in tracker.span_ended(span):
            if isinstance(ev, Checkpoint | ContextWarning):
                rows += 1
            elif isinstance(ev, TaskFinished):
                tasks += 1
            elif isinstance(ev, ArtifactAdded):
                raise RuntimeError("artifacts are not counted here")
    return rows, tasks


def post(port: int, body: bytes) -> int:
    """POST until acknowledged, honouring Retry-After as a Collector does;
    the 503s (or 429s) it took."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )
    refused = 0
    while True:
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                if resp.status == 200:
                    return refused
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise
            refused += 1
            time.sleep(float(exc.headers.get("Retry-After") or 1))


def ready(serve: ServeProcess) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{serve.admin}/readyz", timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_serve(data: Path, db_url: str) -> ServeProcess:
    env = {**console_env(data, SPANVISOR_DATABASE_URL=db_url), "SPANVISOR_SINKS": "postgres"}
    serve = ServeProcess(data, env, start=False)
    serve.start(timeout=120)
    deadline = time.monotonic() + 120
    while not ready(serve):
        if time.monotonic() > deadline or not serve.alive:
            if serve.alive:
                serve.kill()
            raise RuntimeError("serve did not become ready:\n" + serve.log_text())
        time.sleep(0.1)
    return serve


def one_run(
    via: str, base: Path, db_url: str, tpl: Template, first: int, bodies: int, clients: int, binary: Path | None
) -> dict[str, float]:
    """One configuration: ``bodies`` unique requests sent through ``via``
    (direct or collector) until every row they cause is in PostgreSQL."""
    data = base / f"{via}-{first}"
    serve = start_serve(data / "serve", db_url)
    collector: Collector | None = None
    port = serve.http
    if via == "collector":
        assert binary is not None
        grpc, http = free_port(), free_port()
        config = single_node(data, grpc, http, serve.http)
        collector = Collector(binary, config, data / "collector.log", metrics_port=free_port())
        collector.start(http)
        port = http
    per_rows, per_tasks = rows_per_request(tpl)
    payloads = [tpl.copy(first + k) for k in range(bodies)]
    counter = Counter(db_url, first, first + bodies)
    postmaster = postmaster_of(base / "postgres" / "pgdata")
    lock = threading.Lock()
    state = {"next": 0, "refused": 0}

    def client() -> None:
        while True:
            with lock:
                if state["next"] >= len(payloads):
                    return
                body = payloads[state["next"]]
                state["next"] += 1
            refused = post(port, body)
            with lock:
                state["refused"] += refused

    try:
        cpu_from = snapshot([serve.proc.pid], postmaster)  # type: ignore[union-attr]
        col_from = cpu_seconds(collector.proc.pid) if collector and collector.proc else 0.0
        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent_s = time.monotonic() - t0
        want_rows, want_done = bodies * per_rows, bodies * per_tasks
        rows = done = 0
        while time.monotonic() - t0 < PERSIST_DEADLINE_S:
            rows, done = counter.now()
            if rows >= want_rows and done >= want_done:
                break
            time.sleep(0.05)
        persisted_s = time.monotonic() - t0
        cpu = cores(cpu_from, snapshot([serve.proc.pid], postmaster))  # type: ignore[union-attr]
        col_s = (cpu_seconds(collector.proc.pid) - col_from) if collector and collector.proc else 0.0
        serve_metrics = scrape(f"http://127.0.0.1:{serve.admin}/metrics")
        col_metrics = collector.metrics() if collector else {}
    finally:
        counter.close()
        if collector is not None:
            collector.stop()
        serve.terminate()
    spans = bodies * tpl.n_spans
    return {
        "spans": spans,
        "sent_s": sent_s,
        "persisted_s": persisted_s,
        "spans_s": spans / persisted_s,
        "complete": float(rows >= want_rows and done >= want_done),
        "client_503": state["refused"],
        "serve_503": total(serve_metrics, "spanvisor_receiver_requests_total", outcome="retry"),
        "dropped": total(serve_metrics, "spanvisor_dropped_total"),
        "events": total(serve_metrics, "spanvisor_events_emitted_total"),
        "batches": total(serve_metrics, "spanvisor_sink_deliveries_total", sink="postgres"),
        # CPU over the whole window (first send to last row), µs per persisted span.
        "serve_us": cpu["serve"] * persisted_s / spans * 1e6,
        "postgres_us": cpu["postgres"] * persisted_s / spans * 1e6,
        "collector_us": col_s / spans * 1e6,
        "serve_cores": cpu["serve"],
        "collector_cores": col_s / persisted_s,
        "col_sent": total(col_metrics, "otelcol_exporter_sent_spans", exporter=EXPORTER),
        "col_failed": sum(
            total(col_metrics, name)
            for name in (
                "otelcol_exporter_send_failed_spans",
                "otelcol_exporter_enqueue_failed_spans",
                "otelcol_receiver_refused_spans",
                "otelcol_receiver_failed_spans",
            )
        ),
    }


async def migrated(url: str) -> None:
    import asyncpg

    from spanvisor_postgres.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=100_000, help="spans per configuration and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="a smoke run: one round of 10,000 spans")
    a = ap.parse_args()
    if a.quick:
        a.spans, a.rounds = 10_000, 1
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    try:
        print("the Collector (tests/collector/build.py; built now if it is not yet) …", flush=True)
        binary = build()
    except BaseException as exc:  # pytest's skip and fail, raised outside pytest
        print(f"bench_collector: nothing measured: no Collector here ({exc})")
        return 0
    print(f"  {binary}", flush=True)
    tpl = Template(MIXES["agent"])
    check_unique(tpl.copy(1), tpl.copy(2))
    bodies = max(1, round(a.spans / tpl.n_spans))
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-collector-"))
    pg = EmbeddedPostgres(base / "postgres")
    results: dict[str, list[dict[str, float]]] = {"direct": [], "collector": []}
    ratios: list[float] = []
    try:
        print("starting the embedded PostgreSQL (fsync on) …", flush=True)
        url = pg.acquire()
        asyncio.run(migrated(url))
        first = 1
        for rnd in range(a.rounds):
            order = ["direct", "collector"] if rnd % 2 == 0 else ["collector", "direct"]
            got: dict[str, dict[str, float]] = {}
            for via in order:
                r = one_run(via, base, url, tpl, first, bodies, a.clients, binary)
                first += 100_000
                got[via] = r
                results[via].append(r)
                print(
                    f"  round {rnd + 1}/{a.rounds} {via:<9}: {r['spans']:,.0f} spans sent in {r['sent_s']:.1f} s, "
                    f"every row visible after {r['persisted_s']:.1f} s{'' if r['complete'] else ' (INCOMPLETE)'}: "
                    f"{r['spans_s']:,.0f} spans/s; CPU µs/span serve {r['serve_us']:.1f}, "
                    f"Collector {r['collector_us']:.1f}, PostgreSQL {r['postgres_us']:.1f}; "
                    f"serve answered {int(r['serve_503'])} 503s; {r['events']:,.0f} events "
                    f"in {r['batches']:,.0f} PostgreSQL batches",
                    flush=True,
                )
            ratios.append(got["collector"]["spans_s"] / got["direct"]["spans_s"])
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)

    def med(via: str, key: str) -> float:
        return median([r[key] for r in results[via]])

    print()
    print(
        f"all agent spans ({tpl.n_spans} a request), {a.clients} clients, {bodies * tpl.n_spans:,} spans a run, "
        f"{a.rounds} round(s), serve with SPANVISOR_SINKS=postgres, medians over the rounds:"
    )
    for via, label in (("direct", "direct OTLP/HTTP → serve"), ("collector", "→ Collector (single-node.yaml) → serve")):
        rs = results[via]
        incomplete = sum(1 for r in rs if not r["complete"])
        line = (
            f"  {label:<40} {med(via, 'spans_s'):>7,.0f} persisted spans/s; CPU µs per span: "
            f"serve {med(via, 'serve_us'):.1f} ({med(via, 'serve_cores'):.2f} cores)"
        )
        if via == "collector":
            line += f", Collector {med(via, 'collector_us'):.1f} ({med(via, 'collector_cores'):.2f} cores)"
        line += (
            f", PostgreSQL {med(via, 'postgres_us'):.1f}; serve's 503s {sum(int(r['serve_503']) for r in rs)}, "
            f"events dropped {sum(int(r['dropped']) for r in rs)}"
        )
        if via == "collector":
            sent = sum(r["col_sent"] for r in rs)
            line += (
                f"; the Collector sent {sent:,.0f} of {sum(r['spans'] for r in rs):,.0f} spans, "
                f"failed or refused {sum(r['col_failed'] for r in rs):,.0f}"
            )
        if incomplete:
            line += f" ({incomplete} run(s) INCOMPLETE after {PERSIST_DEADLINE_S:.0f} s)"
        print(line)
    q = sorted(ratios)
    print(
        f"  through the Collector / direct, persisted spans/s: {median(ratios):.2f}x "
        f"(rounds: {', '.join(f'{x:.2f}' for x in q)})"
    )
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
