"""What both transports do with a decoded request: journal, then hand over.

The order is what makes a 2xx mean something. Room in the pipeline's inbox
is checked first (cheap), the spans are committed to the journal, and only
then handed to the pipeline; if the pipeline refuses them after all, the
journal entry is discarded and the client is told to retry. Nothing is ever
acknowledged and then dropped.

At start the journal's recent entries come back in two kinds (see
:mod:`.journal`): those below the delivered-through mark only *rebuild* the
tracker's open tasks (every sink already has their events), the rest are
*replayed* through the pipeline to the sinks.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from spanvisor.receiver.decode import Decoded, decode_links, decode_request
from spanvisor.receiver.journal import JournalFull, Row, SpanJournal
from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor.receiver")


class PipelineLike(Protocol):
    """The part of :class:`spanvisor.pipeline.Pipeline` the receiver uses."""

    stats: PipelineStats
    shared: dict[str, Any]

    def submit_spans(self, spans: Any) -> bool: ...

    def inbox_free(self) -> int: ...

    def ready(self) -> tuple[bool, str]: ...

    def force_flush(self, timeout_s: float = 30.0) -> bool: ...


def bearer_matches(header: str | bytes | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``; the scheme in any case (RFC 7235)."""
    if not header:
        return False
    raw = header.encode() if isinstance(header, str) else bytes(header)
    scheme, _, credentials = raw.strip().partition(b" ")
    # Compared in constant time whatever the scheme, so the answer's timing
    # says nothing about the token.
    same = hmac.compare_digest(credentials.strip(), token)
    return same and scheme.lower() == b"bearer"


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
        self._clamp_logged = False
        if journal is not None:
            self.stats.gauge("receiver_journal_bytes", lambda: float(journal.size_bytes))

    def count(self, transport: str, outcome: str) -> None:
        self.stats.inc("receiver_requests_total", 1, transport=transport, outcome=outcome)

    def _count_clamped(self, decoded: Decoded) -> None:
        self.stats.inc("span_times_clamped_total", decoded.clamped)
        if not self._clamp_logged:
            self._clamp_logged = True
            log.warning(
                "span times out of range were clamped (%s); noted on the span, counted in "
                "spanvisor_span_times_clamped_total and not logged again",
                decoded.clamp_note,
            )

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
        if decoded.clamped:
            self._count_clamped(decoded)
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
                    decoded.recv_ns,
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

    async def _entries(self, after_id: int, through_id: int | None, since_ns: int) -> Any:
        """Journal entries in id order, read in a thread a batch at a time."""
        assert self.journal is not None
        last = after_id
        while True:
            rows: list[Row] = await asyncio.to_thread(self.journal.read, last, since_ns)
            for row in rows:
                if through_id is not None and row[0] > through_id:
                    return
                yield row
            if not rows:
                return
            last = rows[-1][0]

    @staticmethod
    def spans_of(row: Row) -> list[SpanData]:
        _, recv_ns, keyed, links = row
        spans: list[SpanData] = []
        if keyed:
            spans.extend(decode_request(TracesData.FromString(keyed), journal=False, recv_ns=recv_ns).spans)
        spans.extend(decode_links(links, recv_ns))
        return spans

    async def rebuild(self, retention_s: float, into: Callable[[Sequence[SpanData]], object]) -> int:
        """Feed the delivered entries to ``into`` (the tracker, not yet running):
        its open tasks come back as they were, and nothing is sent anywhere."""
        if self.journal is None or not self.journal.delivered_through:
            return 0
        since = time.time_ns() - int(retention_s * 1e9)
        total = 0
        async for row in self._entries(0, self.journal.delivered_through, since):
            spans = self.spans_of(row)
            await asyncio.to_thread(into, spans)
            total += len(spans)
        if total:
            log.info("span journal: rebuilt open tasks from %d delivered spans (nothing resent)", total)
        return total

    async def replay(self, retention_s: float, sleep: Callable[[float], Awaitable[object]]) -> int:
        """Hand the entries no sink may have had to the pipeline again, at start."""
        if self.journal is None:
            return 0
        since = time.time_ns() - int(retention_s * 1e9)
        trimmed = await self.journal.trim(since)
        total = 0
        async for row in self._entries(self.journal.delivered_through, None, since):
            spans = self.spans_of(row)
            while not self.pipeline.submit_spans(spans):
                await sleep(0.05)
            total += len(spans)
        if total or trimmed:
            log.info(
                "span journal: replayed %d spans received after entry %d, trimmed %d old entries",
                total,
                self.journal.delivered_through,
                trimmed,
            )
        return total
