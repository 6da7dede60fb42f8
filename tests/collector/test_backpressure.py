"""``spanvisor serve`` pushing back on a real OpenTelemetry Collector:
``collector-config/single-node.yaml`` run verbatim (only addresses, serve's
URL and the queue's folder substituted, :mod:`tests.collector._collector`)
in front of a real ``serve`` with PostgreSQL.

serve is made to push back by what really makes it do so: PostgreSQL stops
taking its writes. The test holds a ``SHARE`` lock on the tables the audit
sink writes (reads go on, writes wait), so the sink's batch waits, its
queue fills past its admission bound, and serve answers every export 503
with ``Retry-After``. Its real settings make that quick and sure, nothing
patched: a small sink queue (``SPANVISOR_QUEUE_SIZE``), a database command
timeout longer than the test (``SPANVISOR_DB_COMMAND_TIMEOUT``: the sink
waits on the lock rather than moving batches to its outbox, which would end
the push-back) and a ``Retry-After`` no backoff of the Collector's would
produce by chance (``SPANVISOR_RETRY_AFTER``: 7 s, said while the sink has
no recent rate).

Asserted: the Collector is told 503 (serve counts it) and waits the
``Retry-After`` it was given (its own log, ``interval: 7s``); once
PostgreSQL takes writes again it delivers, every task reaches PostgreSQL
exactly once with its tokens once, and the Collector's own metrics show
every span it accepted sent and none refused, failed or dropped, as do
serve's.
"""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.collector._collector import (
    SPANS_PER_TASK,
    WAIT_S,
    Collector,
    Samples,
    Setup,
    exact,
    free_port,
    scrape,
    single_node,
    total,
)
from tests.collector.build import build
from tests.receiver.serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

QUEUE_SIZE = 500  # the audit sink's queue: serve refuses above 80 % of it
RETRY_AFTER_S = 7
# The tables the audit sink writes each task and model call to.
HELD = ("agent_tasks", "agent_checkpoints")


class HeldTables:
    """PostgreSQL taking no writes to ``HELD`` (a ``SHARE`` lock held in an
    open transaction on a connection of its own) until :meth:`release`."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn: Any = None
        self.tx: Any = None

        async def hold() -> None:
            import asyncpg

            self.conn = await asyncpg.connect(url)
            self.tx = self.conn.transaction()
            await self.tx.start()
            await self.conn.execute(f"LOCK TABLE {', '.join(HELD)} IN SHARE MODE")

        asyncio.run_coroutine_threadsafe(hold(), self.loop).result(30)

    def release(self) -> None:
        async def let_go() -> None:
            if self.tx is not None:
                await self.tx.commit()
                self.tx = None
            if self.conn is not None:
                await self.conn.close()
                self.conn = None

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(let_go(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def serve_metrics(serve: ServeProcess) -> Samples:
    return scrape(f"http://127.0.0.1:{serve.admin}/metrics")


def pushing_back(serve: ServeProcess) -> str | None:
    """serve's Retry-After when it refuses an export now (an empty one, as a
    client would send it: refused before its body is read, else taken with
    nothing in it); None when it takes it."""
    req = urllib.request.Request(serve.url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=30):
            return None
    except urllib.error.HTTPError as exc:
        assert exc.code == 503, exc
        return str(exc.headers["Retry-After"])


@pytest.fixture
def setup(pg_server: Any, tmp_path: Any) -> Iterator[Setup]:
    binary = build()
    grpc, http, serve_port = free_port(), free_port(), free_port()
    config = single_node(tmp_path, grpc, http, serve_port)
    db_url = pg_server.database()
    env = {
        **console_env(tmp_path / "serve", SPANVISOR_DATABASE_URL=db_url),
        "SPANVISOR_OTLP_HTTP_PORT": str(serve_port),
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_QUEUE_SIZE": str(QUEUE_SIZE),
        "SPANVISOR_DB_COMMAND_TIMEOUT": "10m",
        "SPANVISOR_RETRY_AFTER": f"{RETRY_AFTER_S}s",
    }
    serve = ServeProcess(tmp_path / "serve", env, start=False)
    serve.start(timeout=300)
    collector = Collector(binary, config, tmp_path / "collector.log", metrics_port=free_port())
    collector.start(http)
    try:
        yield Setup(serve, collector, db_url, http)
    finally:
        collector.stop()
        serve.stop()
        print(f"--- the Collector's log ---\n{collector.log_text()[-8000:]}")


def test_serve_pushing_back_with_503_and_retry_after_the_collector_waits_and_delivers_everything_once(
    setup: Setup,
) -> None:
    held = HeldTables(setup.db_url)
    try:
        # Enough to fill the sink's queue past its bound while the writes wait.
        first = setup.send("B", 100)
        said = wait_until(lambda: pushing_back(setup.serve), WAIT_S, "serve to push back while PostgreSQL waits")
        assert said == str(RETRY_AFTER_S)
        # Under that load the agents go on: the Collector takes their spans, serve refuses them.
        later = setup.send("B", 100, first=100)
        wait_until(
            lambda: re.search(
                r"Will retry the request after interval.*\"interval\": \"7s\"", setup.collector.log_text()
            ),
            WAIT_S,
            "the Collector to wait the Retry-After serve gave",
        )
        # serve counted it: the probe's refusal and at least one of the Collector's.
        refused = total(
            serve_metrics(setup.serve), "spanvisor_receiver_requests_total", transport="http", outcome="retry"
        )
        assert refused >= 2
        assert "503" in setup.collector.log_text()
    finally:
        held.release()

    ids = first + later
    exact(setup.delivered(ids), ids)
    spans = len(ids) * SPANS_PER_TASK

    def all_sent() -> Samples | None:
        m = setup.collector.metrics()
        sent = total(m, "otelcol_exporter_sent_spans", exporter="otlp_http/spanvisor")
        queued = total(m, "otelcol_exporter_queue_size", exporter="otlp_http/spanvisor", data_type="traces")
        return m if sent >= spans and queued == 0 else None

    m = wait_until(all_sent, WAIT_S, "the Collector's metrics to count every span sent")
    assert total(m, "otelcol_receiver_accepted_spans", receiver="otlp") == spans
    assert total(m, "otelcol_exporter_sent_spans", exporter="otlp_http/spanvisor") == spans
    # The Collector counts a failure when it happens (a counter it never
    # needed is not exposed at all): none refused, failed to enqueue or to send.
    for name in ("otelcol_receiver_refused_spans", "otelcol_exporter_enqueue_failed_spans"):
        assert total(m, name) == 0, (name, m.get(name))
    assert total(m, "otelcol_exporter_send_failed_spans") == 0, m.get("otelcol_exporter_send_failed_spans")
    lost = {
        name: samples
        for name, samples in m.items()
        if re.search(r"(refused|failed|dropped)", name) and any(v for _, v in samples)
    }
    assert lost == {}, lost
    # serve dropped nothing either.
    assert total(serve_metrics(setup.serve), "spanvisor_dropped_total") == 0
