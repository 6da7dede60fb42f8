"""One process's state store, kept in memory: the default without
``spanvisor serve``'s data dir or PostgreSQL, and the reference for what a
store must do (the protocol is in :mod:`.api`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanvisor.statestores.api import Claim


@dataclass(slots=True)
class _Entry:
    owner: str
    expires: float
    value: Mapping[str, Any] | None
    version: int | None = None


class InMemoryStateStore:
    """One process's store. Bounded: the oldest keys go first."""

    def __init__(self, max_keys: int = 100_000, clock: Any = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # Each call's check and write are one step on any loop; pipelines of
        # one process on their own threads may share this store (spending).
        # Reentrant: put_if_owner writes through put (which a subclass may wrap).
        self._lock = threading.RLock()
        self._max_keys = max_keys
        self._clock = clock

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim:
        with self._lock:
            return self._claim(namespace, key, owner, lease_s)

    def _claim(self, namespace: str, key: str, owner: str, lease_s: float) -> Claim:
        now = self._clock()
        entry = self._entries.get((namespace, key))
        if entry is not None:
            if entry.value is not None:
                return Claim(won=False, value=entry.value)
            if entry.owner != owner and entry.expires > now:
                return Claim(won=False)
        self._entries[(namespace, key)] = _Entry(owner, now + lease_s, None)
        self._entries.move_to_end((namespace, key))
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return Claim(won=True)

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        with self._lock:
            self._entries[(namespace, key)] = _Entry(owner, float("inf"), dict(value))

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is not None:
                if entry.value is not None:
                    return entry.owner == owner and entry.value == dict(value)
                if entry.owner != owner and entry.expires > self._clock():
                    return False
            await self.put(namespace, key, value, owner)
            return True

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        with self._lock:  # no await between the read and the write, and one thread at a time
            return self._put_if_newer(namespace, key, value, version, owner, own)

    def _put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, own: bool
    ) -> Claim:
        entry = self._entries.get((namespace, key))
        stored = entry.version if entry is not None and entry.value is not None else None
        if (
            entry is not None
            and stored is not None
            and (stored > version or (stored == version and not (own and entry.owner == owner)))
        ):
            return Claim(won=False, value=entry.value)
        self._entries[(namespace, key)] = _Entry(owner, float("inf"), dict(value), version)
        self._entries.move_to_end((namespace, key))
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return Claim(won=True)

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        entry = self._entries.get((namespace, key))
        return None if entry is None else entry.value

    async def release(self, namespace: str, key: str, owner: str) -> None:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is not None and entry.owner == owner and entry.value is None:
                del self._entries[(namespace, key)]

    async def close(self) -> None:
        return None
