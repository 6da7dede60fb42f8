"""SinkWorker: one sink's bounded queue, batching, retries and accounting.

The queue is bounded (``queue_size``): when it is full, new events for that
sink are dropped, counted in ``spanvisor_dropped_total{reason="queue_full"}``
and logged once; the other sinks are unaffected. ``RETRY`` results are sent
again with exponential backoff, so a sink that is down holds its queue
rather than losing it; ``FAILURE`` drops the batch, counted. A sink that
raises is treated as ``RETRY`` (the contract says it must not raise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.sink import Sink, SinkContext, SinkResult

log = logging.getLogger("spanvisor.pipeline")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
START_TIMEOUT_S = 60.0


@dataclass
class Barrier:
    """Fires ``callback(ok)`` once ``count`` workers have passed it."""

    count: int
    callback: Callable[[bool], None]
    ok: bool = True

    def reached(self, ok: bool = True) -> None:
        self.ok = self.ok and ok
        self.count -= 1
        if self.count == 0:
            try:
                self.callback(self.ok)
            except Exception:
                log.exception("barrier callback failed")


class SinkWorker:
    def __init__(self, sink: Sink, ctx: SinkContext, config: Config) -> None:
        self.sink = sink
        self.name = str(getattr(sink, "name", type(sink).__name__))
        self.durable = bool(getattr(sink, "durable", False))
        self.ctx = ctx
        self.stats = ctx.stats
        self._queue: deque[Event | Barrier] = deque()
        self._size = config["queue_size"]
        self._batch = max(1, config["batch_size"])
        self._delay = config["batch_delay_s"]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.start_error: str | None = None
        self.started = asyncio.Event()  # set once the first start attempt is over
        self._events_queued = 0
        self._in_flight = 0  # the batch inside sink.export right now
        self._first_at = 0.0  # when the oldest queued event arrived
        self._filled = asyncio.Event()  # set when a full batch is queued
        self.stats.gauge("queue_depth", lambda: float(self._events_queued), sink=self.name)

    def has_room(self, n: int = 1) -> bool:
        # Durable sinks push back (the receiver answers 503) before they would drop.
        return bool(self._events_queued + n <= self._size * 0.8)

    def put_many(self, events: Sequence[Event]) -> None:
        # A durable sink's admission is controlled upstream (``has_room``): the
        # receiver answers 503 before its queue passes 80 %. Spans already
        # accepted may still produce more events than that margin, so a
        # durable queue stretches to 10x before it drops anything: accepted
        # audit events are not lost to a race between two pump cycles.
        limit = self._size * 10 if self.durable else self._size
        room = limit - self._events_queued
        if room < len(events):
            dropped = len(events) - max(0, room)
            self.stats.drop(
                "queue_full",
                dropped,
                sink=self.name,
                detail=f"sink {self.name} is behind; raise SPANVISOR_QUEUE_SIZE or fix the sink",
            )
            events = events[: max(0, room)]
        if self._events_queued == 0:
            self._first_at = time.monotonic()
        self._queue.extend(events)
        self._events_queued += len(events)
        if self._events_queued >= self._batch:
            self._filled.set()
        self._wake.set()

    def put_barrier(self, barrier: Barrier) -> None:
        self._queue.append(barrier)
        self._wake.set()

    def launch(self) -> None:
        """Start the sink and its delivery loop in the background: a sink slow
        to start (a database connect, a Slack check) holds back only itself."""
        self._task = asyncio.get_running_loop().create_task(self._start_and_run(), name=f"spanvisor-sink-{self.name}")

    async def _start_and_run(self) -> None:
        try:
            await asyncio.wait_for(self.sink.start(self.ctx), START_TIMEOUT_S)
        except Exception as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"
            log.error("sink %s failed to start: %s; its events are held and retried", self.name, self.start_error)
        self.started.set()
        await self._run()

    async def _retry_start(self) -> None:
        backoff = BACKOFF_START_S
        while self.start_error is not None and not self._closing:
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)
            try:
                await asyncio.wait_for(self.sink.start(self.ctx), START_TIMEOUT_S)
                self.start_error = None
                log.info("sink %s started after retrying", self.name)
            except Exception as exc:
                self.start_error = f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        await self._retry_start()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, Barrier):
                self._queue.popleft()
                head.reached(True)
                continue
            if self._events_queued < self._batch and self._delay > 0 and not self._closing:
                # Let a small batch fill, but only for what is left of the
                # delay since its first event arrived, and no longer than it
                # takes to fill: a fixed sleep per batch capped a busy sink
                # at batch_size / batch_delay events a second.
                wait = self._delay - (time.monotonic() - self._first_at)
                if wait > 0:
                    self._filled.clear()
                    try:
                        await asyncio.wait_for(self._filled.wait(), wait)
                    except TimeoutError:
                        pass
            batch: list[Event] = []
            while self._queue and len(batch) < self._batch and not isinstance(self._queue[0], Barrier):
                item = self._queue.popleft()
                assert not isinstance(item, Barrier)
                batch.append(item)
            self._events_queued -= len(batch)
            # What is left has waited at least this long already.
            self._first_at = time.monotonic() - self._delay
            self._in_flight = len(batch)
            await self._deliver(batch)
            self._in_flight = 0

    async def _deliver(self, batch: list[Event]) -> None:
        backoff = BACKOFF_START_S
        while True:
            t0 = time.perf_counter()
            try:
                result = await self.sink.export(batch)
            except Exception as exc:
                log.warning("sink %s raised from export (it should return RETRY): %r", self.name, exc)
                result = SinkResult.RETRY
            self.stats.observe("sink_latency_seconds", time.perf_counter() - t0, sink=self.name)
            self.stats.inc("sink_deliveries_total", sink=self.name, outcome=getattr(result, "value", str(result)))
            if result is SinkResult.SUCCESS:
                return
            if result is SinkResult.FAILURE:
                self.stats.drop("sink_failure", len(batch), sink=self.name, detail=f"sink {self.name} rejected a batch")
                return
            if self._closing and self._deadline_passed():
                self.stats.drop(
                    "shutdown_deadline",
                    len(batch),
                    sink=self.name,
                    detail="still undelivered when the shutdown deadline passed",
                )
                return
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    _deadline = float("inf")

    def _deadline_passed(self) -> bool:
        return time.monotonic() >= self._deadline

    async def force_flush(self, timeout_s: float) -> bool:
        try:
            return bool(await asyncio.wait_for(self.sink.force_flush(timeout_s), timeout_s + 0.1))
        except Exception:
            return False

    async def shutdown(self, timeout_s: float) -> None:
        self._closing = True
        self._deadline = time.monotonic() + timeout_s * 0.7
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s * 0.7)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                left = self._events_queued + self._in_flight
                if left:
                    self.stats.drop(
                        "shutdown_deadline",
                        left,
                        sink=self.name,
                        detail="still queued when the shutdown deadline passed",
                    )
        try:
            await asyncio.wait_for(self.sink.shutdown(timeout_s * 0.3), timeout_s * 0.3 + 0.1)
        except Exception as exc:
            log.warning("sink %s shutdown failed: %s", self.name, exc)
