"""One process's state store, kept in memory: the default without
``spanvisor serve``'s data dir or PostgreSQL, and the reference for what a
store must do (the protocol is in :mod:`.api`).

A value is kept as the other stores keep it, JSON text (:func:`.api.value_text`),
and each entry as a tuple of text and numbers. In an agent's process this
store holds two keys for every run (the control log's record and its task's
list of runs), up to its bound; kept as dicts of lists in slotted objects,
that was about nine objects a run for the garbage collector to walk in every
full collection on the agent's thread, a heap growing for the first 50,000
runs (issue 70). Text and tuples of text are not the collector's to walk. A
reader gets a new dict every time, and a value reads back as PostgreSQL's
and SQLite's stores give it (a tuple as a list), so code tested on this store
meets no surprise on the others.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

from spanvisor.statestores.api import Claim, value_of, value_text

# (owner, the claim's lease (inf once settled), the value's text (None while
# only claimed), version). A plain tuple: the collector stops tracking one
# that holds only text and numbers, never a NamedTuple.
_Entry = tuple[str, float, str | None, int | None]
_OWNER: Final = 0
_EXPIRES: Final = 1
_VALUE: Final = 2
_VERSION: Final = 3


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
            if entry[_VALUE] is not None:
                return Claim(won=False, value=value_of(entry[_VALUE]))
            if entry[_OWNER] != owner and entry[_EXPIRES] > now:
                return Claim(won=False)
        self._set((namespace, key), (owner, now + lease_s, None, None))
        return Claim(won=True)

    def _set(self, at: tuple[str, str], entry: _Entry) -> None:
        """Write ``entry`` as the newest key; the oldest go beyond the bound."""
        self._entries[at] = entry
        self._entries.move_to_end(at)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    # Values are encoded and decoded outside the lock: only the entry's
    # check and write hold it (a run record with its requests is a few KB).

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        text = value_text(value)
        with self._lock:
            self._set((namespace, key), (owner, float("inf"), text, None))

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        text = value_text(value)
        with self._lock:
            entry = self._entries.get((namespace, key))
            settled = None if entry is None else entry[_VALUE]
            if entry is not None and settled is None and entry[_OWNER] != owner and entry[_EXPIRES] > self._clock():
                return False  # another owner's claim, still held
            if settled is None:
                await self.put(namespace, key, value, owner)
                return True
            if entry is None or entry[_OWNER] != owner:
                return False
        # Its own settled value: the same if it reads back so (written again
        # with its keys in another order, a tuple for a list).
        return settled == text or value_of(settled) == value_of(text)

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        text = value_text(value)
        with self._lock:  # no await between the read and the write, and one thread at a time
            stored = self._put_if_newer(namespace, key, text, version, owner, own)
        return Claim(won=True) if stored is None else Claim(won=False, value=value_of(stored))

    def _put_if_newer(self, namespace: str, key: str, text: str, version: int, owner: str, own: bool) -> str | None:
        """None when written; else the newer value's text that stays."""
        entry = self._entries.get((namespace, key))
        stored = entry[_VERSION] if entry is not None and entry[_VALUE] is not None else None
        if (
            entry is not None
            and stored is not None
            and (stored > version or (stored == version and not (own and entry[_OWNER] == owner)))
        ):
            return entry[_VALUE]
        self._set((namespace, key), (owner, float("inf"), text, version))
        return None

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        entry = self._entries.get((namespace, key))
        return None if entry is None else value_of(entry[_VALUE])

    async def release(self, namespace: str, key: str, owner: str) -> None:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is not None and entry[_OWNER] == owner and entry[_VALUE] is None:
                del self._entries[(namespace, key)]

    async def close(self) -> None:
        return None
