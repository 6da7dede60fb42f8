"""The helpers' live channel: a task's open-root facts as log records.

OTLP carries spans once they end, so a task whose spans leave the process
(an OTLP exporter to a Collector and ``spanvisor serve``, or
``SpanvisorSpanExporter`` behind a BatchSpanProcessor) would show nothing of
its root until the root ends. The helpers of :mod:`spanvisor.agent` therefore
also say what they write on the root (its start, checkpoints, artifacts,
status, results, context) as OpenTelemetry log records named by
``event_name``, in the root's context (:mod:`spanvisor.spans.live`), and a
heartbeat every :data:`HEARTBEAT_S` while the task says nothing else.

Where the records go is decided once per TracerProvider (:func:`channel`):

* the provider runs ``SpanvisorSpanProcessor``: nowhere; the processor reads
  the open root itself, and a record would say it twice;
* it exports to ``SpanvisorSpanExporter``: straight into that pipeline;
* it exports elsewhere: through the global SDK ``LoggerProvider`` when one
  is set (``OTEL_LOGS_EXPORTER``, a distro), else through one of our own
  with an OTLP log exporter aimed where the spans go (same protocol,
  endpoint and headers), shut down at interpreter exit;
* it exports nothing (no SDK): nowhere.

``SPANVISOR_LIVE_CHANNEL=off`` turns it off. On the agent's thread a record
costs a tuple and a ``deque.append`` (:meth:`LiveChannel.say`); a daemon
thread emits them every :data:`SEND_EVERY_S`, sends heartbeats, and flushes
at a task's end and at exit, so nothing said before a crash stays behind.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from spanvisor.spans import conventions as cv

log = logging.getLogger("spanvisor.live")

HEARTBEAT_S = 30.0
SEND_EVERY_S = 0.05
MAX_QUEUED = 10_000
# A task's end waits at most this long for its records to leave.
END_FLUSH_MS = 2_000

Record = tuple[Span, str, int, Mapping[str, Any]]


class LiveChannel:
    """Records for one destination: queued on the agent's thread, sent from ours."""

    def __init__(self, send: Callable[[list[Record]], None], flush: Callable[[int], object] | None) -> None:
        self._send = send
        self._flush = flush
        self._queue: deque[Record] = deque(maxlen=MAX_QUEUED)
        self._open: dict[int, tuple[Span, list[float]]] = {}  # span id -> (root, [last said, monotonic])
        self._lock = threading.Lock()  # one sender at a time: the thread, a task's end, exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spanvisor-live", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def say(self, root: Span, name: str, attrs: Mapping[str, Any], time_ns: int) -> None:
        """Queue one record (the agent's thread: O(1), never raises)."""
        self._queue.append((root, name, time_ns, attrs))
        seen = self._open.get(root.get_span_context().span_id)
        if seen is not None:
            seen[1][0] = time.monotonic()

    def opened(self, root: Span, attrs: Mapping[str, Any], start_ns: int) -> None:
        self._open[root.get_span_context().span_id] = (root, [time.monotonic()])
        self.say(root, cv.LIVE_TASK_START, attrs, start_ns)

    def closed(self, root: Span) -> None:
        """The task ended: its records (and any before them) leave now."""
        self._open.pop(root.get_span_context().span_id, None)
        self.drain(flush=True)

    def drain(self, flush: bool = False) -> None:
        with self._lock:
            batch: list[Record] = []
            while self._queue:
                batch.append(self._queue.popleft())
            try:
                if batch:
                    self._send(batch)
                if flush and self._flush is not None:
                    self._flush(END_FLUSH_MS)
            except Exception:  # telemetry never breaks the agent
                log.exception("could not send %d live-channel records", len(batch))

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for root, seen in list(self._open.values()):
            if now - seen[0] >= HEARTBEAT_S:
                seen[0] = now
                self._queue.append((root, cv.LIVE_HEARTBEAT, time.time_ns(), {}))

    def _run(self) -> None:
        while not self._stop.wait(SEND_EVERY_S):
            self._heartbeats()
            if self._queue:
                self.drain()

    def close(self) -> None:
        self._stop.set()
        self.drain(flush=True)


def _exporters(multi: Any) -> list[Any]:
    """The span exporters (or processors) behind an SDK tracer's processor, best effort."""
    out: list[Any] = []
    for p in getattr(multi, "_span_processors", ()) or ():
        inner = getattr(p, "_batch_processor", None)
        exp = getattr(inner, "_exporter", None) or getattr(p, "span_exporter", None)
        out.append(exp if exp is not None else p)
    return out


