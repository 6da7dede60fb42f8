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
  OTLP/gRPC. (``gateway.yaml`` runs in test_gateway.py, on a Collector of
  an older release: the module proxy serves no newer ``load_balancing``.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector._collector import (
    SIDECAR,
    Collector,
    Setup,
    exact,
    free_port,
    single_node,
    verbatim,
)
from tests.collector.build import build
from tests.receiver.serve_proc import ServeProcess, console_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


@pytest.fixture(scope="module")
def setup(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    binary = build()
    root = tmp_path_factory.mktemp("collector")
    grpc, http, serve_port = free_port(), free_port(), free_port()
    config = single_node(root, grpc, http, serve_port)
    db_url = pg_server.database()
    env = {
        **console_env(root / "serve", SPANVISOR_DATABASE_URL=db_url),
        # A fixed port: a serve started again is where the Collector sends.
        "SPANVISOR_OTLP_HTTP_PORT": str(serve_port),
        "SPANVISOR_SINKS": "postgres",
        # Not open: serve makes its token at its first start, and the
        # Collector on the same host is given it as the config says.
        "SPANVISOR_OPEN": "0",
    }
    serve = ServeProcess(root / "serve", env, start=False)
    serve.start(timeout=300)
    token = (root / "serve" / "serve-token").read_text().strip()
    collector = Collector(binary, config, root / "collector.log", env={**os.environ, "SPANVISOR_OTLP_TOKEN": token})
    collector.start(http)
    try:
        yield Setup(serve, collector, db_url, http)
    finally:
        collector.stop()
        serve.stop()
        print(f"--- the Collector's log ---\n{collector.log.read_text(errors='replace')[-6000:]}")


def test_agents_through_the_shipped_single_node_config_reach_serve_exactly_once(setup: Setup) -> None:
    ids = setup.send("C1", 20)
    exact(setup.delivered(ids), ids)


def test_serve_down_while_agents_go_on_loses_nothing_and_doubles_nothing(setup: Setup) -> None:
    setup.serve.terminate()
    ids = setup.send("C2", 20)  # taken by the Collector, which holds them while serve is away
    setup.serve.start(timeout=300)  # the same port: the Collector's retry finds it again
    exact(setup.delivered(ids), ids)


def test_a_collector_restarted_with_its_disk_queue_delivers_what_it_held_once(setup: Setup) -> None:
    setup.serve.terminate()
    ids = setup.send("C3", 20)
    setup.collector.stop()  # its queue, on disk, holds what serve never took
    queue = setup.collector.config.parent / "queue"
    assert any(queue.iterdir()), "the Collector's queue folder is empty"
    setup.collector.start(setup.http)
    setup.serve.start(timeout=300)
    exact(setup.delivered(ids), ids)
    # Nothing of the first two tests came again from the restarted queue.
    exact(setup.rows([f"C1-{i}" for i in range(20)]), [f"C1-{i}" for i in range(20)])
    assert os.path.getsize(setup.collector.log) > 0


def test_agents_over_grpc_through_the_shipped_sidecar_then_the_single_node_collector(
    setup: Setup, tmp_path: Path
) -> None:
    """agent-sidecar.yaml verbatim in front of the single-node Collector (in
    the gateway's place, which test_gateway.py runs), the agents over
    OTLP/gRPC."""
    grpc, http = free_port(), free_port()
    config = tmp_path / "agent-sidecar.yaml"
    config.write_text(
        verbatim(
            SIDECAR,
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
        exact(setup.delivered(ids), ids)
    finally:
        sidecar.stop()
