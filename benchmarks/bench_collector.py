"""Persisted spans/s through a real OpenTelemetry Collector into one ``spanvisor serve`` and into two replicas, beside direct OTLP.

    .venv/bin/python benchmarks/bench_collector.py [--spans 100000] [--rounds 5] [--clients 4] [--quick]   # about 4 minutes

Starts its own embedded PostgreSQL (fsync on) in a temporary directory, and
uses the Collector the tests build from the Collector's own modules with its
builder (``tests/collector/build.py``: core v0.159.0 and contrib v0.159.0,
``tests/collector/builder.yaml``, for the single node and the gateway alike;
built first if it is not yet, which needs Go and the Go module proxy).
Loopback only.

Each round runs three configurations, in a rotating order, each with fresh
``spanvisor serve`` processes (``SPANVISOR_SINKS=postgres``, the audit trail
alone, every other setting at its default) on that PostgreSQL:

* **direct**: ``--clients`` clients POST OTLP/HTTP protobuf to serve, each
  waiting for its answer and honouring ``Retry-After`` on a 503, as a
  Collector does (every 503 counted);
* **collector**: the same clients POST the same kind of bodies to a fresh
  Collector running ``collector-config/single-node.yaml`` verbatim (only its
  addresses, serve's URL and its queue's folder substituted: its
  ``file_storage`` queue, ``batch`` of 4,096, gzip and retry as shipped),
  which exports them to serve. The Collector answers once a span is in its
  queue, so its clients finish early; what counts is when PostgreSQL has it;
* **gateway**: the same, to the gateway Collector running
  ``collector-config/gateway.yaml`` verbatim (addresses, the two replicas'
  gRPC ports and its queue's folder substituted: ``load_balancing`` by trace
  id over OTLP/gRPC, its persistent queue), in front of two serve replicas
  (``SPANVISOR_STATE_STORE=postgres``, as replicas run) on the same
  PostgreSQL. On 2 cores the replicas share the cores the single serve had:
  what this shows is the cost of the extra hop and of a second process, not
  the scaling a second machine gives.

Every span is unique (``benchmarks/_payloads.py``, all agent spans: per task
an ``invoke_agent`` root, 40 model calls with usage and 40 checkpoint spans;
486 spans a request). **Persisted spans/s** = spans sent / the time from the
first send until every row they cause (each task's finished ``agent_tasks``
row and every timeline row, counted beforehand by the tracker on one
request) is visible on another connection. **CPU per span**: user + system
time over that same window from ``/proc/<pid>/stat`` of serve's process (all
its threads), of the Collector's process, and of PostgreSQL's (its
postmaster and backends), in microseconds per persisted span (serve's: both
replicas' together). Also said: the
503s serve answered (``spanvisor_receiver_requests_total{outcome="retry"}``
on its /metrics), the events a sink dropped (``spanvisor_dropped_total``),
the tracker's events and the PostgreSQL sink's batches (the same work on
both paths: a difference would show there), and the Collector's own count of spans sent and of spans it failed to send
or enqueue (its telemetry, on a Prometheus port of this run's).

Each figure is one configuration's median over the rounds, and the
Collector's ratio to direct OTLP is the median of the ratios within each
round: load from elsewhere on a shared machine moves both sides of a round
alike.
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
from tests.collector._collector import Collector, free_port, gateway_config, scrape, single_node, total  # noqa: E402
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
EXPORTER = {"collector": "otlp_http/spanvisor", "gateway": "load_balancing/spanvisor"}
VIAS = ("direct", "collector", "gateway")
LABELS = {
    "direct": "direct OTLP/HTTP → serve",
    "collector": "→ Collector (single-node.yaml) → serve",
    "gateway": "→ Collector (gateway.yaml) → 2 replicas",
}


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


def start_serve(data: Path, db_url: str, **extra: str) -> ServeProcess:
    env = {**console_env(data, SPANVISOR_DATABASE_URL=db_url), "SPANVISOR_SINKS": "postgres", **extra}
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


def replicas(data: Path, db_url: str) -> list[ServeProcess]:
    """Two serve replicas as they run behind the gateway: one state store,
    each on a gRPC port fixed before the gateway's config lists it."""
    serves: list[ServeProcess] = []
    try:
        for n in (1, 2):
            serves.append(
                start_serve(
                    data / f"serve-{n}",
                    db_url,
                    SPANVISOR_STATE_STORE="postgres",
                    SPANVISOR_REPLICA_ID=f"spanvisor-{n}",
                    SPANVISOR_OTLP_GRPC_PORT=str(free_port()),
                )
            )
    except BaseException:
        for s in serves:
            s.terminate()
        raise
    return serves


