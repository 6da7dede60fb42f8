"""The sink plugin API, in the style of OpenTelemetry's SpanExporter.

A sink is a small object with four coroutines. ``export`` gets a batch of
events in order (within a task) and answers with a :class:`SinkResult`
instead of raising; the dispatcher retries ``RETRY`` with backoff and counts
``FAILURE`` as dropped. An exception from ``export`` is a contract breach the
dispatcher survives: a batch that keeps raising is split and the events it
fails on are set aside in the dead-letter store (docs/design/architecture.md).
Two optional members tell the pipeline more: ``durable`` (``SUCCESS`` means
stored durably; the receiver pushes back rather than let this sink drop) and
``health()`` (whether the sink can write now; a durable sink that cannot makes
``/readyz`` answer 503), and ``paced`` (the receiver waits for this sink's
queue too while the sink delivers, but not while it delivers nothing: the
event stream, which may lose events during its database's outage but not
because spans came in faster than it encodes them). A sink may also serve HTTP routes on ``spanvisor
serve``'s admin port (``admin_routes()``, e.g. the Prometheus sink's
``/metrics``): the core names no sink. Sinks are found through the ``spanvisor.sinks``
entry-point group, the built-in ones exactly like a third-party one.
A sink that imports modules lazily (in ``start``, ``export`` or its own
tasks) names them in ``imports(config)``: the pipeline imports them on the
thread that builds it, never on its own thread while an agent runs
(docs/design/architecture.md, "Imports").
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import importlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from spanvisor.entrypoints import entry_points
from spanvisor.events import Event

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting
    from spanvisor.control.hub import Control
    from spanvisor.statestores.api import StateStore
    from spanvisor.stats import PipelineStats

ENTRY_POINT_GROUP = "spanvisor.sinks"

# An aiohttp request handler (the receiver's admin port is an aiohttp app).
AdminHandler = Callable[[Any], Awaitable[Any]]
AdminRoute = tuple[str, str, AdminHandler]  # (method, path, handler)


class SinkResult(enum.Enum):
    SUCCESS = "success"
    # Transient: the dispatcher sends the same batch again after a backoff.
    RETRY = "retry"
    # Permanent: the batch is dropped and counted; never resent.
    FAILURE = "failure"


@dataclass
class SinkContext:
    """What the pipeline hands every sink at start."""

    config: Config
    state_store: StateStore
    stats: PipelineStats
    # Shared between sinks of one pipeline, e.g. the Prometheus registry or
    # the database pool; keys are the plugin's own names.
    shared: dict[str, Any] = field(default_factory=dict)
    # Who this process is to the state store. Stable across restarts of a
    # `spanvisor serve` replica on the same data directory, so a restarted
    # replica takes back the claims it held when it died instead of waiting
    # for their leases to run out.
    replica_id: str = ""
    # People's decisions: record one, read a task's back (a sink taking clicks
    # from Slack uses it); None outside a pipeline.
    control: Control | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("spanvisor.sink"))


@runtime_checkable
class Sink(Protocol):
    """Receives domain events. Every method must return, never raise.

    Optional, read with ``getattr``: ``durable: bool``, ``paced: bool``,
    ``health() -> tuple[bool, str]`` and ``imports(config) -> Sequence[str]``
    (see :class:`BaseSink`).
    """

    name: str

    async def start(self, ctx: SinkContext) -> None: ...

    async def export(self, events: Sequence[Event]) -> SinkResult: ...

    async def force_flush(self, timeout_s: float) -> bool: ...

    async def shutdown(self, timeout_s: float) -> None: ...


class BaseSink:
    """Optional base class: no-op lifecycle, so a sink only writes ``export``.

    ``settings`` lists the sink's own configuration; ``spanvisor check`` and
    :class:`spanvisor.config.Config` pick them up. ``enabled`` says whether
    config asks for this sink when no explicit list is given.
    """

    name: str = "base"
    settings: ClassVar[Sequence[Setting]] = ()
    # True only if SUCCESS means the events are stored durably (PostgreSQL
    # through its outbox): the receiver then answers 503 before this sink's
    # queue would drop, and readiness follows its health().
    durable: ClassVar[bool] = False
    # True if the receiver should wait for this sink's queue as for a durable
    # one, but only while the sink delivers: a sink that delivers nothing
    # lately (its backend away) must not refuse spans for the durable sinks,
    # and drops what its queue cannot hold, counted.
    paced: ClassVar[bool] = False
    # True if the sink serves routes on `spanvisor serve`'s admin port
    # (admin_routes). serve runs it with SPANVISOR_SINKS=auto; when an explicit
    # list omits it, serve runs no sink of it (no worker, no events) and asks
    # the class for `admin_service(stats)` instead, if it has one: an object
    # with admin_routes() only (the Prometheus plugin's self-metrics).
    serves_admin: ClassVar[bool] = False
    # Set on an instance added for the user rather than configured (serve's
    # admin-port sinks, the demo's event stream): /readyz then names it by
    # ``role`` (what it does), if the class has one, not as a sink.
    implicit: bool = False

    def __init__(self) -> None:
        self.ctx: SinkContext | None = None

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return False

    async def start(self, ctx: SinkContext) -> None:
        self.ctx = ctx

    async def export(self, events: Sequence[Event]) -> SinkResult:
        raise NotImplementedError

    async def force_flush(self, timeout_s: float) -> bool:
        return True

    async def shutdown(self, timeout_s: float) -> None:
        return None

    def imports(self, config: Config) -> Sequence[str]:
        """The modules this sink imports lazily with ``config`` (in ``start``,
        ``export``, its own tasks), by name: the pipeline imports them on the
        thread that builds it, before the pipeline's thread starts. A module
        half imported on spanvisor's thread is visible to the agent's
        threads in ``sys.modules`` (openai reads ``sys.modules["httpx"]`` on
        every request). None by default."""
        return ()

    def admin_routes(self) -> Sequence[AdminRoute]:
        """HTTP routes for the admin port of ``spanvisor serve``; none by default."""
        return ()

    def health(self) -> tuple[bool, str]:
        """Whether the sink can deliver now, and why not: ``(False, "cannot
        connect: ...")``. Called from any thread (``/readyz``), so it must only
        read what the sink recorded on its last attempt: no I/O, no blocking."""
        return True, "ok"


class Clock(Protocol):
    """Monotonic seconds and a way to wait: all a sink's retry and backoff
    policy reads of time, so tests can inject a manual one."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """``time.monotonic`` and ``asyncio.sleep``: the clock sinks use unless given one."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SinkLoadError(Exception):
    pass


def available_sinks() -> dict[str, type[Any]]:
    """Every sink class registered in the entry-point group, by name.

    A plugin that fails to import is skipped with a warning so that one
    broken third-party package cannot take the whole pipeline down.
    """
    found: dict[str, type[Any]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            logging.getLogger("spanvisor").warning("sink plugin %r could not be loaded: %s", ep.name, exc)
    return found


def auto_sink_names(config: Config) -> list[str]:
    """The installed sinks ``SPANVISOR_SINKS=auto`` runs with ``config``, by
    name, sorted. Each is asked through the ``enabled(config)`` of the
    module its ``spanvisor.sink_settings`` entry point names, beside its
    settings table, so that no sink that does not run is imported (in an
    agent's process the Telegram sink alone brought aiohttp, 180 ms of
    imports and a larger heap for every later collection of the agent's
    thread to walk); a sink without one is asked through its class's
    ``enabled``, imported for it. A sink whose rule fails is left out, with
    a warning: a broken plugin must not stop the others."""
    from spanvisor.config.loading import SINK_SETTINGS_GROUP

    rules = {ep.name: ep for ep in entry_points(group=SINK_SETTINGS_GROUP)}
    chosen = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            rule = _rule(rules.get(ep.name))
            if rule is None:
                rule = ep.load().enabled
        except Exception as exc:  # a broken plugin must not break the others
            logging.getLogger("spanvisor").warning("sink plugin %r could not be loaded: %s", ep.name, exc)
            continue
        try:
            runs = bool(rule(config))
        except Exception as exc:  # a third-party sink's bug must not stop the others
            logging.getLogger("spanvisor").warning("sink %s: enabled() failed: %s", ep.name, exc)
            continue
        if runs:
            chosen.append(ep.name)
    return sorted(chosen)


def _rule(settings: EntryPoint | None) -> Callable[[Config], object] | None:
    """The ``enabled`` beside a sink's settings table, or None."""
    if settings is None:
        return None
    found = getattr(importlib.import_module(settings.module), "enabled", None)
    return found if callable(found) else None


def load_sink_class(name: str) -> type[Any]:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return ep.load()  # type: ignore[no-any-return]
    known = ", ".join(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))
    raise SinkLoadError(f"no sink named {name!r} in entry-point group {ENTRY_POINT_GROUP!r}; installed: {known}")


def retry_after_seconds(value: str | None, max_s: float) -> float | None:
    """Seconds from an HTTP ``Retry-After`` (delta-seconds or an HTTP date),
    within ``[0, max_s]``; None when absent or unreadable. For sinks that
    speak HTTP to a service that may ask them to wait."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        secs = when.timestamp() - time.time()
    if not math.isfinite(secs):
        return None
    return min(max_s, max(0.0, secs))
