"""Where the stream's positions come from: this process, or a shared database.

An :class:`EventFeed` records the items this process's pipeline publishes
and delivers positioned records, in one order, to ``deliver`` (which appends
them to the ring). The memory feed numbers this process's events 1, 2, 3…
under a random epoch: a restart or another replica is another epoch, and a
client resuming from one gets ``event: reset`` from the other. A feed from
the ``spanvisor.event_feeds`` entry points (the PostgreSQL plugin's) records
every replica's events in one table whose sequence is the position, and
delivers all of them to every replica, so any replica serves the whole
stream and resumes any client. The core names no such feed.

Recording on demand: a feed may say whether anybody reads what it would
record (``async recording() -> bool``) and be told that a client connected
(``async want()``). While ``recording()`` is False the stream sink neither
encodes nor publishes its events: nobody is connected and nobody holds a
position that a later event could follow. The memory feed records once a
client has connected to this process (positions exist only from then on);
the PostgreSQL feed while a client of any replica is connected or left
less than the retention ago, and marks what it skipped as pruned so a
position from before it gets a reset. A feed without these methods records
always.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from spanvisor.entrypoints import entry_points
from spanvisor.stream.ring import Item

if TYPE_CHECKING:
    from spanvisor.config import Config

ENTRY_POINT_GROUP = "spanvisor.event_feeds"
Deliver = Callable[[Sequence[tuple[int, Item]]], None]
# Events of the stream a feed could not deliver (how many, why): the stream
# sink counts them as drops (spanvisor_dropped_total{sink="stream"}).
Lost = Callable[[int, str], None]
log = logging.getLogger("spanvisor.stream")


class EventFeed(Protocol):
    # Names the position space: positions of two epochs are not comparable.
    epoch: str

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> int:
        """Begin delivering; returns the position the stream starts after.
        ``lost`` is told of every recorded event the feed had to skip."""
        ...

    async def publish(self, items: Sequence[Item]) -> bool:
        """Record this process's items in order; False: not recorded (retry later)."""
        ...

    async def since(self, after: int, limit: int) -> list[tuple[int, Item]] | None:
        """Recorded items after ``after`` (at most ``limit``), for a client
        the ring no longer covers; None when they are no longer kept."""
        ...

    async def close(self) -> None: ...


class MemoryFeed:
    """This process's events only, numbered from 1 under a random epoch."""

    def __init__(self) -> None:
        self.epoch = "m" + secrets.token_hex(4)
        self._next = 1
        self._deliver: Deliver | None = None
        # No position of this epoch exists before a client connects: until
        # then an event recorded here would be read by nobody.
        self._wanted = False

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> int:
        self._deliver = deliver  # delivers in publish: nothing to lose
        return 0

    async def publish(self, items: Sequence[Item]) -> bool:
        records = [(self._next + i, item) for i, item in enumerate(items)]
        self._next += len(items)
        if self._deliver is not None:
            self._deliver(records)
        return True

    async def recording(self) -> bool:
        return self._wanted

    async def want(self) -> None:
        # For the process's life: a client that leaves may resume from the ring.
        self._wanted = True

    async def since(self, after: int, limit: int) -> list[tuple[int, Item]] | None:
        return None

    async def close(self) -> None:
        return None


def feed_names() -> set[str]:
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


async def open_feed(choice: str, config: Config, shared: dict[str, Any]) -> EventFeed:
    """The feed ``choice`` names (``memory`` or an entry point's name). Never
    raises: a feed that cannot open is logged and replaced by the memory feed
    (this replica then streams its own events only)."""
    if choice != "memory":
        try:
            (ep,) = entry_points(group=ENTRY_POINT_GROUP, name=choice)
            feed: EventFeed = await ep.load().open(config, shared)
            return feed
        except Exception as exc:
            log.error("event feed %r unavailable (%s); the event stream serves this process's events only", choice, exc)
    return MemoryFeed()


__all__ = ["ENTRY_POINT_GROUP", "Deliver", "EventFeed", "Lost", "MemoryFeed", "feed_names", "open_feed"]
