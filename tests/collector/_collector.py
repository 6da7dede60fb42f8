"""What the Collector scenarios share: the shipped configs run verbatim by a
real Collector (:mod:`tests.collector.build`), agents exporting to it with the
OpenTelemetry SDK, and what reached PostgreSQL, counted task by task.

A Collector started here either keeps its own metrics off (each binds
localhost:8888 by default, so two at once collide) or serves them on a port
of the test's (``metrics_port``), read with :meth:`Collector.metrics`: the
one setting the tests add, in a second config file merged over the shipped
one.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tests.collector.build import ROOT
from tests.receiver.agent_traces import agent_task
from tests.receiver.serve_proc import ServeProcess, db_rows
from tests.waiting import wait_until

SINGLE_NODE = ROOT / "collector-config" / "single-node.yaml"
SIDECAR = ROOT / "collector-config" / "agent-sidecar.yaml"
GATEWAY = ROOT / "collector-config" / "gateway.yaml"
TOKENS = 1000 + 2000 + 3000  # agent_task's three model calls
SPANS_PER_TASK = 19  # agent_task with plain_per_step=2: root, 3 x (model call + 2), 3 x (checkpoint + 2)
WAIT_S = 180.0  # the Collector's retry waits up to 30 s between attempts (max_interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verbatim(config: Path, swaps: dict[str, str]) -> str:
    """The shipped config with exactly these strings replaced, each found once."""
    text = config.read_text()
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{old!r} is in {config.name} {text.count(old)} times"
        text = text.replace(old, new)
    return text


def single_node(root: Path, grpc: int, http: int, serve_port: int) -> Path:
    """``single-node.yaml`` as shipped, but for its addresses, serve's URL and
    its queue's folder (under ``root``)."""
    config = root / "single-node.yaml"
    config.write_text(
        verbatim(
            SINGLE_NODE,
            {
                "0.0.0.0:4317": f"127.0.0.1:{grpc}",
                "0.0.0.0:4318": f"127.0.0.1:{http}",
                "http://spanvisor:4318": f"http://127.0.0.1:{serve_port}",
                "/var/lib/otelcol/queue": str(root / "queue"),
            },
        )
    )
    return config


def gateway_config(root: Path, grpc: int, http: int, health: int, r1: int, r2: int) -> Path:
    """``gateway.yaml`` as shipped, but for its addresses, the two replicas'
    gRPC ports (``r1``, ``r2`` on loopback) and its queue's folder."""
    config = root / "gateway.yaml"
    config.write_text(
        verbatim(
            GATEWAY,
            {
                "0.0.0.0:4317": f"127.0.0.1:{grpc}",
                "0.0.0.0:4318": f"127.0.0.1:{http}",
                "0.0.0.0:13133": f"127.0.0.1:{health}",
                "/var/lib/otelcol/lb-queue": str(root / "lb-queue"),
                "spanvisor-1:4317": f"127.0.0.1:{r1}",
                "spanvisor-2:4317": f"127.0.0.1:{r2}",
            },
        )
    )
    return config


def telemetry(port: int | None) -> str:
    """The Collector's own metrics: off, or served in the Prometheus format on
    127.0.0.1:``port`` with the names its default reader gives them
    (``otelcol_exporter_sent_spans``: no unit or type suffix)."""
    if port is None:
        return "service:\n  telemetry:\n    metrics:\n      level: none\n"
    return (
        "service:\n  telemetry:\n    metrics:\n      level: normal\n      readers:\n"
        "        - pull:\n            exporter:\n              prometheus:\n"
        f"                host: 127.0.0.1\n                port: {port}\n"
        "                without_scope_info: true\n                without_units: true\n"
        "                without_type_suffix: true\n"
    )


Samples = dict[str, list[tuple[dict[str, str], float]]]
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> Samples:
    """A Prometheus text exposition's samples, as exposed (a counter's name
    as its exporter wrote it): name → (labels, value)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    found: Samples = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        found.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return found


@dataclass
class Collector:
    binary: Path
    config: Path
    log: Path
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # its environment at every start (None: this one)

    def start(self, port: int) -> None:
        out = self.log.open("ab")
        extra = self.config.with_name(self.config.stem + ".telemetry.yaml")
        extra.write_text(telemetry(self.metrics_port))
        argv = [str(self.binary), "--config", str(self.config), "--config", str(extra)]
        self.proc = subprocess.Popen(argv, stdout=out, stderr=out, env=self.env)

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_text()[-4000:]
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 60, "the Collector to listen")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> Samples:
        """The Collector's own metrics now: name → (labels, value) samples."""
        assert self.metrics_port is not None, "started without its metrics"
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def total(metrics: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0: none)."""
    return sum(v for got, v in metrics.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


@dataclass
class Setup:
    serve: ServeProcess
    collector: Collector
    db_url: str
    http: int  # the Collector's OTLP/HTTP port

    def send(self, prefix: str, n: int, grpc_port: int | None = None, first: int = 0) -> list[str]:
        """``n`` tasks (``prefix-first`` on) from an agent exporting OTLP/HTTP
        to the Collector (or OTLP/gRPC to ``grpc_port``); accepted by it on
        return."""
        exporter: SpanExporter
        if grpc_port is None:
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{self.http}/v1/traces", timeout=30)
        else:
            exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=30)
        tp = TracerProvider(resource=Resource.create({"service.name": f"agent-{prefix}"}))
        tp.add_span_processor(BatchSpanProcessor(exporter))
        rng = random.Random(f"{prefix}-{first}")
        ids = [f"{prefix}-{i}" for i in range(first, first + n)]
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


def exact(rows: dict[str, dict[str, Any]], ids: list[str]) -> None:
    """Each task of ``ids`` once, complete, with its three model calls' tokens once."""
    assert sorted(rows) == sorted(ids)
    for task_id, r in rows.items():
        assert (r["status"], r["input_tokens"], r["calls"]) == ("complete", TOKENS, 3), (task_id, r)
