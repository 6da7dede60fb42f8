"""End to end through ``spanvisor serve``: OTLP in, PostgreSQL rows and Slack calls out.

    .venv/bin/python benchmarks/bench_e2e.py [--seconds 8] [--quick]     # about 2 minutes
    make compiled && PYTHONPATH=build/compiled/site .venv/bin/python benchmarks/bench_e2e.py   # the published wheel's build

Starts its own embedded PostgreSQL (fsync on) in a temporary directory.

1. **Latency**, not rate-limited: one small task every 5 s is POSTed as OTLP
   to a ``spanvisor serve`` (sinks postgres + slack, default intervals)
   backed by the embedded PostgreSQL and the local fake Slack. For each
   task: time from the 200 to its finished row in ``agent_tasks``, and to
   the fake Slack receiving its parent ``chat.postMessage``. p50 and p95.
2. **Persisted spans/s**: ``spanvisor serve`` at its default settings (sink
   postgres; nothing tuned, not even ``Retry-After``). Clients POST unique
   spans (``benchmarks/_payloads.py``: fresh trace, span and task ids per
   request) for ``--seconds``, each waiting for its answer and honouring
   ``Retry-After`` on a 503, as a Collector does; every 503 is counted.
   Then the run waits until every row those spans cause (each task's
   finished ``agent_tasks`` row and every timeline row, counted beforehand
   by running the same payload through the tracker) is visible on another
   connection. Persisted spans/s = acknowledged spans / that time.
   Runs: all agent spans with one client (the goal's case) and with four;
   the project mix with one client; all agent spans with two replicas; and
   all agent spans, one client, with ``SPANVISOR_SINKS=auto``: the sinks a
   default serve runs (without a Slack token: console, postgres, the
   Prometheus sink for the admin port's /metrics, and the event stream
   with its PostgreSQL feed). Each run also says how many events a sink
   dropped (``spanvisor_dropped_total`` on serve's /metrics): a sink that
   is not durable (the event stream) drops when it falls behind instead of
   slowing admission, which the persisted figure alone would not show.
   And where the CPU went while sending (``_cpuwatch``): serve's threads
   together and its busiest one (the pipeline's), PostgreSQL's processes,
   and this client, in cores: one thread near 1.0 is the pipeline's limit,
   serve's threads near 1.0 the GIL's, a sum near the core count the
   machine's.

It reports spanvisor's figures only: no other product is run or quoted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver"), str(ROOT / "benchmarks")]

from agent_traces import request_for  # type: ignore[import-not-found]  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402

from _cpuwatch import cores, postmaster_of, snapshot  # noqa: E402
from _payloads import MIXES, Template, check_unique  # noqa: E402
from _rowcount import Counter  # noqa: E402
from spanvisor.events import ArtifactAdded, Checkpoint, ContextWarning, TaskFinished  # noqa: E402
from spanvisor.receiver.decode import decode_request  # noqa: E402
from spanvisor.tracking.tracker import TaskTracker  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

SPACING_S = 5.0
# Only spanvisor's own figures: a peer's figure is cited in
# docs/design/performance.md only with the command and version that measured it on
# the same machine, never written down here.


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


# Each serve's admin port, by its process: read for what it dropped.
ADMIN_PORTS: dict[int, int] = {}


def serve(
    data_dir: Path, db_url: str, sinks: str, slack_url: str | None, **extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        **extra,
        "SPANVISOR_DATA_DIR": str(data_dir),
        "SPANVISOR_OPEN": "1",  # no token: the clients here send none
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
        m = re.search(r"http=(\d+) grpc=\d+ admin=(\d+)", log.read_text())
        if m and ready(int(m.group(2))):
            ADMIN_PORTS[proc.pid] = int(m.group(2))
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    # A serve left running would load every later figure of the run.
    proc.kill()
    proc.wait()
    raise RuntimeError("serve did not become ready:\n" + log.read_text())


def ready(admin_port: int) -> bool:
    """/readyz answers 200 once every sink started (PostgreSQL connected and
    migrated): what a load balancer waits for before sending traffic."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def dropped(proc: subprocess.Popen[bytes]) -> int:
    """Events the serve dropped (``spanvisor_dropped_total``, every reason
    and sink, from its /metrics): a sink that cannot keep up (the event
    stream's is not durable, so it drops rather than slowing admission)
    shows here, never in the persisted figure."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORTS[proc.pid]}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError, KeyError):
        return -1
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith("spanvisor_dropped_total{")
    )


def post(port: int, body: bytes, stop_at: float = float("inf")) -> tuple[bool, int, float]:
    """POST until acknowledged, honouring Retry-After, as a Collector would:
    (acknowledged, 503s it took, seconds spent waiting on Retry-After).
    Gives up (False) once ``stop_at`` passes."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )
    refused = 0
    waited = 0.0
    while True:
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                if resp.status == 200:
                    return True, refused, waited
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise
            refused += 1
            pause = float(exc.headers.get("Retry-After") or 1)
            if time.monotonic() + pause > stop_at:
                return False, refused, waited
            time.sleep(pause)
            waited += pause


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
            print(f"  latency task {i + 1}/{tasks}: row {r * 1000:.0f} ms, Slack {s * 1000:.0f} ms", flush=True)
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


