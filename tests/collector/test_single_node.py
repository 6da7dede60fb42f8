"""``collector-config/single-node.yaml``, run verbatim by a real OpenTelemetry
Collector (built from its own modules: :mod:`tests.collector.build`) in
front of a real ``spanvisor serve`` with PostgreSQL.

Only the listen addresses, serve's URL and the queue's folder are
substituted (each exactly once: the config is otherwise as shipped). The
agents are the OpenTelemetry SDK's own OTLP/HTTP exporter. What reaches
PostgreSQL is counted exactly, task by task: every task once, complete,
with its three model calls' tokens once.

* Straight through: agents → Collector → serve.
* serve down while agents go on (SIGTERM, restarted on the same port after
  the Collector has held and retried its batches): nothing lost, nothing
  doubled.
* The Collector restarted with its ``file_storage`` queue holding what
  serve never took (serve down meanwhile): the new Collector delivers it
  from disk once serve is back, once.
* ``agent-sidecar.yaml``, verbatim too, in front of it, the agents over
  OTLP/gRPC. (``gateway.yaml`` needs the contrib ``load_balancing``
  exporter, which the module proxy does not serve: not run here.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tests.collector.build import ROOT, build
from tests.receiver.agent_traces import agent_task
from tests.receiver.serve_proc import ServeProcess, console_env, db_rows
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

CONFIG = ROOT / "collector-config" / "single-node.yaml"
SIDECAR = ROOT / "collector-config" / "agent-sidecar.yaml"
TOKENS = 1000 + 2000 + 3000  # agent_task's three model calls
WAIT_S = 180.0  # the Collector's retry waits up to 30 s between attempts (max_interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verbatim(text: str, swaps: dict[str, str]) -> str:
    """The shipped config with exactly these strings replaced, each found once."""
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{old!r} is in {CONFIG.name} {text.count(old)} times"
        text = text.replace(old, new)
    return text


@dataclass
class Collector:
    binary: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> None:
        out = self.log.open("ab")
        # A second file merged over the shipped one: the Collector's own
        # metrics off (by default each binds localhost:8888, so two at once
        # collide), the one setting the test adds.
        quiet = self.config.with_name(self.config.stem + ".telemetry.yaml")
        quiet.write_text("service:\n  telemetry:\n    metrics:\n      level: none\n")
        argv = [str(self.binary), "--config", str(self.config), "--config", str(quiet)]
        self.proc = subprocess.Popen(argv, stdout=out, stderr=out)

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 60, "the Collector to listen")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@dataclass
class Setup:
    serve: ServeProcess
    collector: Collector
    db_url: str
    http: int  # the Collector's OTLP/HTTP port

    def send(self, prefix: str, n: int, grpc_port: int | None = None) -> list[str]:
        """``n`` tasks from an agent exporting OTLP/HTTP to the Collector (or
        OTLP/gRPC to ``grpc_port``); accepted by it on return."""
        exporter: SpanExporter
        if grpc_port is None:
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{self.http}/v1/traces", timeout=30)
        else:
            exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=30)
        tp = TracerProvider(resource=Resource.create({"service.name": f"agent-{prefix}"}))
        tp.add_span_processor(BatchSpanProcessor(exporter))
        import random

        rng = random.Random(prefix)
        ids = [f"{prefix}-{i}" for i in range(n)]
        for task_id in ids:
            agent_task(tp.get_tracer("agent"), task_id, rng, plain_per_step=2)
        assert tp.force_flush(60_000), "the Collector did not take the agent's spans"
        tp.shutdown()
        return ids

    def rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        got = db_rows(
            self.db_url,
            "SELECT t.task_id, t.status, t.input_tokens,"
            " (SELECT count(*) FROM agent_checkpoints c WHERE c.task_id = t.task_id AND c.source = 'model_call') AS calls"
            " FROM agent_tasks t WHERE t.task_id = ANY($1::text[])",
            ids,
        )
        return {r["task_id"]: r for r in got}

    def delivered(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Every task of ``ids`` complete in PostgreSQL (waited for), as its row says."""

        def all_in() -> dict[str, dict[str, Any]] | None:
            rows = self.rows(ids)
            done = [r for r in rows.values() if r["status"] == "complete"]
            return rows if len(done) == len(ids) else None

        return dict(wait_until(all_in, WAIT_S, f"{len(ids)} tasks through the Collector"))


