"""``GET /v1/events``: the event stream as Server-Sent Events.

Served on ``spanvisor serve``'s OTLP/HTTP port next to the control API (its
bearer token, read scope: the OTLP token or the decide token), on its admin
port, and on a control API a process serves itself (the demo's). One SSE
event per domain event::

    id: <epoch>:<position>:<event id>
    event: <kind>
    data: <the public JSON body (spanvisor.stream.body), one line>

Query: ``task``, ``agent``, ``kind``, ``status`` (each a comma-separated
list; an event passes when it matches every filter given; an empty value or
an unknown kind or status is a 400 naming the parameter) and ``after`` (a
position, as ``Last-Event-ID``). ``Last-Event-ID`` or ``after`` resumes
right after that event; a position the ring and the feed no longer hold,
one past the newest event, or one of another epoch, gets ``event: reset``
and the stream goes on from now.
Idle streams get a comment line every ``SPANVISOR_STREAM_HEARTBEAT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, get_args

from spanvisor.control.bearer import bearer_matches
from spanvisor.events import Status
from spanvisor.stream.body import KINDS, SCHEMA_VERSION
from spanvisor.stream.clients import Client, Clients
from spanvisor.stream.feed import EventFeed
from spanvisor.stream.ring import Item, Ring, event_id_field, frame
from spanvisor.stream.settings import value

PATH = "/v1/events"
T = TypeVar("T")
log = logging.getLogger("spanvisor.stream")
STATUSES = get_args(Status)
PAGE = 500
MAX_ID = 256
# How often a waiting stream looks whether its client went away.
LIVENESS_S = 1.0
SEND_BUFFER = 64 * 1024
if TYPE_CHECKING:
    # Imported where it is used: Config.load imports every sink class (and so
    # this module), and an agent process must not pay for aiohttp.
    from aiohttp import web

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


class StreamSource(Protocol):
    """What this module reads of the stream sink (``stream.sink`` imports
    this module for its admin route, so it is named here, not imported)."""

    ring: Ring | None
    feed: EventFeed | None
    ctx: Any
    clients: Any
    loop: asyncio.AbstractEventLoop | None

    def want(self) -> Coroutine[Any, Any, None]: ...


def find(pipeline: Any) -> StreamSource | None:
    """The pipeline's stream sink (the sink that serves ``/v1/events``)."""
    for sink in getattr(pipeline, "sinks", ()):
        if getattr(sink, "serves_event_stream", False):
            found: StreamSource = sink
            return found
    return None


