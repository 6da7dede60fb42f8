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

* it exports to ``SpanvisorSpanExporter``: straight into that pipeline;
* it exports elsewhere (an OTLP exporter to a Collector): through the global
  SDK ``LoggerProvider`` when one is set (``OTEL_LOGS_EXPORTER``, a distro),
  else through one of our own with an OTLP log exporter aimed where the
  spans go (same protocol, endpoint and headers), shut down at exit. This
  holds next to ``SpanvisorSpanProcessor`` too: the spans that leave need
  their live records; the in-process tracker ignores records about roots it
  reads itself, so nothing is said twice;
* it runs only ``SpanvisorSpanProcessor``, or exports nothing: nowhere (the
  processor reads the open root itself).

``SPANVISOR_LIVE_CHANNEL=off`` turns it off. On the agent's thread a record
costs a tuple and a ``deque.append`` (:meth:`LiveChannel.say`), and a task's
end only asks for a flush (a task's start into a pipeline in this process is
one queue put, so it is ahead of the task's spans; beside an OTLP exporter a
stamped child span of the root says the start too, through the span
exporter, for the same reason:
:func:`spanvisor.agent.task._start_span`); a daemon thread emits the records every
:data:`SEND_EVERY_S` (at once when a task ends), sends heartbeats and
flushes, so the agent never waits on the network; at interpreter exit what
is left is sent, waiting at most :data:`END_FLUSH_MS`.
"""

from __future__ import annotations

import atexit
import itertools
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

from spanvisor.config.parsers import p_duration
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import RECORD_ID

log = logging.getLogger("spanvisor.live")

HEARTBEAT_S = 30.0  # SPANVISOR_HEARTBEAT overrides (seconds, or 30s / 1m)
SEND_EVERY_S = 0.05
MAX_QUEUED = 10_000
# A task's end waits at most this long for its records to leave.
END_FLUSH_MS = 2_000

Record = tuple[Span, str, int, Mapping[str, Any]]


class LiveChannel:
    """Records for one destination: queued on the agent's thread, sent from ours.

    The agent's thread only appends (:meth:`say`) and, at a task's end, asks
    for a flush (:meth:`closed`); every send and flush, which may wait on a
    network that is down, happens on the channel's own thread. At
    interpreter exit :meth:`close` sends what is left, waiting at most
    :data:`END_FLUSH_MS`.
    """

    def __init__(
        self,
        send: Callable[[list[Record]], None],
        flush: Callable[[int], object] | None,
        spans_leave: bool = False,
        direct: bool = False,
    ) -> None:
        self._send = send
        # ``send`` hands records to a pipeline in this process (a queue put):
        # a task's start goes at once, on the agent's thread.
        self.direct = direct
        # The records leave as OTLP logs beside the spans' own exporter: a
        # receiver may get a task's spans before its start record.
        self.spans_leave = spans_leave
        self._flush = flush
        self._queue: deque[Record] = deque(maxlen=MAX_QUEUED)
        self._open: dict[int, tuple[Span, list[float]]] = {}  # span id -> (root, [last said, monotonic])
        self._lock = threading.Lock()  # one sender at a time: the thread, exit
        self._stop = threading.Event()
        self._flush_due = threading.Event()
        self._heartbeat_s = _heartbeat_s()
        self._thread = threading.Thread(target=self._run, name="spanvisor-live", daemon=True)
        self._thread.start()
        try:
            # Before the pipeline's own exit flush (these hooks run
            # last-registered first, and ahead of atexit): what the task said
            # last must be in the pipeline, or handed to the log exporter,
            # before either is shut down.
            threading._register_atexit(self.close)  # type: ignore[attr-defined]
        except Exception:
            atexit.register(self.close)

    def say(self, root: Span, name: str, attrs: Mapping[str, Any], time_ns: int) -> None:
        """Queue one record (the agent's thread: one append, never raises)."""
        self._queue.append((root, name, time_ns, attrs))

    def opened(self, root: Span, attrs: Mapping[str, Any], start_ns: int) -> None:
        self._open[root.get_span_context().span_id] = (root, [time.monotonic()])
        if self.direct:
            # Into the pipeline's inbox now (a queue put, no I/O), ahead of
            # every span of the task: the task opens under its own id before
            # a model call of it could open a provisional task under another.
            try:
                self._send([(root, cv.LIVE_TASK_START, start_ns, attrs)])
                return
            except Exception:  # telemetry never breaks the agent: the thread sends it
                log.exception("could not hand a task's start to the pipeline")
        self.say(root, cv.LIVE_TASK_START, attrs, start_ns)

    def closed(self, root: Span) -> None:
        """The task ended: its records (and any before them) leave now, from
        the channel's thread; the agent does not wait for them."""
        self._open.pop(root.get_span_context().span_id, None)
        self._flush_due.set()

    def drain(self, flush: bool = False) -> None:
        with self._lock:
            batch: list[Record] = []
            while self._queue:
                batch.append(self._queue.popleft())
            try:
                if batch:
                    self._said(batch)
                    self._send(batch)
                if flush and self._flush is not None:
                    self._flush(END_FLUSH_MS)
            except Exception:  # telemetry never breaks the agent
                log.exception("could not send %d live-channel records", len(batch))

    def _said(self, batch: list[Record]) -> None:
        """A root that said something is alive: its heartbeat can wait."""
        now = time.monotonic()
        for root, _, _, _ in batch:
            seen = self._open.get(root.get_span_context().span_id)
            if seen is not None:
                seen[1][0] = now

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for root, seen in list(self._open.values()):
            if now - seen[0] >= self._heartbeat_s:
                seen[0] = now
                self._queue.append((root, cv.LIVE_HEARTBEAT, time.time_ns(), {}))

    def _run(self) -> None:
        while not self._stop.is_set():
            flush = self._flush_due.wait(SEND_EVERY_S)
            if self._stop.is_set():
                return
            self._flush_due.clear()
            if self._queue or flush:
                # What was said first (so no heartbeat for a busy root); at a
                # task's end the exporter's queue too, even when this round
                # found nothing new: its last records may have left already.
                self.drain(flush)
            self._heartbeats()
            if self._queue:
                self.drain()

    def close(self) -> None:
        """At exit: send what is left, waiting at most END_FLUSH_MS (a
        network that is down must not hold the agent's exit)."""
        self._stop.set()
        self._flush_due.set()
        last = threading.Thread(target=self.drain, args=(True,), name="spanvisor-live-exit", daemon=True)
        last.start()
        last.join(END_FLUSH_MS / 1000)


def _heartbeat_s() -> float:
    # Read as the configuration reads it (the same parser; an agent's helper
    # does not load the whole configuration for one number).
    raw = os.environ.get("SPANVISOR_HEARTBEAT", "").strip()
    if not raw:
        return HEARTBEAT_S
    try:
        value = p_duration(raw)
    except ValueError:
        log.warning("SPANVISOR_HEARTBEAT=%r is not a duration; heartbeats every %.0f s", raw, HEARTBEAT_S)
        return HEARTBEAT_S
    return value if value > 0 else HEARTBEAT_S


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
    # Each record leaving the process is named (agent.record.id: this
    # process's random prefix and a count), so a record a Collector sends
    # again (the load_balancing exporter retries whole batches while a
    # replica is down) is read once, as the conventions ask of any sender.
    prefix = os.urandom(8).hex()
    count = itertools.count()

    def send(batch: list[Record]) -> None:
        for root, name, t, attrs in batch:
            ctx = trace.set_span_in_context(root)
            said = {**attrs, RECORD_ID: f"{prefix}.{next(count)}"}
            logger.emit(timestamp=t, context=ctx, event_name=name, attributes=said)

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

    exporters = [e for e in _exporters(multi) if not isinstance(e, SpanvisorSpanProcessor)]
    if not exporters:
        return None
    for e in exporters:
        if isinstance(e, SpanvisorSpanExporter):
            svc = resource.attributes.get(cv.SERVICE_NAME) if resource is not None else None
            resource_attrs = {cv.SERVICE_NAME: svc} if svc is not None else {}
            return LiveChannel(_to_pipeline(e.pipeline, resource_attrs), None, direct=True)
    sender = _log_sender(exporters, resource)
    if sender is None:
        return None
    send, owned = sender
    return LiveChannel(send, owned.force_flush if owned is not None else None, spans_leave=True)


_channels: weakref.WeakKeyDictionary[Any, LiveChannel | None] = weakref.WeakKeyDictionary()
_found = threading.Lock()


def channel(tracer: Any) -> LiveChannel | None:
    """The live channel for the spans of ``tracer`` (an SDK tracer; found
    once per TracerProvider), or None."""
    if os.environ.get("SPANVISOR_LIVE_CHANNEL", "auto").strip().lower() == "off":
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