def one_run(
    via: str, base: Path, db_url: str, tpl: Template, first: int, bodies: int, clients: int, binaries: dict[str, Path]
) -> dict[str, float]:
    """One configuration: ``bodies`` unique requests sent through ``via``
    (direct, collector or gateway) until every row they cause is in PostgreSQL."""
    data = base / f"{via}-{first}"
    serves = replicas(data, db_url) if via == "gateway" else [start_serve(data / "serve", db_url)]
    collector: Collector | None = None
    port = serves[0].http
    if via != "direct":
        grpc, http = free_port(), free_port()
        if via == "collector":
            config = single_node(data, grpc, http, serves[0].http)
        else:
            ports = [int(s.env["SPANVISOR_OTLP_GRPC_PORT"]) for s in serves]
            config = gateway_config(data, grpc, http, free_port(), ports[0], ports[1])
        collector = Collector(binaries[via], config, data / "collector.log", metrics_port=free_port())
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
        pids = [s.proc.pid for s in serves]  # type: ignore[union-attr]
        cpu_from = snapshot(pids, postmaster)
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
        cpu = cores(cpu_from, snapshot(pids, postmaster))
        col_s = (cpu_seconds(collector.proc.pid) - col_from) if collector and collector.proc else 0.0
        serve_metrics = [scrape(f"http://127.0.0.1:{s.admin}/metrics") for s in serves]
        col_metrics = collector.metrics() if collector else {}
    finally:
        counter.close()
        if collector is not None:
            collector.stop()
        for s in serves:
            s.terminate()

    def serves_total(name: str, **labels: str) -> float:
        return sum(total(m, name, **labels) for m in serve_metrics)

    spans = bodies * tpl.n_spans
    return {
        "spans": spans,
        "sent_s": sent_s,
        "persisted_s": persisted_s,
        "spans_s": spans / persisted_s,
        "complete": float(rows >= want_rows and done >= want_done),
        "client_503": state["refused"],
        "serve_503": serves_total("spanvisor_receiver_requests_total", outcome="retry"),
        "dropped": serves_total("spanvisor_dropped_total"),
        "events": serves_total("spanvisor_events_emitted_total"),
        "batches": serves_total("spanvisor_sink_deliveries_total", sink="postgres"),
        # CPU over the whole window (first send to last row), µs per persisted span.
        "serve_us": cpu["serve"] * persisted_s / spans * 1e6,
        "postgres_us": cpu["postgres"] * persisted_s / spans * 1e6,
        "collector_us": col_s / spans * 1e6,
        "serve_cores": cpu["serve"],
        "collector_cores": col_s / persisted_s,
        "col_sent": total(col_metrics, "otelcol_exporter_sent_spans", exporter=EXPORTER.get(via, "")),
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
        binaries = {"collector": build(), "gateway": build()}
    except BaseException as exc:  # pytest's skip and fail, raised outside pytest
        print(f"bench_collector: nothing measured: no Collector here ({exc})")
        return 0
    for b in binaries.values():
        print(f"  {b}", flush=True)
    tpl = Template(MIXES["agent"])
    check_unique(tpl.copy(1), tpl.copy(2))
    bodies = max(1, round(a.spans / tpl.n_spans))
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-collector-"))
    pg = EmbeddedPostgres(base / "postgres")
    results: dict[str, list[dict[str, float]]] = {via: [] for via in VIAS}
    ratios: dict[str, list[float]] = {"collector": [], "gateway": []}
    try:
        print("starting the embedded PostgreSQL (fsync on) …", flush=True)
        url = pg.acquire()
        asyncio.run(migrated(url))
        first = 1
        for rnd in range(a.rounds):
            order = [VIAS[(rnd + k) % len(VIAS)] for k in range(len(VIAS))]
            got: dict[str, dict[str, float]] = {}
            for via in order:
                r = one_run(via, base, url, tpl, first, bodies, a.clients, binaries)
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
            for via, within in ratios.items():
                within.append(got[via]["spans_s"] / got["direct"]["spans_s"])
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
    for via in VIAS:
        label, rs = LABELS[via], results[via]
        incomplete = sum(1 for r in rs if not r["complete"])
        line = (
            f"  {label:<40} {med(via, 'spans_s'):>7,.0f} persisted spans/s; CPU µs per span: "
            f"serve {med(via, 'serve_us'):.1f} ({med(via, 'serve_cores'):.2f} cores)"
        )
        if via != "direct":
            line += f", Collector {med(via, 'collector_us'):.1f} ({med(via, 'collector_cores'):.2f} cores)"
        line += (
            f", PostgreSQL {med(via, 'postgres_us'):.1f}; serve's 503s {sum(int(r['serve_503']) for r in rs)}, "
            f"events dropped {sum(int(r['dropped']) for r in rs)}"
        )
        if via != "direct":
            sent = sum(r["col_sent"] for r in rs)
            line += (
                f"; the Collector sent {sent:,.0f} of {sum(r['spans'] for r in rs):,.0f} spans, "
                f"failed or refused {sum(r['col_failed'] for r in rs):,.0f}"
            )
        if incomplete:
            line += f" ({incomplete} run(s) INCOMPLETE after {PERSIST_DEADLINE_S:.0f} s)"
        print(line)
    for via, within in ratios.items():
        print(
            f"  {LABELS[via].removeprefix('→ ')} / direct, persisted spans/s: {median(within):.2f}x "
            f"(rounds: {', '.join(f'{x:.2f}' for x in sorted(within))})"
        )
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