def rows_per_request(tpl: Template) -> tuple[int, int]:
    """(timeline rows, tasks) one copy of the template causes, from the tracker itself."""
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


def throughput(
    base: Path, db_url: str, tpl: Template, first: int, clients: int, seconds: float, replicas: int, sinks: str
) -> dict[str, float]:
    """Persisted spans/s through `serve` at defaults (see the module doc)."""
    servers = [serve(base / f"tp-{first}-{r}", db_url, sinks, None) for r in range(replicas)]
    per_rows, per_tasks = rows_per_request(tpl)
    # Enough unique bodies for 40,000 spans/s per replica; a run that uses them all stops early.
    count = min(3000, int(seconds * 40_000 * replicas / tpl.n_spans) + clients)
    bodies = [tpl.copy(first + k) for k in range(count)]
    counter = Counter(db_url, first, first + count)
    lock = threading.Lock()
    state = {"next": 0, "acked": 0, "refused": 0, "waited": 0.0, "given_up": 0}
    t0 = time.monotonic()
    stop_at = t0 + seconds

    def client(k: int) -> None:
        port = servers[k % replicas][1]
        while time.monotonic() < stop_at:
            with lock:
                if state["next"] >= len(bodies):
                    return
                body = bodies[state["next"]]
                state["next"] += 1
            ok, refused, waited = post(port, body, stop_at)
            with lock:
                state["refused"] += refused
                state["waited"] += waited
                if ok:
                    state["acked"] += 1
                else:
                    state["given_up"] += 1
                    return  # told to come back after the run's end

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(min(0.5, seconds / 4))  # past the first requests' start-up
    postmaster = postmaster_of(base / "postgres" / "pgdata")
    cpu_from = snapshot([proc.pid for proc, _ in servers], postmaster)
    for t in threads:
        t.join()
    sent_s = time.monotonic() - t0
    cpu = cores(cpu_from, snapshot([proc.pid for proc, _ in servers], postmaster))
    acked = int(state["acked"])
    want_rows, want_done = acked * per_rows, acked * per_tasks
    rows = done = 0
    try:
        while time.monotonic() - t0 < seconds + 180:
            rows, done = counter.now()
            if rows >= want_rows and done >= want_done:
                break
            time.sleep(0.1)
        persisted_s = time.monotonic() - t0
        time.sleep(0.5)  # the other sinks finish what the audit rows did not wait for
        lost = sum(dropped(proc) for proc, _ in servers)
    finally:
        counter.close()
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
    spans = acked * tpl.n_spans
    return {
        "spans": spans,
        "sent_s": sent_s,
        "persisted_s": persisted_s,
        "spans_s": spans / persisted_s,
        "rows_s": rows / persisted_s,
        "complete": float(rows >= want_rows and done >= want_done),
        "refused": state["refused"],
        "waited": state["waited"],
        "given_up": state["given_up"],
        "dropped": lost,
        "offered_s": spans / sent_s,
        "bodies_left": len(bodies) - state["next"],
        **{f"cpu_{k}": v for k, v in cpu.items()},
    }


