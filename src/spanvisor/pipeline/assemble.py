"""What a pipeline is built from: its sinks, its state store, its replica identity.

Used by :class:`spanvisor.pipeline.Pipeline` and by commands that deliver
events to sinks outside a pipeline (``spanvisor deadletter retry``), so both
build a sink's world the same way. Nothing here names a sink: sinks come from
the ``spanvisor.sinks`` entry points, and the state store for ``auto`` is the
one registered under the name of a running sink.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.config.conflicts import conflicts
from spanvisor.entrypoints import entry_points
from spanvisor.sink import Sink, SinkLoadError, auto_sink_names, load_sink_class
from spanvisor.statestores.api import ENTRY_POINT_GROUP as STATE_STORES
from spanvisor.statestores.api import StateStore, load_state_store_factory
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking import pricetable
from spanvisor.tracking.prices import Pricer

log = logging.getLogger("spanvisor.pipeline")
_MISSING: Any = object()
# The most an agent's price table child may take, as serve's: past it the
# agent's calls are unpriced (serve imports genai-prices instead). Its thread
# is joined at the interpreter's exit, so this also bounds an exit's wait.
AGENT_TABLE_S = 120.0


def build_sinks(config: Config, in_agent: bool = False) -> list[Sink]:
    """Instantiate the sinks config asks for, through the entry-point group.

    A name no sink has is a :class:`SinkLoadError`, which the CLI prints as
    one line; in an agent's process (``in_agent``: the processor and the
    exporter) a misspelt sink, a sink with a refused setting (a leniently
    loaded config's ``invalid``) or one whose constructor fails must not
    stop the agent, so it is left out and said once, in one line naming the
    setting."""
    names = list(config["sinks"])
    if names in ([], ["auto"]):
        found = {name: cls for name in auto_sink_names(config) if (cls := _auto_class(name)) is not None}
        if not in_agent:
            return [cls() for cls in found.values()]
        return [s for s in (_agent_sink(name, cls, config) for name, cls in found.items()) if s]
    if not in_agent:
        return [load_sink_class(name)() for name in names]
    sinks: list[Sink] = []
    for name in names:
        try:
            cls = load_sink_class(name)
        except SinkLoadError as exc:
            log.error("configuration error: SPANVISOR_SINKS: %s; the agent runs on without it", exc)
            continue
        sink = _agent_sink(name, cls, config)
        if sink is not None:
            sinks.append(sink)
    return sinks


def sink_problems(config: Config, sink: str) -> list[str]:
    """The refused values (a leniently loaded config's) of the settings the sink named ``sink`` declares."""
    owner = f"sink:{sink}"
    return [why for key, why in config.invalid.items() if config.owners.get(key) == owner]


def _agent_sink(name: str, make: Any, config: Config) -> Sink | None:
    problems = sink_problems(config, name)
    for problem in problems:
        log.error("configuration error: %s; the agent runs on without the %s sink", problem, name)
    if problems:
        return None
    try:
        return make()  # type: ignore[no-any-return]
    except Exception as exc:
        log.error("sink %s cannot start (%s); the agent runs on without it", name, exc)
        return None


def _auto_class(name: str) -> Any:
    """The class of a sink ``auto`` chose, or None (said) when it cannot be
    imported: a broken plugin must not stop the others."""
    try:
        return load_sink_class(name)
    except Exception as exc:
        log.warning("sink plugin %r could not be loaded: %s", name, exc)
        return None


def prepare(config: Config, sinks: Sequence[Sink], pricer: Pricer, path: str) -> Any:
    """What the pipeline's thread would otherwise import, imported now, on
    the thread that builds the pipeline (an agent's, building its processor
    or exporter), before that thread starts: the modules each sink says it
    imports lazily (``imports``, see :class:`spanvisor.sink.BaseSink`) and
    the state store's plugin. A module imported on spanvisor's thread while
    the agent's threads run is, half done, visible to them in
    ``sys.modules`` (openai reads ``sys.modules["httpx"]`` on every request).
    Returns the state store's factory for :func:`open_state_store`."""
    for line in conflicts(config):  # said once per pipeline; the values stay as given
        log.warning("configuration: %s", line)
    for sink in sinks:
        wanted = getattr(sink, "imports", None)
        try:
            names = list(wanted(config)) if wanted is not None else []
        except Exception as exc:  # a third-party sink's bug: its start still imports what it needs
            log.warning("sink %s: imports() failed: %s", getattr(sink, "name", sink), exc)
            names = []
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:  # its start fails the same way, and says so
                log.debug("sink %s: %s not imported (%s)", getattr(sink, "name", sink), name, exc)
    if path != "receiver" and not pricetable.can_run_child():
        pricer.import_here()  # no table without a child: genai-prices here, not on the pipeline's thread
    return _state_store_factory(config, sinks)


def _state_store_factory(config: Config, sinks: Sequence[Sink]) -> Any:
    """The store ``SPANVISOR_STATE_STORE`` names, loaded: for ``auto``, the
    one a running sink's plugin registers under the sink's own name (the
    PostgreSQL plugin does), else in memory (None); an exception, raised by
    :func:`open_state_store`, when it cannot be loaded."""
    choice = str(config["state_store"]).lower()
    if choice == "auto":
        registered = {ep.name for ep in entry_points(group=STATE_STORES)}
        running = sorted(str(getattr(s, "name", "")) for s in sinks)
        choice = next((name for name in running if name in registered), "memory")
    if choice == "memory":
        return None
    try:
        return load_state_store_factory(choice)
    except Exception as exc:
        return _Unavailable(choice, exc)


class _Unavailable:
    def __init__(self, name: str, exc: Exception) -> None:
        self.name, self.exc = name, exc


async def open_state_store(
    config: Config, sinks: Sequence[Sink], shared: dict[str, Any], factory: Any = _MISSING
) -> StateStore:
    """The store ``SPANVISOR_STATE_STORE`` names (``factory``: as
    :func:`prepare` loaded it); never raises: an unavailable store is logged
    and replaced by the in-memory one."""
    if factory is _MISSING:
        factory = _state_store_factory(config, sinks)
    if factory is None:
        return InMemoryStateStore()
    try:
        if isinstance(factory, _Unavailable):
            raise factory.exc
        store: StateStore = await factory.open(config, shared)
        return store
    except Exception as exc:
        log.error(
            "state store %r unavailable (%s); using the in-memory store: claims will not "
            "be shared with other replicas until restart",
            factory.name if isinstance(factory, _Unavailable) else str(config["state_store"]).lower(),
            exc,
        )
        return InMemoryStateStore()


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def warm_prices(pricer: Pricer, data_dir: Path, receiver: bool) -> asyncio.Future[None]:
    """Read the price table on a helper thread (a child process or the
    cache file in ``data_dir``: no import in this process); pricing waits
    for it meanwhile, on the pipeline's thread, never on an agent's. Only a
    receiver falls back to importing genai-prices should the table fail (no
    agent's code runs beside it: see :mod:`spanvisor.tracking.prices`)."""
    pricer.expect_table()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def read() -> None:
        try:
            pricer.warm(data_dir, may_import=receiver, timeout_s=AGENT_TABLE_S)
        finally:
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop closed meanwhile: nobody waits
                pass

    # A daemon thread, not the loop's executor: the interpreter joins the
    # executor's threads at exit, so an agent would wait out the child.
    threading.Thread(target=read, name="spanvisor-prices", daemon=True).start()
    return done


async def table_within(pricer: Pricer, deadline: float) -> None:
    """Wait for the price table until ``deadline`` (a flush gives it half
    its time, the rest is delivery's), then price without it."""
    while pricer.reading and time.monotonic() < deadline:  # noqa: ASYNC110 - a threading.Event
        await asyncio.sleep(0.02)
    if pricer.reading:
        pricer.stop_waiting("the price table was not read within a flush's deadline")


def replica_id(config: Config, path: str) -> str:
    """``SPANVISOR_REPLICA_ID``, else host and data directory for a receiver
    (one replica per data dir, restarts included), host and pid otherwise
    (several agent processes share a host and a default data dir)."""
    configured = config.get("replica_id")
    if configured:
        return str(configured)
    host = socket.gethostname()
    if path == "receiver":
        digest = hashlib.blake2b(str(config.data_dir.resolve()).encode(), digest_size=4).hexdigest()
        return f"{host}:{digest}"
    return f"{host}:{os.getpid()}"
