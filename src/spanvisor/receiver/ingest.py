"""What both transports do with a decoded request: journal, then hand over.

The order is what makes a 2xx mean something. Room in the pipeline's inbox
is checked first (cheap), the spans are committed to the journal, and only
then handed to the pipeline; if the pipeline refuses them after all, the
journal entry is discarded and the client is told to retry. Nothing is ever
acknowledged and then dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from spanvisor.receiver.decode import Decoded, decode_links, decode_request
from spanvisor.receiver.journal import JournalFull, SpanJournal
from spanvisor.spans import SpanData
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor.receiver")


class PipelineLike(Protocol):
    """The part of :class:`spanvisor.pipeline.Pipeline` the receiver uses."""

    stats: PipelineStats
    shared: dict[str, Any]

    def submit_spans(self, spans: Any) -> bool: ...

    def inbox_free(self) -> int: ...

    def ready(self) -> tuple[bool, str]: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """A retryable refusal: HTTP 503 + Retry-After, gRPC UNAVAILABLE + RetryInfo."""

    reason: str
    retry_after_s: float


class Ingest:
    def __init__(
        self,
        pipeline: PipelineLike,
        journal: SpanJournal | None,
        retry_after_s: float = 2.0,
        max_spans: int = 100_000,
    ) -> None:
        self.pipeline = pipeline
        self.journal = journal
        self.retry_after_s = retry_after_s
        # A request with more spans than the inbox can ever hold would be
        # refused forever; the transports answer it as too large instead.
        self.max_spans = max_spans
        self.accepting = False
        self.stats = pipeline.stats
        if journal is not None:
            self.stats.gauge("receiver_journal_bytes", lambda: float(journal.size_bytes))

    def count(self, transport: str, outcome: str) -> None:
        self.stats.inc("receiver_requests_total", 1, transport=transport, outcome=outcome)

    def _has_room(self, n: int) -> bool:
        # The real pipeline also refuses when a durable sink (PostgreSQL) is
        # near its queue bound, so a stalled database pushes back to the
        # Collector instead of filling memory.
        accepting = getattr(self.pipeline, "accepting", None)
        if accepting is not None:
            return bool(accepting(n))
        return self.pipeline.inbox_free() >= n

    async def accept(self, decoded: Decoded) -> Refusal | None:
        """Take the request's spans, or say why the client must retry."""
        if decoded.rejected:
            self.stats.inc("receiver_spans_rejected_total", decoded.rejected)
        spans = decoded.spans
        if not spans:
            return None
        if not self.accepting:
            return Refusal("spanvisor is starting or shutting down", self.retry_after_s)
        if not self._has_room(len(spans)):
            return Refusal("the pipeline's inbox or a durable sink's queue is full", self.retry_after_s)
        entry: int | None = None
        if self.journal is not None:
            try:
                entry = await self.journal.append(
                    decoded.journal_keyed.SerializeToString() if decoded.keyed else b"",
                    bytes(decoded.journal_links),
                )
            except JournalFull as exc:
                log.warning("refusing spans: %s; raise SPANVISOR_JOURNAL_MAX_BYTES", exc)
                return Refusal("the span journal is full", self.retry_after_s * 5)
            except Exception as exc:  # disk full, I/O error: never ack what isn't stored
                log.error("refusing spans: the span journal cannot be written: %s", exc)
                return Refusal("the span journal cannot be written", self.retry_after_s * 5)
        if not self.pipeline.submit_spans(spans):
            if entry is not None and self.journal is not None:
                self.journal.discard(entry)
            return Refusal("the pipeline's inbox is full", self.retry_after_s)
        return None

    async def replay(self, retention_s: float, sleep: Any) -> int:
        """Hand the journal's recent entries to the pipeline again, at start."""
        if self.journal is None:
            return 0
        since = time.time_ns() - int(retention_s * 1e9)
        trimmed = await self.journal.trim(since)
        total = 0
        for _, recv_ns, keyed, links in self.journal.entries(since):
            spans: list[SpanData] = []
            if keyed:
                from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

                spans.extend(decode_request(TracesData.FromString(keyed), journal=False).spans)
            spans.extend(decode_links(links, recv_ns))
            while not self.pipeline.submit_spans(spans):
                await sleep(0.05)
            total += len(spans)
        if total or trimmed:
            log.info("span journal: replayed %d spans, trimmed %d old entries", total, trimmed)
        return total
