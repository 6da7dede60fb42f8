"""StreamSink: the pipeline's events, in order, into the event stream.

A sink like the others, so the stream gets every event in the tracker's
order through its own bounded queue and worker: a stream nobody reads, or a
database feed that is away, can only fill that queue (``queue_full`` for
sink ``stream``), never slow the tracker or another sink. It is ``paced``:
while it delivers, the receiver waits for its queue as for a durable sink's. ``export`` builds
each event's public body once (:mod:`spanvisor.stream.body`, encoded
by :mod:`spanvisor.stream.encoded`) and publishes
the batch to the feed, which gives it positions and hands it to the ring the
SSE clients read (:mod:`spanvisor.stream.sse`). Fanning out to clients
happens on the HTTP server's loop, not here. While nobody reads the stream
(the feed's ``recording``: no client yet, or none of any replica for a
retention) a batch is only counted (``skipped``): encoding and recording
it were about a quarter of a default serve's pipeline thread.

Never chosen by ``SPANVISOR_SINKS=auto``: ``spanvisor serve`` runs it
(``serves_admin``: ``/v1/events`` is on its admin port too), and a process
that serves a control API adds it with :func:`attach`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from spanvisor.events import Event, HumanIntervention
from spanvisor.sink import AdminRoute, BaseSink, SinkContext, SinkResult
from spanvisor.stream.body import kind_of
from spanvisor.stream.encoded import encoded
from spanvisor.stream.feed import EventFeed, feed_names, open_feed
from spanvisor.stream.ring import Item, Ring
from spanvisor.stream.settings import SETTINGS, value
from spanvisor.stream.settings import enabled as settings_enabled
from spanvisor.stream.sse import admin_handler

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting

log = logging.getLogger("spanvisor.stream")


def item_of(event: Event) -> Item:
    v = event.task
    bare = isinstance(event, HumanIntervention) and v.trace_id == ""
    return Item(
        event_id=event.event_id,
        kind=kind_of(event),
        task_id=v.task_id,
        agent_id=None if bare else v.agent_id,
        status=None if bare else v.status,
        data=encoded(event),
        former_id=v.former_id,
    )


class StreamSink(BaseSink):
    name = "stream"
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    serves_admin: ClassVar[bool] = True
    # What /readyz calls it when it was added for the user, not configured
    # (serve's admin port, the demo): spanvisor.pipeline.readiness.
    role: ClassVar[str] = "the event stream (GET /v1/events)"
    # Each pump's events go out at once (SinkWorker reads it): a batch delay
    # would be latency for every client and save nothing here.
    batch_delay_s: ClassVar[float] = 0.0
    # Behind, up to 4 batches in one publish (SinkWorker reads it): its rows
    # ride in the PostgreSQL writer's transactions, which take that many.
    catch_up_batches: ClassVar[int] = 4

    # How the SSE handlers find this sink among a pipeline's (spanvisor.stream.sse.find).
    serves_event_stream: ClassVar[bool] = True
    # The receiver waits for the stream's queue while it delivers: spans
    # coming in faster than the stream encodes them are a reason to answer
    # 503, not to lose events every client would miss. While its database
    # feed is away it delivers nothing and is not waited for (the audit
    # trail goes on; what the queue cannot hold is dropped, counted).
    paced: ClassVar[bool] = True

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def __init__(self) -> None:
        super().__init__()
        self.ring: Ring | None = None
        self.feed: EventFeed | None = None
        # The clients' registry (one per process); set by the SSE module.
        self.clients: Any = None
        # The pipeline's loop: the feed's connections live there.
        self.loop: asyncio.AbstractEventLoop | None = None
        # Events not encoded nor published because nobody read the stream
        # (the feed's ``recording``): see spanvisor.stream.feed.
        self.skipped = 0

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        if self.ring is not None:  # start may be retried by the worker
            return
        cfg = ctx.config
        self.loop = asyncio.get_running_loop()
        if self.feed is None:  # kept across a retried start: opened once, closed once
            # The feed names this replica's rows by the pipeline's replica id
            # when none is configured (a database feed reads its own back cheaper).
            named = cfg if cfg.get("replica_id") or not ctx.replica_id else cfg.with_values(replica_id=ctx.replica_id)
            self.feed = await open_feed(feed_choice(cfg), named, ctx.shared)
        holder: list[Ring] = []
        stats = ctx.stats

        def lost(count: int, why: str) -> None:
            stats.drop("stream_row_gone", count, sink=self.name, detail=why)

        def deliver(records: Any) -> None:
            if holder:
                holder[0].append(records)

        def gap(pos: int) -> None:
            if holder:
                holder[0].skip_to(pos)

        # ``lost`` and ``gap`` came after the protocol's first version: a feed
        # whose ``start`` takes only ``deliver`` is started as before.
        start: Any = self.feed.start  # ``gap`` is not in the protocol's signature
        params = _parameters(start)
        if "gap" in params:
            floor = await start(deliver, lost, gap=gap)
        elif "lost" in params:
            floor = await self.feed.start(deliver, lost)
        else:
            floor = await self.feed.start(deliver)
        if hasattr(self.feed, "readers"):  # renews the shared "wanted" while this process has clients
            setattr(self.feed, "readers", self._has_clients)  # noqa: B010 - not in the feed protocol
        ring = Ring(self.feed.epoch, int(value(cfg, "stream_buffer")), float(value(cfg, "stream_buffer_age_s")), floor)
        holder.append(ring)
        self.ring = ring
        ctx.stats.gauge("stream_buffer_events", lambda: float(ring.head - ring.floor))

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if self.feed is None:
            return SinkResult.RETRY
        if not events:
            return SinkResult.SUCCESS
        if not await self._recording():
            # Nobody reads the stream: no body encoded, no row written (a
            # client that connects later starts after these events).
            self.skipped += len(events)
            return SinkResult.SUCCESS
        items = [item_of(e) for e in events]
        try:
            ok = await self.feed.publish(items)
        except (OSError, TimeoutError) as exc:  # the network to its database: retried with backoff
            log.warning("event stream: cannot publish %d events (%s); retrying", len(items), exc)
            return SinkResult.RETRY
        # Anything else raised is the batch's or a bug's: the worker's
        # isolation finds the event and sets it aside, the rest go on.
        return SinkResult.SUCCESS if ok else SinkResult.RETRY

    async def _recording(self) -> bool:
        recording = getattr(self.feed, "recording", None)
        if recording is None:  # a feed without it records always
            return True
        try:
            return bool(await recording())
        except Exception as exc:  # cannot tell: record, as before
            log.debug("event stream: recording() failed (%s); recording", exc)
            return True

    async def want(self) -> None:
        """A client connected: record from now on (on the pipeline's loop,
        before the client's starting position is read). Raises when the
        feed cannot note it (its database is away): the client retries."""
        want = getattr(self.feed, "want", None)
        if want is not None:
            await want()

    def _has_clients(self) -> bool:
        clients = self.clients
        return clients is not None and clients.count() > 0

    async def shutdown(self, timeout_s: float) -> None:
        if self.ring is not None:
            self.ring.close()
        if self.feed is not None:
            try:
                await asyncio.wait_for(self.feed.close(), max(0.1, timeout_s))
            except Exception as exc:  # stopping: nothing left to tell a client
                log.debug("event feed close: %s", exc)

    def admin_routes(self) -> Sequence[AdminRoute]:
        return (("GET", "/v1/events", admin_handler(self)),)

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        return [("stream", True, f"GET /v1/events; feed {feed_choice(config)}")]


def feed_choice(config: Config) -> str:
    """``SPANVISOR_STREAM_FEED``; ``auto`` is the feed registered under the
    name of a sink this configuration runs (PostgreSQL), else ``memory``."""
    choice = str(value(config, "stream_feed")).lower()
    if choice != "auto":
        return choice
    from spanvisor.sink import auto_sink_names

    names = [str(n) for n in config.get("sinks") or ()]
    if names in ([], ["auto"]):
        names = auto_sink_names(config)
    return next((n for n in sorted(names) if n in feed_names()), "memory")


def attach(pipeline: Any) -> StreamSink:
    """The pipeline's stream sink, added before it starts when it has none:
    for a process that serves the control API itself (the demo)."""
    found = find(pipeline)
    if found is None:
        found = StreamSink()
        found.implicit = True  # not the user's: /readyz names it by its role
        pipeline.sinks.append(found)
    return found


def find(pipeline: Any) -> StreamSink | None:
    for sink in getattr(pipeline, "sinks", ()):
        if isinstance(sink, StreamSink):
            return sink
    return None


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # no signature to read: the first version's call
        return set()


__all__ = ["StreamSink", "attach", "feed_choice", "find", "item_of"]
