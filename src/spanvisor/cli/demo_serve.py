"""``spanvisor demo --via-serve``: the same agents, as a Collector deployment sees them.

The demo's pipeline runs behind the OTLP receiver of ``spanvisor serve``
(HTTP on a free loopback port, no journal), and the agents know nothing of
it: their spans leave through the SDK's BatchSpanProcessor and OTLP/HTTP
exporter at its default delays, their stdlib logging through a batch log
processor and the OTLP log exporter, and the helper's live channel
(:mod:`spanvisor.otel.live`) sends what they say of their open roots as log
records to the same endpoint. Approvals are read back from the receiver's
control API (``SPANVISOR_CONTROL_URL``). What the sinks show is therefore
what a team behind a Collector sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from typing import Any

from spanvisor.config import Config
from spanvisor.receiver.server import Receiver, ReceiverSettings


class LocalServe:
    """The OTLP receiver of ``spanvisor serve`` on a private loop thread."""

    def __init__(self, pipeline: Any, config: Config) -> None:
        settings = ReceiverSettings.from_config(config)
        self.settings = dataclasses.replace(
            settings, bind="127.0.0.1", http_port=0, grpc_port=None, admin_port=None, token=None, journal_path=None
        )
        self.pipeline = pipeline
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spanvisor-demo-serve", daemon=True)
        self.receiver = Receiver(pipeline, self.settings)

    def start(self, timeout_s: float = 30.0) -> LocalServe:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(timeout_s)
        return self

    @property
    def url(self) -> str:
        """The base URL agents export to (``/v1/traces``, ``/v1/logs``) and read decisions from."""
        return f"http://127.0.0.1:{self.receiver.http_port}"

    def stop(self, timeout_s: float = 30.0) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)


def agent_providers(url: str, resource: Any, fast: bool) -> tuple[Any, Any]:
    """A TracerProvider and a LoggerProvider exporting OTLP/HTTP to ``url``,
    as an agent behind a Collector has them (the SDK's default delays, or
    200 ms for a demo of a few seconds)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    delay: dict[str, Any] = {"schedule_delay_millis": 200} if fast else {}
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces"), **delay))
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs"), **delay)
    )
    return tracer_provider, logger_provider


def read_decisions_from(url: str) -> None:
    """The helper reads approvals and cancels from this control API."""
    os.environ["SPANVISOR_CONTROL_URL"] = url


__all__ = ["LocalServe", "agent_providers", "read_decisions_from"]