class _BadQuery(Exception):
    """Bad input: a 400 with this message, naming the ``parameter``."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Filters:
    tasks: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    statuses: frozenset[str] | None = None

    def match(self, item: Item) -> bool:
        return (
            (
                self.tasks is None
                or item.task_id in self.tasks
                or (item.former_id is not None and item.former_id in self.tasks)
            )
            and (self.agents is None or item.agent_id in self.agents)
            and (self.kinds is None or item.kind in self.kinds)
            and (self.statuses is None or item.status in self.statuses)
        )


def _values(query: Any, what: str, allowed: Iterable[str] | None = None) -> frozenset[str] | None:
    """The comma-separated values of parameter ``what`` (given more than once:
    all of them); None when it is absent. A filter that could match nothing
    by mistake (``?kind=``, ``?kind=,``, ``?task=a,,b``) is a 400, not a
    stream that stays silent."""
    getall = getattr(query, "getall", None)
    raws = list(getall(what, [])) if getall is not None else [r for r in (query.get(what),) if r is not None]
    if not raws:
        return None
    parts = [v.strip() for raw in raws for v in raw.split(",")]
    if any(not v for v in parts):
        raise _BadQuery(what, f"{what}: an empty value (write {what}=a,b, or leave {what} out to take every one)")
    values = frozenset(parts)
    if any(len(v) > MAX_ID or any(ord(c) < 32 or ord(c) == 127 for c in v) for v in values):
        raise _BadQuery(what, f"{what}: a value is longer than {MAX_ID} characters or holds control characters")
    if allowed is not None:
        unknown = sorted(values - set(allowed))
        if unknown:
            raise _BadQuery(what, f"unknown {what} {', '.join(unknown)[:200]}; known: {', '.join(allowed)}")
    return values


def filters_of(query: Any) -> Filters:
    return Filters(
        tasks=_values(query, "task"),
        agents=_values(query, "agent"),
        kinds=_values(query, "kind", KINDS),
        statuses=_values(query, "status", STATUSES),
    )


def position_of(raw: str | None, parameter: str = "after") -> tuple[str, int] | None:
    """``(epoch, position)`` from a ``Last-Event-ID`` or ``after``; None when absent."""
    if raw is None or raw.strip() == "":
        return None
    epoch, _, rest = raw.strip().partition(":")
    pos, _, _event_id = rest.partition(":")
    if not epoch or len(raw) > MAX_ID or not pos.isascii() or not pos.isdigit():
        raise _BadQuery(
            parameter, f"{parameter} must be an id this stream sent (<epoch>:<position>:<event id>), or be left out"
        )
    return epoch, min(int(pos), 2**63 - 1)  # past a feed's bigint: never sent, so a reset


def start_of(request: web.Request) -> tuple[str, int] | None:
    """Where the client resumes: ``Last-Event-ID`` (what ``EventSource``
    sends), else ``?after=``."""
    header = request.headers.get("Last-Event-ID")
    if header:
        return position_of(header, "Last-Event-ID")
    return position_of(request.query.get("after"), "after")


def reset_frame(ring: Ring, pos: int, why: str) -> bytes:
    doc = {
        "type": "spanvisor.reset",
        "v": SCHEMA_VERSION,
        "reason": why,
        "hint": "re-read the state (GET /v1/control/tasks/{task_id}); the stream goes on from now",
    }
    data = json.dumps(doc, separators=(",", ":")).encode("ascii")
    return f"id: {event_id_field(ring.epoch, pos)}\nevent: reset\ndata: ".encode("ascii") + data + b"\n\n"


def _error(status: int, message: str, parameter: str | None = None, **headers: str) -> web.Response:
    from aiohttp import web

    doc = {"error": message} if parameter is None else {"error": message, "parameter": parameter}
    return web.json_response(doc, status=status, headers=headers or None)


def clients_of(sink: StreamSource) -> Clients:
    if sink.clients is None:
        assert sink.ring is not None and sink.ctx is not None
        cfg = sink.ctx.config
        sink.clients = Clients(
            sink.ring, sink.ctx.stats, int(value(cfg, "stream_max_clients")), int(value(cfg, "stream_client_queue"))
        )
    clients: Clients = sink.clients
    return clients


def _tokens(config: Any) -> list[bytes]:
    """Read scope: the OTLP token (what the control API's reads take) or the decide token."""
    return [str(t).encode() for t in (config.get("otlp_token"), config.get("decide_token")) if t]


async def serve(request: web.Request, sink: StreamSource | None, tokens: list[bytes]) -> web.StreamResponse:
    header = request.headers.get("Authorization")
    matched = [i for i, t in enumerate(tokens) if bearer_matches(header, t)]
    if tokens and not matched:
        return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
    if sink is None:  # for good, not "yet": a client must not wait for it
        return _error(404, "this process runs no event stream: SPANVISOR_SINKS names no 'stream' (add it, or use auto)")
    if sink.ring is None or sink.ctx is None:
        return _error(503, "this process serves no event stream yet (starting)")
    try:
        filters = filters_of(request.query)
        start = start_of(request)
    except _BadQuery as exc:
        return _error(400, str(exc), exc.parameter)
    ahead: bool | None = False
    try:
        await _on_feed_loop(sink, sink.want())  # before the start is read: what follows is recorded
        ahead = start is not None and start[0] == sink.ring.epoch and not await _recorded(sink, start[1])
    except Exception as exc:  # the feed's database is away: the stream ends, the client comes back
        log.warning("event stream: cannot start a client's stream (%s); the client retries", type(exc).__name__)
        ahead = None
    clients = clients_of(sink)
    # The token that matched, not the header as written: spaces or the
    # scheme's case would make another key for the same token.
    key = f"token {matched[0]}" if matched else "no token"
    if not clients.acquire(key):
        return _error(429, f"at most {clients.max_per_token} event streams per token", **{"Retry-After": "5"})
    try:
        return await _stream(request, sink, clients, filters, start, ahead)
    finally:
        clients.release(key)


async def _stream(
    request: web.Request,
    sink: StreamSource,
    clients: Clients,
    filters: Filters,
    start: tuple[str, int] | None,
    ahead: bool | None = False,
) -> web.StreamResponse:
    """``ahead``: the client's position is past the newest event (a reset);
    None: that could not be told (the feed is away), so the stream ends at
    once and the client comes back with its ``Last-Event-ID`` (an
    ``EventSource`` treats an error status as final, an ended stream not)."""
    ring = sink.ring
    assert ring is not None and sink.ctx is not None
    heartbeat = max(0.05, float(value(sink.ctx.config, "stream_heartbeat_s")))
    from aiohttp import web

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    _small_send_buffer(request)
    opening = b"retry: 2000\n: spanvisor event stream v%d\n\n" % SCHEMA_VERSION
    every = filters == Filters()
    client = Client(cursor=ring.head, transport=request.transport, filters=None if every else filters)
    if start is not None:
        epoch, pos = start
        if epoch != ring.epoch:
            opening += reset_frame(ring, client.cursor, "the stream restarted or is another one (another epoch)")
        elif ahead:
            # Never a position of this stream: waiting for the stream to get
            # there would be silence, then events past one it never sent.
            opening += reset_frame(ring, client.cursor, "that position is newer than the stream's newest event")
        else:
            client.cursor = pos
            client.catching_up = pos < ring.floor
    if ahead is None:
        await response.write(opening)
        return response
    clients.add(client)
    try:
        await response.write(opening)
        await _follow(response, sink, ring, client, filters, heartbeat)
    except (ConnectionError, RuntimeError, asyncio.CancelledError):
        pass  # the client went away or was cut off; it resumes with Last-Event-ID
    except Exception as exc:  # the feed could not replay (its database is away): the client retries
        log.warning("event stream: a client's replay failed (%s: %s); its stream ends", type(exc).__name__, exc)
    finally:
        clients.remove(client)
    return response


def _small_send_buffer(request: web.Request) -> None:
    """A client that stops reading is noticed by its queue, not hidden for
    megabytes in the kernel's send buffer (which loopback grows to several)."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # not a TCP socket (a test's), or refused: the default buffer


async def _follow(
    response: web.StreamResponse, sink: StreamSource, ring: Ring, client: Client, filters: Filters, heartbeat: float
) -> None:
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    while not (client.cut or client.closing or ring.closed):
        client.wake.clear()
        records = ring.after(client.cursor, PAGE)
        if records is None:
            await _catch_up(response, sink, ring, client, filters)
            continue
        client.catching_up = False
        if records:
            chunk = b"".join([r.frame for r in records if filters.match(r.item)])
            if chunk:
                client.writing_to = records[-1].pos
                await response.write(chunk)
                client.writing_to = None
                idle_since = loop.time()
            client.cursor = records[-1].pos
            continue
        transport = client.transport
        if transport is None or transport.is_closing():
            return
        left = idle_since + heartbeat - loop.time()
        if left <= 0:
            client.writing_to = client.cursor
            await response.write(b": heartbeat\n\n")
            client.writing_to = None
            idle_since = loop.time()
            continue
        try:
            # asyncio.timeout, not wait_for: no task per wait, for a thousand clients.
            client.waiting = True
            async with asyncio.timeout(min(LIVENESS_S, left)):
                await client.wake.wait()
        except TimeoutError:
            pass
        finally:
            client.waiting = False


async def _catch_up(
    response: web.StreamResponse, sink: StreamSource, ring: Ring, client: Client, filters: Filters
) -> None:
    """Below the ring: a page from the feed, or a reset when it is gone."""
    client.catching_up = True
    rows = await _since(sink, client.cursor)
    if not rows:
        head = ring.head
        await response.write(reset_frame(ring, head, "that position is older than the stream keeps"))
        client.cursor = head
        client.catching_up = False
        return
    chunk = b"".join([frame(ring.epoch, pos, item) for pos, item in rows if filters.match(item)])
    if chunk:
        await response.write(chunk)
    client.cursor = rows[-1][0]


async def _recorded(sink: StreamSource, pos: int) -> bool:
    """Whether ``pos`` (of this epoch) is a position the stream reached. Up
    to the ring's head it is; past it, a shared feed may hold what another
    replica recorded and this ring has not read yet: a row at or after it
    says so."""
    ring = sink.ring
    if ring is None or pos <= ring.head:
        return True
    rows = await _since(sink, pos - 1, 1)
    return bool(rows)


async def _since(sink: StreamSource, cursor: int, limit: int = PAGE) -> list[tuple[int, Item]] | None:
    """The feed's page after ``cursor``. A feed that cannot answer ends the stream:
    the client comes back with its Last-Event-ID (``retry:``), not a reset."""
    return None if sink.feed is None else await _on_feed_loop(sink, sink.feed.since(cursor, limit))


async def _on_feed_loop(sink: StreamSource, work: Coroutine[Any, Any, T]) -> T:
    """``work`` run on the pipeline's loop, where the feed's connections live."""
    loop = sink.loop
    if loop is None or loop is asyncio.get_running_loop():
        return await work
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))


def admin_handler(sink: StreamSource) -> Handler:
    """``/v1/events`` on the admin port of ``spanvisor serve``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        config = sink.ctx.config if sink.ctx is not None else None
        return await serve(request, sink, _tokens(config) if config is not None else [])

    return handle


def add_routes(app: web.Application, pipeline: Any, token: str | None) -> None:
    """``/v1/events`` on an app that serves the control API (its token, read scope)."""
    config = getattr(pipeline, "config", None)
    decide = config.get("decide_token") if config is not None else None
    tokens = [t.encode() for t in (token, decide) if isinstance(t, str) and t]

    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve(request, find(pipeline), tokens)

    async def closing(app: web.Application) -> None:
        sink = find(pipeline)
        if sink is not None and sink.clients is not None:
            sink.clients.close_all()

    app.router.add_get(PATH, handle)
    app.on_shutdown.append(closing)


__all__ = ["KINDS", "PATH", "STATUSES", "Filters", "add_routes", "admin_handler", "filters_of", "position_of"]
