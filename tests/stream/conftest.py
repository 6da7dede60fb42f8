"""The stream tests' parts: a real receiver-path pipeline with the stream
sink and an in-memory sink (the pipeline's event list), served by a real
``Receiver`` (OTLP/HTTP with the control API and the admin port), and spans
made by the real OTel SDK, posted as OTLP/HTTP."""

from __future__ import annotations

import asyncio
import random
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

from spanvisor.stream.sink import StreamSink
from spanvisor.testing import InMemorySink
from tests.receiver.agent_traces import Capture, agent_task, request_for
from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline

TOKEN = "s3cret-token"


@dataclass
class Served:
    receiver: RunningReceiver
    sink: InMemorySink
    stream: StreamSink

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.receiver.receiver.http_port}"

    @property
    def events_url(self) -> str:
        return self.base + "/v1/events"

    @property
    def admin_events_url(self) -> str:
        return self.receiver.admin_url + "/v1/events"

    def head(self) -> str:
        """An ``after`` value for "from now on": the position of a client
        that was connected until now, so, as its connection did, it asks
        the feed to record what follows (nobody reads an unrecorded stream)."""
        assert self.stream.ring is not None and self.stream.loop is not None
        asyncio.run_coroutine_threadsafe(self.stream.want(), self.stream.loop).result(10)
        return f"{self.stream.ring.epoch}:{self.stream.ring.head}"

    def post(self, spans: Sequence[ReadableSpan]) -> None:
        body = request_for(spans).SerializeToString()
        req = urllib.request.Request(
            self.base + "/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


class _SeededIds(IdGenerator):
    """Ids from a private generator: hypothesis seeds the global ``random``
    alike for every example, and the SDK's ids come from it, so two examples
    would send the same span ids (and the receiver drop them as duplicates)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"ids-{seed}")

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


def tasks(n: int, seed: int, agent_id: str = "rivet", **kw: Any) -> list[ReadableSpan]:
    """``n`` agent tasks ``T<seed>-<i>`` made by the real SDK (see agent_traces)."""
    cap = Capture()
    tp = TracerProvider(resource=Resource.create({"service.name": "agent-svc"}), id_generator=_SeededIds(seed))
    tp.add_span_processor(SimpleSpanProcessor(cap))
    rng = random.Random(seed)
    for i in range(n):
        agent_task(tp.get_tracer("agent"), f"T{seed}-{i}", rng, agent_id=agent_id, **kw)
    tp.shutdown()
    return cap.spans


def serve_stream(tmp_path: Path, audit: bool = False, **env: str) -> Served:
    """``audit``: the PostgreSQL sink runs too (its writer's transactions
    then carry the stream feed's rows)."""
    sink, stream = InMemorySink(), StreamSink()
    sinks: list[Any] = [sink, stream]
    if audit:
        from spanvisor_postgres import PostgresSink

        sinks.append(PostgresSink())
    pipeline = make_pipeline(tmp_path / "data", sinks, plugins=True, SPANVISOR_OTLP_TOKEN=TOKEN, **env)
    receiver = RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN))
    return Served(receiver, sink, stream)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = serve_stream(tmp_path)
    yield s
    s.receiver.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def kw(**extra: Any) -> dict[str, Any]:
    return {"headers": dict(AUTH), **extra}