def _log_sender(exporters: list[Any], resource: Any) -> tuple[Callable[[list[Record]], None], Any] | None:
    from opentelemetry._logs import get_logger_provider

    provider = get_logger_provider()
    owned = None
    if getattr(provider, "add_log_record_processor", None) is None:
        owned = provider = _own_logger_provider(exporters, resource)
        if owned is None:
            return None
    logger = provider.get_logger("spanvisor.live")

    def send(batch: list[Record]) -> None:
        for root, name, t, attrs in batch:
            ctx = trace.set_span_in_context(root)
            logger.emit(timestamp=t, context=ctx, event_name=name, attributes=dict(attrs))

    return send, owned


def _own_logger_provider(exporters: list[Any], resource: Any) -> Any:
    """A LoggerProvider of ours, exporting OTLP logs where the spans go."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    for exp in exporters:
        module = type(exp).__module__
        endpoint = getattr(exp, "_endpoint", None)
        headers = getattr(getattr(exp, "_client", None), "_headers", None) or getattr(exp, "_headers", None)
        if module.startswith("opentelemetry.exporter.otlp.proto.http"):
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

            if isinstance(endpoint, str) and endpoint.endswith("/v1/traces"):
                endpoint = endpoint[: -len("/v1/traces")] + "/v1/logs"
            keep = {k: v for k, v in dict(headers or {}).items() if k.lower() not in ("content-type", "user-agent")}
            log_exporter: Any = HttpLogs(endpoint=endpoint, headers=keep or None)
        elif module.startswith("opentelemetry.exporter.otlp.proto.grpc"):
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

            log_exporter = GrpcLogs(
                endpoint=endpoint, headers=headers or None, insecure=getattr(exp, "_insecure", None)
            )
        else:
            continue
        provider = LoggerProvider(resource=resource) if resource is not None else LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        atexit.register(provider.shutdown)
        return provider
    return None


def _to_pipeline(pipeline: Any, resource: Mapping[str, Any]) -> Callable[[list[Record]], None]:
    from spanvisor.spans.live import LiveFact

    def submit(batch: list[Record]) -> None:
        facts = []
        for root, name, t, attrs in batch:
            c = root.get_span_context()
            facts.append(LiveFact(format(c.trace_id, "032x"), format(c.span_id, "016x"), name, t, attrs, resource))
        pipeline.submit_live(facts)

    return submit


def _find(multi: Any, resource: Any) -> LiveChannel | None:
    from spanvisor.otel.exporter import SpanvisorSpanExporter
    from spanvisor.otel.processor import SpanvisorSpanProcessor

    exporters = _exporters(multi)
    if not exporters or any(isinstance(e, SpanvisorSpanProcessor) for e in exporters):
        return None
    for e in exporters:
        if isinstance(e, SpanvisorSpanExporter):
            svc = resource.attributes.get(cv.SERVICE_NAME) if resource is not None else None
            return LiveChannel(_to_pipeline(e.pipeline, {cv.SERVICE_NAME: svc} if svc is not None else {}), None)
    sender = _log_sender(exporters, resource)
    if sender is None:
        return None
    send, owned = sender
    return LiveChannel(send, owned.force_flush if owned is not None else None)


_channels: weakref.WeakKeyDictionary[Any, LiveChannel | None] = weakref.WeakKeyDictionary()
_found = threading.Lock()


def channel(tracer: Any) -> LiveChannel | None:
    """The live channel for the spans of ``tracer`` (an SDK tracer; found
    once per TracerProvider), or None."""
    if os.environ.get("SPANVISOR_LIVE_CHANNEL", "auto").strip().lower() in ("off", "false", "0", "no"):
        return None
    tracer = getattr(tracer, "_tracer", tracer)  # a ProxyTracer: the tracer it stands for now
    multi = getattr(tracer, "span_processor", None)
    if multi is None:
        return None  # not the SDK's tracer: nothing leaves through it
    try:
        return _channels[multi]
    except (KeyError, TypeError):
        pass
    with _found:
        try:
            found = _find(multi, getattr(tracer, "resource", None))
        except Exception:
            log.exception("no live channel: could not inspect the TracerProvider")
            found = None
        if found is not None or _exporters(multi):
            _channels[multi] = found  # a provider with no exporter yet may get one
    return found


__all__ = ["HEARTBEAT_S", "LiveChannel", "channel"]
