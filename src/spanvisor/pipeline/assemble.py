"""What a pipeline is built from: its sinks, its state store, its replica identity.

Used by :class:`spanvisor.pipeline.Pipeline` and by commands that deliver
events to sinks outside a pipeline (``spanvisor deadletter retry``), so both
build a sink's world the same way. Nothing here names a sink: sinks come from
the ``spanvisor.sinks`` entry points, and the state store for ``auto`` is the
one registered under the name of a running sink.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from spanvisor.config import Config
from spanvisor.sink import Sink, available_sinks, load_sink_class
from spanvisor.statestores.api import ENTRY_POINT_GROUP as STATE_STORES
from spanvisor.statestores.api import StateStore, load_state_store_factory
from spanvisor.statestores.memory import InMemoryStateStore

log = logging.getLogger("spanvisor.pipeline")


def build_sinks(config: Config) -> list[Sink]:
    """Instantiate the sinks config asks for, through the entry-point group."""
    names = list(config["sinks"])
    if names in ([], ["auto"]):
        found = available_sinks()
        chosen = [name for name, cls in sorted(found.items()) if _enabled(cls, config)]
        return [found[name]() for name in chosen]
    return [load_sink_class(name)() for name in names]


def _enabled(cls: Any, config: Config) -> bool:
    try:
        return bool(cls.enabled(config))
    except Exception as exc:  # a third-party sink's bug must not stop the others
        log.warning("sink %s: enabled() failed: %s", getattr(cls, "name", cls), exc)
        return False


async def open_state_store(config: Config, sinks: Sequence[Sink], shared: dict[str, Any]) -> StateStore:
    """The store ``SPANVISOR_STATE_STORE`` names; for ``auto``, the one a
    running sink's plugin registers under the sink's own name (the PostgreSQL
    plugin does), else in memory. Never raises: an unavailable store is
    logged and replaced by the in-memory one."""
    choice = str(config["state_store"]).lower()
    if choice == "auto":
        registered = {ep.name for ep in entry_points(group=STATE_STORES)}
        running = sorted(str(getattr(s, "name", "")) for s in sinks)
        choice = next((name for name in running if name in registered), "memory")
    if choice == "memory":
        return InMemoryStateStore()
    try:
        factory = load_state_store_factory(choice)
        store: StateStore = await factory.open(config, shared)
        return store
    except Exception as exc:
        log.error(
            "state store %r unavailable (%s); using the in-memory store: claims will not "
            "be shared with other replicas until restart",
            choice,
            exc,
        )
        return InMemoryStateStore()


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
