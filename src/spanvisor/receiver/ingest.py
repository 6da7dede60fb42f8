"""What both transports do with a request: admit, journal, then hand over.

**Admission comes before any work.** :meth:`Ingest.admit` runs before the
body is read or parsed: when the pipeline has room, the request goes on;
when room is expected within :data:`MAX_WAIT_S` (the tracker and the durable
sinks are draining, measured), the request waits for it, so a steady client
is slowed to the pipeline's pace instead of refused and left idle; when
room is surely not coming that soon, the answer is 503 / UNAVAILABLE at
once, costing microseconds, with a Retry-After saying how soon there will be
room (from the same rates). When that cannot be told (a durable sink that
has delivered nothing lately: starting, or down) the request waits the whole
:data:`MAX_WAIT_S` for it, then gets the configured ``retry_after_s``.

The order after that is what makes a 2xx mean something. The request body
is committed to the journal as received, and only then the decoded spans
are handed to the pipeline; if the pipeline has no room for them after all
(other requests took it meanwhile), the request waits for room ahead of any
new one, and if none comes in time the journal entry is discarded and the
client is told to retry. Nothing is ever acknowledged and then dropped.

At start the journal's recent entries come back in two kinds (see
:mod:`.journal`): those below the delivered-through mark only *rebuild* the
tracker's open tasks (every sink already has their events), the rest are
*replayed* through the pipeline to the sinks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from spanvisor.receiver.decode import Decoded, decode_links, decode_request
from spanvisor.receiver.journal import LIVE, JournalFull, Row, SpanJournal, body_of
from spanvisor.receiver.logs import DecodedLogs, hand_over, live_of
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
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


@dataclass(frozen=True, slots=True)
class Refusal:
    """A retryable refusal: HTTP 503 + Retry-After, gRPC UNAVAILABLE + RetryInfo."""

    reason: str
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for HTTP's Retry-After: never earlier than the room."""
        return str(max(1, math.ceil(self.retry_after_s - 1e-6)))


