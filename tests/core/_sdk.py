"""A real TracerProvider with the spanvisor processor and an in-memory span exporter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.config import Config
from spanvisor.otel.processor import SpanvisorSpanProcessor


def _config(**env: str) -> Config:
    return Config.load(env=env, extra=()).with_values(shutdown_timeout_s=2.0)


class Agent:
    """A TracerProvider with the spanvisor processor and an in-memory exporter."""

    def __init__(self, sinks: Sequence[Any], config: Config | None = None) -> None:
        self.processor = SpanvisorSpanProcessor(sinks=list(sinks), config=config or _config())
        self.exported = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exported))
        self.tracer = self.provider.get_tracer("agent")

    def flush(self, timeout_s: float = 10.0) -> bool:
        return self.processor.force_flush(int(timeout_s * 1000))

    def close(self, timeout_s: float = 2.0) -> None:
        self.processor.pipeline.shutdown(timeout_s)
