"""DecisionLogSink: every decision as an OpenTelemetry log event over OTLP/HTTP.

``export`` keeps only ``HumanIntervention`` events, applied and refused
alike (a refused approve is what a SIEM looks for); everything else is
skipped at the cost of one ``isinstance``. Each kept one becomes one log
record (:mod:`spanvisor_decisionlogs.record`) queued in the SDK's batch
processor (:mod:`spanvisor_decisionlogs.otlp`), and ``export`` answers
SUCCESS: queuing is no I/O, and the pipeline's queue never waits on the
endpoint.

When the endpoint is away the SDK's exporter retries a batch with backoff
within ``SPANVISOR_DECISION_LOGS_TIMEOUT`` (10 s), then drops it. Nothing is
kept on disk and nothing is sent again later: these are telemetry, the
audit trail of record is the control log (and PostgreSQL). What is lost is
counted, ``dropped_total{reason=..., sink="decisionlogs"}``, the first of
each kind logged loudly:

* ``decision_logs_export_failed``: the exporter gave up on a batch;
* ``decision_logs_unsent``: still queued when the sink shut down (or
  dropped by the SDK's full queue, 2048 records);
* ``decision_logs_not_configured``: the sink was named in SPANVISOR_SINKS
  without an endpoint, or OTEL_SDK_DISABLED=true turned the SDK off.

``decision_log_records_total{outcome="sent"|"failed"}`` counts every record's
end; ``health()`` says whether the last batch went out. Each record carries
``spanvisor.decision.id`` (the intervention id), so a backend that sees one
twice can tell.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from spanvisor.events import Event, HumanIntervention
from spanvisor.sink import BaseSink, SinkContext, SinkResult
from spanvisor_decisionlogs.record import decision_record
from spanvisor_decisionlogs.settings import SETTINGS, config_problem, where
from spanvisor_decisionlogs.settings import enabled as settings_enabled

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting
    from spanvisor_decisionlogs.otlp import Emitter

SEEN_MAX = 10_000
FLUSH_POLL_S = 0.02
# Variables the OTLP exporter reads by itself and adds to every request.
ENV_HEADERS = ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
log = logging.getLogger("spanvisor.decisionlogs")


class DecisionLogSink(BaseSink):
    """One OpenTelemetry log event (``spanvisor.decision``) per decision.

    Not ``durable`` and not ``paced``: a Collector that is away must not
    slow span intake; what it misses is counted.
    """

    name = "decisionlogs"
    settings: ClassVar[Sequence[Setting]] = SETTINGS

    def __init__(self) -> None:
        super().__init__()
        self.emitter: Emitter | None = None
        self._problem: str | None = "not started"
        self._where = ""
        # Ids emitted by this process: a batch delivered twice is logged once.
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Records queued (this loop) and settled (the SDK's batch thread):
        # each side writes only its own counters.
        self._emitted = 0
        self._sent = 0
        self._failed = 0
        self._outages = 0
        # What the last batch said; read by health() from any thread.
        self._health: tuple[bool, str] = (True, "ok")

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start imports (spanvisor.sink.BaseSink.imports)."""
        return ("spanvisor_decisionlogs.otlp",)

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        cfg = ctx.config
        endpoint = cfg.get("decision_logs_endpoint")
        self._problem = config_problem(endpoint)
        if self._problem is not None:
            log.error(
                "decision logs: %s; decisions are not exported (see docs/reference/decision-logs.md)", self._problem
            )
            return
        assert endpoint is not None
        self._where = where(endpoint)
        if self.emitter is not None:  # start may be retried by the worker
            return
        from spanvisor_decisionlogs.otlp import Emitter

        for name in ENV_HEADERS:
            if os.environ.get(name):
                # Names only: the values are credentials, and maybe for another backend.
                log.warning(
                    "decision logs: the OTLP exporter also sends the headers in %s to %s; "
                    "unset it for spanvisor if they are meant for another backend",
                    name,
                    self._where,
                )
        headers = dict(cfg.get("decision_logs_headers") or ())
        timeout_s = float(cfg.get("decision_logs_timeout_s", 10.0))
        try:
            emitter = Emitter(endpoint, headers, timeout_s, self._settled)
        except Exception as exc:  # e.g. an unreadable OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE
            said = str(exc).replace(endpoint, self._where)  # the URL may hold a token
            self._problem = f"cannot build the OTLP exporter: {type(exc).__name__}: {said}"
            log.error("decision logs: %s; decisions are not exported", self._problem)
            return
        if not emitter.live:
            self._problem = "OTEL_SDK_DISABLED is true: the OpenTelemetry SDK exports nothing"
            log.error("decision logs: %s; decisions are not exported", self._problem)
            emitter.close()
            return
        self.emitter = emitter

    # --- export: queue the decisions ---------------------------------------

    async def export(self, events: Sequence[Event]) -> SinkResult:
        for event in events:
            if not isinstance(event, HumanIntervention) or event.event_id in self._seen:
                continue
            self._seen[event.event_id] = None
            if len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
            self._emit(event)
        return SinkResult.SUCCESS

    def _emit(self, event: HumanIntervention) -> None:
        if self.ctx is None:
            return
        if self.emitter is None:
            detail = self._problem or "not started"
            self.ctx.stats.drop("decision_logs_not_configured", sink=self.name, detail=detail)
            return
        try:
            self.emitter.emit(decision_record(event))
        except Exception as exc:  # one odd event must not stop the others
            log.warning("decision logs: cannot make a record of intervention %s: %r", event.event_id, exc)
            self.ctx.stats.drop("decision_logs_unreadable", sink=self.name, detail=type(exc).__name__)
            return
        self._emitted += 1

    def _settled(self, n: int, sent: bool) -> None:
        """How a batch of ``n`` ended; called on the SDK's batch thread."""
        if self.ctx is None:
            return
        stats = self.ctx.stats
        stats.inc("decision_log_records_total", n, sink=self.name, outcome="sent" if sent else "failed")
        if sent:
            self._sent += n
            if not self._health[0]:
                log.info("decision logs: exporting to %s again", self._where)
            self._health = (True, "ok")
            return
        self._failed += n
        if self._health[0]:
            self._outages += 1
            if self._outages > 1:  # the first is logged by stats.drop below
                log.warning("decision logs: %s does not take log records; dropping, counted", self._where)
        self._health = (False, f"cannot export to {self._where}")
        stats.drop(
            "decision_logs_export_failed",
            n,
            sink=self.name,
            detail=f"{self._where} did not take them within SPANVISOR_DECISION_LOGS_TIMEOUT; not sent again",
        )

    # --- lifecycle ------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records queued and not yet sent or given up."""
        return self._emitted - self._sent - self._failed

    async def force_flush(self, timeout_s: float) -> bool:
        """True once every queued record is sent or given up (and counted),
        within ``timeout_s``. Polls: the batch thread takes the queue within
        its schedule delay, and a blocking flush would hold the loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending > 0:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(FLUSH_POLL_S)
        return True

    async def shutdown(self, timeout_s: float) -> None:
        emitter, self.emitter = self.emitter, None
        if emitter is None:
            return
        if not await self.force_flush(timeout_s * 0.5):
            emitter.abort()  # the endpoint is away: stop waiting out retries
        try:
            await asyncio.wait_for(asyncio.to_thread(emitter.close), max(0.1, timeout_s * 0.5))
        except TimeoutError:
            log.warning("decision logs: the exporter did not stop within %.1f s", timeout_s)
        if self.pending > 0 and self.ctx is not None:
            self.ctx.stats.drop(
                "decision_logs_unsent",
                self.pending,
                sink=self.name,
                detail="still queued when the sink shut down (or dropped by the SDK's full queue)",
            )

    def health(self) -> tuple[bool, str]:
        """From the last batch (not used for readiness: the sink is not durable)."""
        if self._problem is not None and self.ctx is not None:
            return False, self._problem
        return self._health

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        endpoint = config.get("decision_logs_endpoint")
        problem = config_problem(endpoint)
        if problem is not None:
            return [("decision logs", False, problem)]
        names = ", ".join(key for key, _ in config.get("decision_logs_headers") or ())
        headers = f"; headers: {names}" if names else ""
        return [("decision logs", True, f"OTLP/HTTP log events to {where(endpoint)}{headers}")]