async def migrated(url: str) -> None:
    import asyncpg

    from spanvisor_postgres.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="sending time per throughput run")
    ap.add_argument("--latency-tasks", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 latency tasks, 2 s, two runs")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.latency_tasks = 2.0, 2
    import spanvisor.tracking.tracker as tracker_module

    # serve runs with this interpreter's path: a compiled build on PYTHONPATH (make compiled) is serve's too.
    build = "compiled (mypyc)" if tracker_module.__file__.endswith(".so") else "pure Python"
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start, "
        f"tracker {build}"
    )
    runs = [
        ("agent", 1, 1, "postgres"),
        ("agent", 1, 1, "auto"),
        ("agent", 4, 1, "postgres"),
        ("mix", 1, 1, "postgres"),
    ]
    runs += [("agent", 4, 2, "postgres")] if not a.quick else []
    templates = {name: Template(MIXES[name]) for name in {r[0] for r in runs}}
    for tpl in templates.values():
        check_unique(tpl.copy(1), tpl.copy(2))
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-e2e-"))
    pg = EmbeddedPostgres(base / "postgres")
    results: list[tuple[str, int, int, str, dict[str, float]]] = []
    try:
        print("starting the embedded PostgreSQL (fsync on) …", flush=True)
        url = pg.acquire()
        asyncio.run(migrated(url))  # before serve starts, so the first query finds the tables
        to_row, to_slack = latency(base, url, tasks=a.latency_tasks)
        first = 1
        for name, clients, replicas, sinks in runs:
            print(f"  persisted: {name}, {clients} client(s), {replicas} replica(s), sinks {sinks} …", flush=True)
            r = throughput(base, url, templates[name], first, clients, a.seconds, replicas, sinks)
            first += 100_000
            results.append((name, clients, replicas, sinks, r))
            print(
                f"    {r['spans']:,.0f} spans acknowledged in {r['sent_s']:.1f} s ({r['offered_s']:,.0f}/s), "
                f"every row visible after {r['persisted_s']:.1f} s{'' if r['complete'] else ' (INCOMPLETE)'}, "
                f"{int(r['dropped']):,} events dropped",
                flush=True,
            )
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(
        "receipt (HTTP 200) -> finished task row in PostgreSQL: "
        f"p50 {pct(to_row, 50) * 1000:.0f} ms, p95 {pct(to_row, 95) * 1000:.0f} ms"
    )
    print(
        "receipt (HTTP 200) -> parent chat.postMessage at the fake Slack: "
        f"p50 {pct(to_slack, 50) * 1000:.0f} ms, p95 {pct(to_slack, 95) * 1000:.0f} ms"
    )
    for name, clients, replicas, sinks, r in results:
        print(
            f"{name:<5} {clients} client(s), {replicas} replica(s), sinks {sinks:<8}: {r['spans_s']:>7,.0f} spans/s "
            "persisted "
            f"({r['rows_s']:,.0f} timeline rows/s; {int(r['refused'])} 503s, {r['waited']:.1f} s waited on "
            f"Retry-After; {int(r['dropped']):,} events dropped by a sink)"
        )
        print(
            f"{'':<11}CPU while sending, in cores: serve {r['cpu_serve']:.2f} (its busiest thread "
            f"{r['cpu_busiest']:.2f}), PostgreSQL {r['cpu_postgres']:.2f}, this client {r['cpu_client']:.2f}"
        )


if __name__ == "__main__":
    main()
