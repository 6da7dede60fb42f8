"""The decision-log tests' parts: a Collector stand-in on loopback that decodes
OTLP/HTTP ``ExportLogsServiceRequest`` bodies, decisions to feed the sink,
and the sink itself started on a real config.

Until the package is installed (``pip install -e .``), ``plugins/`` is put on
``sys.path`` and the sink's settings are passed to ``Config.load``.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("spanvisor_decisionlogs") is None:
    sys.path.insert(0, str(ROOT / "plugins"))

from aiohttp import web  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue  # noqa: E402
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord  # noqa: E402

from spanvisor.config import Config, plugin_settings  # noqa: E402
from spanvisor.events import ApprovalRequest, Decision, HumanIntervention, TaskView  # noqa: E402
from spanvisor.sink import SinkContext  # noqa: E402
from spanvisor.statestores.memory import InMemoryStateStore  # noqa: E402
from spanvisor.stats import PipelineStats  # noqa: E402
from spanvisor_decisionlogs import DecisionLogSink  # noqa: E402

T0 = 1_795_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT_SPAN = "00f067aa0ba902b7"
VIEW = TaskView(
    task_id="T1",
    trace_id=TRACE,
    root_span_id=ROOT_SPAN,
    agent_id="deployer",
    agent_name="Deployer",
    run_id="r1",
    task_name="Deploy web to prod",
    status="awaiting_approval",
)
ACTION = '{"arguments":{"env":"prod"},"tool":"deploy"}'
REQUEST = ApprovalRequest("a1", "Deploy to prod?", digest="dg1", agent="deployer", action=ACTION, requester="bot")


def decision(action: str = "approve", iid: str = "iv-1", **kw: Any) -> Decision:
    fields: dict[str, Any] = {"actor_name": "alice", "source": "slack", "verified": True, "run_id": "r1"}
    if action in ("approve", "reject"):
        fields["approval_id"] = "a1"
    fields.update(kw)
    return Decision(iid, "T1", action, fields.pop("actor_id", "U1"), T0, **fields)  # type: ignore[arg-type]


def intervention(d: Decision | None = None, **kw: Any) -> HumanIntervention:
    d = d or decision()
    fields: dict[str, Any] = {"event_id": d.intervention_id, "time_ns": d.time_ns, "task": VIEW, "decision": d}
    if d.action in ("approve", "reject"):
        fields["request"] = REQUEST
    fields.update(kw)
    return HumanIntervention(**fields)


def free_port() -> int:
    """A loopback port nothing listens on (until the Collector opens it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value_of(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


def attributes(record: Any) -> dict[str, Any]:
    """A protobuf record's (or resource's, or scope's) attributes as a dict."""
    return {kv.key: value_of(kv.value) for kv in record.attributes}


@dataclass(frozen=True)
class Export:
    """One OTLP/HTTP request as the Collector saw it."""

    headers: dict[str, str]
    request: ExportLogsServiceRequest

    def records(self) -> list[tuple[Any, Any, LogRecord]]:
        """(resource, scope, record) of every log record in the request."""
        return [
            (rl.resource, sl.scope, r)
            for rl in self.request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]


class Collector:
    """An OTLP/HTTP logs endpoint: decodes, records, answers 200. Runs its own
    loop in a thread: the sink's exporter posts from the SDK's batch thread."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.exports: list[Export] = []
        self._runner: web.AppRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="otlp-collector", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def records(self) -> list[LogRecord]:
        return [r for e in list(self.exports) for _, _, r in e.records()]

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def open(self) -> Collector:
        self._run(self._open())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/logs", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportLogsServiceRequest()
        message.ParseFromString(body)
        self.exports.append(Export(dict(request.headers), message))
        return web.Response(body=ExportLogsServiceResponse().SerializeToString(), content_type="application/x-protobuf")


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector().open()
    yield c
    c.stop()


def config(env: dict[str, str]) -> Config:
    extra = plugin_settings()
    if not any(s.name == "decision_logs_endpoint" for s in extra):
        extra = [*extra, *DecisionLogSink.settings]
    return Config.load(env=env, extra=extra)


async def started(env: dict[str, str]) -> DecisionLogSink:
    """A sink started on ``env``, with its own stats."""
    sink = DecisionLogSink()
    await sink.start(SinkContext(config(env), InMemoryStateStore(), PipelineStats()))
    return sink


def stats(sink: DecisionLogSink) -> PipelineStats:
    assert sink.ctx is not None
    return sink.ctx.stats