def _exact(rows: dict[str, dict[str, Any]], ids: list[str]) -> None:
    assert sorted(rows) == sorted(ids)
    for task_id, r in rows.items():
        assert (r["status"], r["input_tokens"], r["calls"]) == ("complete", TOKENS, 3), (task_id, r)


@pytest.fixture(scope="module")
def setup(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    binary = build()
    root = tmp_path_factory.mktemp("collector")
    grpc, http, serve_port = free_port(), free_port(), free_port()
    config = root / "single-node.yaml"
    config.write_text(
        verbatim(
            CONFIG.read_text(),
            {
                "0.0.0.0:4317": f"127.0.0.1:{grpc}",
                "0.0.0.0:4318": f"127.0.0.1:{http}",
                "http://spanvisor:4318": f"http://127.0.0.1:{serve_port}",
                "/var/lib/otelcol/queue": str(root / "queue"),
            },
        )
    )
    db_url = pg_server.database()
    env = {
        **console_env(root / "serve", SPANVISOR_DATABASE_URL=db_url),
        # A fixed port: a serve started again is where the Collector sends.
        "SPANVISOR_OTLP_HTTP_PORT": str(serve_port),
        "SPANVISOR_SINKS": "postgres",
    }
    serve = ServeProcess(root / "serve", env, start=False)
    serve.start(timeout=300)
    collector = Collector(binary, config, root / "collector.log")
    collector.start(http)
    try:
        yield Setup(serve, collector, db_url, http)
    finally:
        collector.stop()
        serve.stop()
        print(f"--- the Collector's log ---\n{collector.log.read_text(errors='replace')[-6000:]}")


def test_agents_through_the_shipped_single_node_config_reach_serve_exactly_once(setup: Setup) -> None:
    ids = setup.send("C1", 20)
    _exact(setup.delivered(ids), ids)


def test_serve_down_while_agents_go_on_loses_nothing_and_doubles_nothing(setup: Setup) -> None:
    setup.serve.terminate()
    ids = setup.send("C2", 20)  # taken by the Collector, which holds them while serve is away
    setup.serve.start(timeout=300)  # the same port: the Collector's retry finds it again
    _exact(setup.delivered(ids), ids)


def test_a_collector_restarted_with_its_disk_queue_delivers_what_it_held_once(setup: Setup) -> None:
    setup.serve.terminate()
    ids = setup.send("C3", 20)
    setup.collector.stop()  # its queue, on disk, holds what serve never took
    queue = setup.collector.config.parent / "queue"
    assert any(queue.iterdir()), "the Collector's queue folder is empty"
    setup.collector.start(setup.http)
    setup.serve.start(timeout=300)
    _exact(setup.delivered(ids), ids)
    # Nothing of the first two tests came again from the restarted queue.
    _exact(setup.rows([f"C1-{i}" for i in range(20)]), [f"C1-{i}" for i in range(20)])
    assert os.path.getsize(setup.collector.log) > 0


def test_agents_over_grpc_through_the_shipped_sidecar_then_the_single_node_collector(
    setup: Setup, tmp_path: Path
) -> None:
    """agent-sidecar.yaml verbatim in front of the single-node Collector (in
    the gateway's place: gateway.yaml needs the load_balancing exporter,
    which cannot be built here), the agents over OTLP/gRPC."""
    grpc, http = free_port(), free_port()
    config = tmp_path / "agent-sidecar.yaml"
    config.write_text(
        verbatim(
            SIDECAR.read_text(),
            {
                "127.0.0.1:4317": f"127.0.0.1:{grpc}",
                "127.0.0.1:4318": f"127.0.0.1:{http}",
                "http://otel-gateway:4318": f"http://127.0.0.1:{setup.http}",
            },
        )
    )
    sidecar = Collector(setup.collector.binary, config, tmp_path / "sidecar.log")
    sidecar.start(grpc)
    try:
        ids = setup.send("C4", 20, grpc_port=grpc)
        _exact(setup.delivered(ids), ids)
    finally:
        sidecar.stop()
