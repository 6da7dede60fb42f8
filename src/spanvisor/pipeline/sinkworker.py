"""SinkWorker: one sink's bounded queue, batching, retries and accounting.

The queue is bounded (``queue_size``): when it is full, new events for that
sink are dropped, counted in ``spanvisor_dropped_total{reason="queue_full"}``
and logged once; the other sinks are unaffected. ``RETRY`` results are sent
again with exponential backoff, so a sink that is down holds its queue
rather than losing it; ``FAILURE`` drops the batch, counted.

A sink that raises breaks its contract; the worker survives it without
letting one bad event block the sink (the poison-event rule):

* An ``OSError`` (``ConnectionError``, ``TimeoutError``...) counts as
  ``RETRY``: the destination is unreachable, the data is not at fault.
* Any other exception is retried with backoff; after
  :data:`POISON_ATTEMPTS` in a row on one batch, the batch is bisected in
  order (one try per part; a part that raises is split again) down to single
  events, and a single event that raises :data:`POISON_ATTEMPTS` times in a
  row is a suspect.
* A suspect is set aside in the dead-letter store (counted, logged once)
  if the sink answered any export since it started failing: the sink works,
  this event does not. Otherwise its task is held (:mod:`spanvisor.taskhold`)
  while other tasks go on, and retried once the sink answers or a backoff ends.

A plain ``RETRY`` never splits a batch, holds a task or sets an event aside:
a durable sink whose database is away keeps its queue and its backoff.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.pipeline.barrier import Barrier
from spanvisor.pipeline.deadletter import DeadLetterStore, off_loop, set_aside, store_dir
from spanvisor.pipeline.rate import Rate
from spanvisor.pipeline.taskhold import TaskHold
from spanvisor.sink import Sink, SinkContext, SinkResult

log = logging.getLogger("spanvisor.pipeline")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
START_TIMEOUT_S = 60.0
# Raises in a row on one batch (then it is split) and on one event (then it
# is a suspect for the dead-letter store). A module constant, not a setting:
# the rule matters, the count hardly does.
POISON_ATTEMPTS = 3
# A sink that keeps raising logs it at most this often (each dead letter is logged once).
RAISE_LOG_EVERY_S = 60.0
# A durable sink's queue admits receiver spans up to this fraction of its bound.
ADMIT_FRACTION = 0.8


class _Try(enum.Enum):
    ANSWERED = "answered"  # SUCCESS, or FAILURE (counted as a drop)
    RAISED = "raised"  # raised the allowed number of times in a row
    DEADLINE = "deadline"  # shutdown's deadline passed; nothing counted yet


def _halves(part: list[Event]) -> list[list[Event]]:
    mid = len(part) // 2
    return [part[:mid], part[mid:]]


class SinkWorker:
    def __init__(self, sink: Sink, ctx: SinkContext, config: Config) -> None:
        self.sink = sink
        self.name = str(getattr(sink, "name", type(sink).__name__))
        self.durable = bool(getattr(sink, "durable", False))
        self.paced = bool(getattr(sink, "paced", False))
        self.ctx = ctx
        self.stats = ctx.stats
        self._queue: deque[Event | Barrier] = deque()
        self._size = config["queue_size"]
        self._batch = max(1, config["batch_size"])
        # A sink whose cost is mostly per call (a transaction and its round
        # trips and commit) may take up to this many batches in one call while
        # more than one is queued (its own ``catch_up_batches``): behind, it
        # catches up in fewer, larger calls; keeping up, it gets batch_size.
        self._catch_up = self._batch * max(1, int(getattr(sink, "catch_up_batches", 1)))
        own_delay = getattr(sink, "batch_delay_s", None)  # a sink's own (the event stream's: 0)
        self._delay = config["batch_delay_s"] if own_delay is None else float(own_delay)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.start_error: str | None = None
        self.started = asyncio.Event()  # set once the first start attempt is over
        self._events_queued = 0
        self._barriers = 0  # Barrier items in _queue
        self._in_flight = 0  # the batch inside sink.export right now
        self._first_at = 0.0  # when the oldest queued event arrived
        self._filled = asyncio.Event()  # set when a full batch is queued
        self._raise_logged_at = -RAISE_LOG_EVERY_S
        self._dead_letters: DeadLetterStore | None = None  # opened on the first dead letter
        self._hold = TaskHold()  # tasks whose events failed while nothing else answered
        self._delivered = Rate()  # events the sink took per second, lately
        self.stats.gauge("queue_depth", lambda: float(self._events_queued), sink=self.name)

    def has_room(self, n: int = 1) -> bool:
        # Durable sinks push back (the receiver answers 503) before they would drop.
        return bool(self._held() + n <= self._size * ADMIT_FRACTION)

    def _held(self) -> int:
        """Events queued, plus those of a catch-up export past one batch: a
        catch-up takes several batches out of the queue at once, and while
        they wait on a retry they must still count against admission, as
        one batch's worth always could not."""
        return self._events_queued + max(0, self._in_flight - int(self._batch))

    def holds_intake(self) -> bool:
        """Whether the receiver waits for this sink's queue now: always for a
        durable sink; for a paced one only while it delivers."""
        return self.durable or (self.paced and self._delivered.per_s() is not None)

    def seconds_to_room(self, n: int = 0) -> float | None:
        """0.0 when :meth:`has_room` holds; else about how long until it does
        at the sink's recent delivery rate; None when the sink delivered
        nothing lately (down, stalled or starting: no honest estimate)."""
        over = self._held() + n - self._size * ADMIT_FRACTION
        if over <= 0:
            return 0.0
        return self._delivered.seconds_for(over)

    def put_many(self, events: Sequence[Event]) -> None:
        # A durable (or delivering paced) sink's admission is controlled
        # upstream (``has_room``): the receiver answers 503 before its queue
        # passes 80 %. Spans already
        # accepted may still produce more events than that margin, so a
        # durable queue stretches to 10x before it drops anything: accepted
        # audit events are not lost to a race between two pump cycles.
        limit = self._size * 10 if self.durable or self.paced else self._size
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
        self._barriers += 1
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
            if self._hold.due():
                # Back to the head of the queue, already counted in _events_queued.
                self._queue.extendleft(reversed(self._hold.release()))
            if not self._queue:
                if self._closing:
                    held = self._hold.clear()
                    self._events_queued -= held
                    self._deadline_drop(held)
                    return
                self._wake.clear()
                if self._hold:  # wake up in time to retry them
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._hold.seconds_to_release())
                    except TimeoutError:
                        pass
                else:
                    await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, Barrier):
                self._queue.popleft()
                self._barriers -= 1
                # Held events are behind no barrier: a flush is not done while they wait.
                head.reached(not self._hold)
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
            most = self._catch_up if self._events_queued > self._batch else self._batch
            if not self._barriers:  # the usual case: no Barrier in the queue
                take = cast("Callable[[], Event]", self._queue.popleft)
                batch = [take() for _ in range(min(most, len(self._queue)))]
            while self._queue and len(batch) < most and not isinstance(self._queue[0], Barrier):
                item = self._queue.popleft()
                assert not isinstance(item, Barrier)
                batch.append(item)
            self._events_queued -= len(batch)
            batch = self._divert(batch)
            # What is left has waited at least this long already.
            self._first_at = time.monotonic() - self._delay
            if batch:
                self._in_flight = len(batch)
                await self._deliver(batch)
                self._in_flight = 0

    async def _deliver(self, batch: list[Event]) -> None:
        """Deliver one batch: returns once every event is delivered, dropped,
        set aside or held with its task."""
        since = self._hold.answers
        outcome, error = await self._attempt(batch, POISON_ATTEMPTS)
        if outcome is _Try.DEADLINE:
            self._deadline_drop(len(batch))
        elif outcome is _Try.RAISED:
            await self._isolate(batch, error, since)

    async def _attempt(self, part: list[Event], tries: int) -> tuple[_Try, str]:
        """Export ``part`` until the sink answers, or it raised ``tries`` times
        in a row, or the shutdown deadline passed. RETRY waits and tries again."""
        backoff = BACKOFF_START_S
        raised = 0
        while True:
            error = ""
            t0 = time.perf_counter()
            began = time.monotonic()  # the delivery rate's clock
            try:
                result = await self.sink.export(part)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                result = SinkResult.RETRY
                if not isinstance(exc, OSError):  # unreachable is "later", not "bad data"
                    raised += 1
                now = time.monotonic()
                if now - self._raise_logged_at > RAISE_LOG_EVERY_S:
                    self._raise_logged_at = now
                    log.warning("sink %s raised from export (it should return RETRY): %r", self.name, exc)
            else:
                if result is SinkResult.RETRY:
                    raised = 0
            self.stats.observe("sink_latency_seconds", time.perf_counter() - t0, sink=self.name)
            self.stats.inc("sink_deliveries_total", sink=self.name, outcome=getattr(result, "value", str(result)))
            if result is SinkResult.SUCCESS or result is SinkResult.FAILURE:
                self._hold.answers += 1
                self._delivered.add(len(part), began)
                if result is SinkResult.FAILURE:
                    self.stats.drop(
                        "sink_failure", len(part), sink=self.name, detail=f"sink {self.name} rejected a batch"
                    )
                return _Try.ANSWERED, ""
            if raised >= tries:
                return _Try.RAISED, error
            if self._closing and self._deadline_passed():
                return _Try.DEADLINE, error
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _isolate(self, batch: list[Event], error: str, since: int) -> None:
        """Bisect a batch that keeps raising, in order, down to the events it fails on."""
        parts: deque[list[Event]] = deque(_halves(batch) if len(batch) > 1 else [])
        lone: tuple[Event, str] | None = None if parts else (batch[0], error)
        while True:
            if lone is not None:
                await self._judge(lone[0], lone[1], since)
                lone = None
            if not parts:
                break
            # Events of a task held meanwhile wait behind its suspect.
            part = self._divert(parts.popleft())
            if not part:
                continue
            self._in_flight = len(part) + sum(map(len, parts))
            # A part of several events gets one try, then is split again; a
            # single event gets the full count before it is a suspect.
            outcome, error = await self._attempt(part, POISON_ATTEMPTS if len(part) == 1 else 1)
            if outcome is _Try.DEADLINE:
                self._deadline_drop(len(part) + sum(map(len, parts)))
                break
            if outcome is _Try.RAISED:
                if len(part) > 1:
                    parts.extendleft(reversed(_halves(part)))
                else:
                    lone = (part[0], error)
        self._in_flight = 0

    async def _judge(self, event: Event, error: str, since: int) -> None:
        """A suspect: set aside if the sink answered anything since it started
        failing on it (the sink works, this event does not), else hold its
        task (the sink may simply be down)."""
        if self._hold.proven_bad(event, since):
            await self._set_aside(event, error)
        elif self._closing:
            self._deadline_drop(1)
        else:
            self._hold.hold(event)
            self._events_queued += 1

    def _divert(self, events: list[Event]) -> list[Event]:
        rest = self._hold.divert(events)
        self._events_queued += len(events) - len(rest)
        return rest

    async def _set_aside(self, event: Event, error: str) -> None:
        if self._dead_letters is None:
            self._dead_letters = DeadLetterStore(store_dir(self.ctx.config.data_dir))
        await set_aside(self._dead_letters, self.name, event, error, POISON_ATTEMPTS, self.stats)

    def _deadline_drop(self, n: int) -> None:
        if n:
            self.stats.drop(
                "shutdown_deadline", n, sink=self.name, detail="still undelivered when the shutdown deadline passed"
            )

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
        end = time.monotonic() + timeout_s
        self._deadline = end - timeout_s * 0.3
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s * 0.7)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                left = self._events_queued + self._in_flight
                if left:
                    detail = "still queued when the shutdown deadline passed"
                    self.stats.drop("shutdown_deadline", left, sink=self.name, detail=detail)
        # The sink gets most of what the drain left (at least 30 %): a close
        # is slow on a loaded machine, and the caller still hears how it went.
        left_s = max((end - time.monotonic()) * 0.75, timeout_s * 0.3)
        try:
            await asyncio.wait_for(self.sink.shutdown(left_s), left_s + 0.1)
        except TimeoutError:
            log.warning("sink %s shutdown did not finish within %.1fs", self.name, left_s)
        except Exception as exc:
            log.warning("sink %s shutdown failed: %s: %s", self.name, type(exc).__name__, exc)
        if self._dead_letters is not None:
            await off_loop(self._dead_letters.close)

    def health(self) -> tuple[bool, str]:
        """The sink's own word on whether it can deliver now (any thread; never raises)."""
        check = getattr(self.sink, "health", None)
        if check is None:
            return True, "ok"
        try:
            ok, why = check()
            return bool(ok), str(why)
        except Exception as exc:  # a broken check is "unhealthy", never an error page
            return False, f"health check failed: {type(exc).__name__}: {exc}"