# A request waits at most this long for room before it is refused: well
# inside every OTLP exporter's timeout (the Collector's default is 5 s).
MAX_WAIT_S = 1.0
# A request already journaled may wait this many times longer: its write is
# done, and giving up would throw it away.
JOURNALED_WAITS = 3
# An estimate this far past the wait is refused at once (room is not coming
# soon); a nearer one is waited out, estimates being rough.
HOPELESS_S = 2.0
_POLL_S = 0.01
# Retry-After estimates are kept within these bounds.
MIN_RETRY_S = 0.1
MAX_RETRY_S = 30.0
_FULL = "the pipeline's inbox or a durable sink's queue is full"


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
        self._journaled_waiting = 0  # requests journaled, waiting for room
        self.stats = pipeline.stats
        self._clamp_logged = False
        self._started_ns = time.time_ns()  # when this process began to listen (see live_of)
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

    def room_in(self, n: int) -> float | None:
        """0.0: room for ``n`` spans now; else seconds until there will be,
        or None when that cannot be told. The real pipeline also counts a
        durable sink (PostgreSQL) near its queue bound, so a stalled database
        pushes back to the Collector instead of filling memory."""
        room_in = getattr(self.pipeline, "room_in", None)
        if room_in is not None:
            wait: float | None = room_in(n)
            return wait
        accepting = getattr(self.pipeline, "accepting", None)
        has_room = bool(accepting(n)) if accepting is not None else self.pipeline.inbox_free() >= n
        return 0.0 if has_room else None

    def _refusal(self, reason: str, wait: float | None) -> Refusal:
        if wait is None:
            return Refusal(reason, self.retry_after_s)
        return Refusal(reason, min(MAX_RETRY_S, max(MIN_RETRY_S, wait)))

    async def admit(self, n: int = 1) -> Refusal | None:
        """Room for ``n`` spans, now or within :data:`MAX_WAIT_S` (waited
        for here); else a refusal saying when to come back. Called before a
        request is read or decoded (``n`` = 1: is anything moving at all) and
        again with its span count."""
        if not self.accepting:
            return Refusal("spanvisor is starting or shutting down", self.retry_after_s)
        deadline = time.monotonic() + MAX_WAIT_S
        while True:
            wait = self.room_in(n)
            if wait == 0.0 and self._journaled_waiting:
                wait = _POLL_S  # requests already journaled go first
            if wait == 0.0:
                return None
            now = time.monotonic()
            # Refused at once only when room is surely not coming within the
            # wait. No rate at all (a durable sink that has delivered nothing
            # yet: just started, or down) gets the whole wait to show one: a
            # fresh serve's first batch is slow, and one steady client was
            # refused about once in four starts for it.
            if now >= deadline or (wait is not None and now + wait > deadline + HOPELESS_S):
                return self._refusal(_FULL, wait)
            await asyncio.sleep(_POLL_S if wait is None else min(wait, _POLL_S))
            if not self.accepting:
                return Refusal("spanvisor is shutting down", self.retry_after_s)

    async def accept(self, decoded: Decoded, body: bytes = b"") -> Refusal | None:
        """Take the request's spans, or say why the client must retry.
        ``body``: the request as received, for the journal (protobuf, or
        gzip as it came)."""
        if decoded.rejected:
            self.stats.inc("receiver_spans_rejected_total", decoded.rejected)
        if decoded.clamped:
            self._count_clamped(decoded)
        if decoded.ignored:
            self.stats.inc("coding_agent_spans_ignored_total", decoded.ignored)
        spans = decoded.spans
        if not spans:
            return None
        refusal = await self.admit(len(spans))
        if refusal is not None:
            return refusal
        entry: int | None = None
        if self.journal is not None:
            try:
                entry = await self.journal.append_body(body, decoded.recv_ns)
            except JournalFull as exc:
                log.warning("refusing spans: %s; raise SPANVISOR_JOURNAL_MAX_BYTES", exc)
                return Refusal("the span journal is full", self.retry_after_s * 5)
            except Exception as exc:  # disk full, I/O error: never ack what isn't stored
                log.error("refusing spans: the span journal cannot be written: %s", exc)
                return Refusal("the span journal cannot be written", self.retry_after_s * 5)
        deadline = time.monotonic() + MAX_WAIT_S * JOURNALED_WAITS
        self._journaled_waiting += 1
        try:
            while not self.pipeline.submit_spans(spans):
                # Other requests took the room while this one was journaled:
                # new ones now wait behind it (see admit). No estimate (a
                # fresh serve's durable sink before its first measured
                # batches) is waited out to the deadline, as admit does:
                # refused at once, a start's first burst was thrown away
                # after its journal write and every client told to wait.
                wait = self.room_in(len(spans)) if self.accepting else None
                now = time.monotonic()
                if not self.accepting or now >= deadline or (wait is not None and now + wait > deadline):
                    if entry is not None and self.journal is not None:
                        self.journal.discard(entry)
                    return self._refusal("the pipeline's inbox is full", wait)
                await asyncio.sleep(_POLL_S if wait is None else min(max(wait, _POLL_S), _POLL_S * 5))
        finally:
            self._journaled_waiting -= 1
        return None

    async def accept_logs(self, decoded: DecodedLogs) -> Refusal | None:
        """Journal a logs request's live records (before any 2xx, as spans),
        then hand the request over; a refusal when its live records can be
        neither kept nor handed over, with nothing of it kept."""
        entry: int | None = None
        journal = self.journal
        if decoded.live and decoded.live_request is not None and journal is not None:
            try:
                entry = await journal.append_live(decoded.live_request.SerializeToString())
            except Exception as exc:  # full, disk error: never ack what isn't stored
                log.warning("refusing live-channel records: the span journal cannot take them: %s", exc)
                return Refusal("the span journal cannot be written", self.retry_after_s * 5)
        if not hand_over(self.pipeline, decoded):
            if entry is not None and journal is not None:
                journal.discard(entry)
            return Refusal("the pipeline's inbox is full", self.retry_after_s)
        return None

    def live_of(self, row: Row) -> list[LiveFact] | None:
        """An entry's live-channel records (None: it holds spans), heard when
        received, later by the time no process was listening (a restart is
        no silence of the agent's: see :attr:`SpanJournal.heard_through_ns`)."""
        if row[3] != LIVE or self.journal is None:
            return None
        body = body_of(row[2])
        shift = max(0, self._started_ns - self.journal.heard_through_ns) if self.journal.heard_through_ns else 0
        return live_of(body or b"", row[1] + shift)

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
    def spans_of(row: Row, max_body_bytes: int | None = None) -> list[SpanData]:
        """An entry's spans, as the live path decoded them: a body as
        received, or (entries from before) keyed spans plus id links.
        ExportTraceServiceRequest and TracesData are the same message on the
        wire, so both parse as TracesData."""
        _, recv_ns, keyed, links = row
        body = body_of(keyed, max_body_bytes)
        if body is not None:
            return decode_request(TracesData.FromString(body), recv_ns=recv_ns, body=body).spans
        spans: list[SpanData] = []
        if keyed:
            spans.extend(decode_request(TracesData.FromString(keyed), recv_ns=recv_ns).spans)
        spans.extend(decode_links(links, recv_ns))
        return spans

    async def rebuild(self, retention_s: float, into: Callable[[Sequence[SpanData | LiveFact]], object]) -> int:
        """Feed the delivered entries to ``into`` (the tracker, not yet running):
        its open tasks come back as they were, and nothing is sent anywhere."""
        if self.journal is None or not self.journal.delivered_through:
            return 0
        since = time.time_ns() - int(retention_s * 1e9)
        total = 0
        async for row in self._entries(0, self.journal.delivered_through, since):
            facts = self.live_of(row)
            if facts is not None:
                await asyncio.to_thread(into, facts)
                continue
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
        total = entries = 0
        async for row in self._entries(self.journal.delivered_through, None, since):
            entries += 1
            facts = self.live_of(row)
            if facts is not None:
                while not hand_over(self.pipeline, DecodedLogs(live=facts)):
                    await sleep(0.05)
                continue
            spans = self.spans_of(row)
            while not self.pipeline.submit_spans(spans):
                await sleep(0.05)
            total += len(spans)
        # The replayed tasks were rebuilt from records alone: once the
        # pipeline has tracked them, they leave room for the clock's events
        # of the process that was killed (TaskTracker.rebuilt).
        replayed = getattr(self.pipeline, "submit_replayed", None)
        if entries and replayed is not None:
            while not replayed():
                await sleep(0.05)
        if total or trimmed:
            log.info(
                "span journal: replayed %d spans received after entry %d, trimmed %d old entries",
                total,
                self.journal.delivered_through,
                trimmed,
            )
        return total
