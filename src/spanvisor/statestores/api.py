"""The shared state store: per-task keys that sinks and replicas claim.

Slack has no idempotency key on ``chat.postMessage`` and Grafana none on
``POST /api/annotations``, so "create the parent message for task T" must be
claimed before it is done, and its result (channel and ts, annotation id)
stored where a restarted process or another replica reads it back. The
in-memory store (:mod:`.memory`) serves one process, the local one
(:mod:`.local`) the processes sharing a data dir; the PostgreSQL store (plugin
``spanvisor_postgres``, entry-point group ``spanvisor.state_stores``) serves
replicas sharing a database.

A claim is a lease: if its owner dies before ``put``, the claim expires after
``lease_s`` and another owner may take it. An owner that is only slow (a long
rate-limit pause, a state-store outage) may find its lease taken when it
comes back, so both may act: a store that also offers ``put_if_owner``
(:class:`ConditionalStateStore`; both built-in stores do) lets exactly one of
them settle the key, and the other learns it lost and can undo its side
effect. ``put`` itself stays unconditional for callers that overwrite a
value on purpose.

A value that gets *better* over time (the newest view of a task that replicas
render: see ``docs/reference/deploy.md#replicas``) is kept under a version with
``put_if_newer``: the write happens only when it is newer than what is
stored, in one atomic step, so an older or partial view never replaces a
newer or final one whatever order replicas write in. An equal version is
not newer, whoever wrote it: read version n, write n + 1 is a true
compare-and-set, and of two writers (two replicas, or two coroutines of one
process) exactly one wins. Keys written this way are not claimed: a
namespace uses either claims or versions.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from spanvisor.entrypoints import entry_points

ENTRY_POINT_GROUP = "spanvisor.state_stores"


@dataclass(frozen=True, slots=True)
class Claim:
    # True when the caller now holds the key and should do the side effect.
    won: bool
    # The value stored by whoever completed the key, if anyone has.
    value: Mapping[str, Any] | None = None


class StoreUnavailable(Exception):
    """The state store failed or did not answer in time: nothing is known
    about the key's state, and the caller tries again later."""


# SQLSTATE classes and codes that say "the database is away or busy, try
# again", not "this request is wrong": connection exceptions (08),
# insufficient resources (53), operator intervention (57: shutting down,
# starting up), system errors (58), serialization failures and deadlocks.
_AWAY_CLASSES = ("08", "53", "57", "58")
_AWAY_CODES = ("40001", "40P01")
# A driver's own "the connection is gone" errors, named rather than imported
# (the core imports no database driver): asyncpg's, SQLite's.
_AWAY_NAMES = frozenset(
    {"InterfaceError", "ConnectionDoesNotExistError", "InternalClientError", "OperationalError", "PoolClosedError"}
)


def outage_of(exc: BaseException) -> str | None:
    """Why ``exc`` means the store cannot be reached now (the exception's
    type name), or None when it is something else (a bug, bad data). Looks
    through the causes a wrapper chained (``raise … from``) too."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, StoreUnavailable | OSError | TimeoutError):
            return type(seen).__name__
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and (state[:2] in _AWAY_CLASSES or state in _AWAY_CODES):
            return type(seen).__name__
        if any(
            c.__name__ in _AWAY_NAMES and c.__module__.startswith(("asyncpg", "sqlite3")) for c in type(seen).__mro__
        ):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


@runtime_checkable
class StateStore(Protocol):
    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim: ...

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None: ...

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None: ...

    async def release(self, namespace: str, key: str, owner: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ConditionalStateStore(StateStore, Protocol):
    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        """Settle the key with ``value`` unless someone else holds it.

        Stores when the key is unsettled and claimed by ``owner``, claimed by
        no one, or claimed under a lapsed lease. A key already settled with
        this very value by ``owner`` also answers True, so a put retried
        after a lost answer is harmless. False: another owner holds the key
        or settled it; nothing was written.
        """
        ...

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        """Store ``value`` at ``version`` only if the key holds an older one.

        Writes when the key holds no versioned value or one with a lower
        version, whoever writes: this is a compare-and-set, so of writers
        that all read version n and write n + 1, exactly one wins (two
        coroutines of one process included). With ``own=True`` the owner of
        the stored version may also rewrite that very version (a view its
        writer updates in place, a mark it completes); never use it for a
        read-modify-write. Answers ``Claim(won=True)`` when written;
        otherwise ``Claim(won=False, value=<the stored value>)``, and nothing
        was written. A version is an integer the caller derives from what
        makes a value newer.
        """
        ...


def put_own(
    put_if_newer: Callable[..., Awaitable[Claim]],
    namespace: str,
    key: str,
    value: Mapping[str, Any],
    version: int,
    owner: str,
) -> Awaitable[Claim]:
    """``put_if_newer(…, own=True)``, or without ``own`` for a store written
    before it existed (such a store let an owner rewrite its version anyway)."""
    try:
        takes_own = "own" in inspect.signature(put_if_newer).parameters
    except (TypeError, ValueError):
        takes_own = True
    if takes_own:
        return put_if_newer(namespace, key, value, version, owner, own=True)
    return put_if_newer(namespace, key, value, version, owner)


# What update_many applies to one key: the stored value (None when absent)
# -> (the value to store, its version), or None to leave the key as it is.
Change = Callable[[Mapping[str, Any] | None], tuple[Mapping[str, Any], int] | None]


@runtime_checkable
class BatchStateStore(Protocol):
    """A store that can read and write many keys in one transaction (the
    local SQLite store: each SQLite call lets go of the GIL and waits for it
    again, so a key at a time falls behind a busy process)."""

    async def update_many(self, updates: Sequence[tuple[str, str, Change]], owner: str) -> None:
        """Each ``(namespace, key, change)`` in order, all in one transaction
        that no other writer interleaves: ``change`` gets the key's value (as
        changed earlier in the batch, if it was) and its result is stored by
        ``owner`` at the version it names, as a won ``put_if_newer`` would.
        A change that raises writes nothing of the batch, and the call raises.
        Changes run on the store's thread: they must only compute."""
        ...


def value_text(value: Mapping[str, Any]) -> str:
    """A value as the stores keep it: JSON text, keys sorted, anything JSON
    has no form for as its ``str``."""
    return json.dumps(dict(value), default=str, sort_keys=True)


def value_of(text: str | None) -> Mapping[str, Any] | None:
    """A value back from :func:`value_text` (None stays None); a new dict on
    every read, so no reader holds the stored one."""
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def apply_changes(
    updates: Sequence[tuple[str, str, Change]],
    values: dict[tuple[str, str], Mapping[str, Any] | None],
    dump: Callable[[Mapping[str, Any]], str],
) -> dict[tuple[str, str], tuple[str, int]]:
    """A batch's changes in order over ``values`` (each key's stored value,
    updated in place as the batch changes it): what to write, each key's
    value as ``dump`` gives it and its version. Shared by the stores'
    ``update_many`` so every store applies a batch alike."""
    changed: dict[tuple[str, str], tuple[str, int]] = {}
    for ns, key, change in updates:
        got = change(values.get((ns, key)))
        if got is not None:
            value, version = got
            values[(ns, key)] = value
            changed[(ns, key)] = (dump(value), int(version))
    return changed


@runtime_checkable
class ScannableStateStore(Protocol):
    """A store that can list a namespace's values: what a process restarted
    on it reads to find work a crash left half done (the applied decisions
    of the control log that have no audit row yet: the local SQLite store;
    the PostgreSQL sink searches its own store with SQL instead)."""

    async def scan(self, namespace: str, since_s: float = 0.0) -> list[tuple[str, Mapping[str, Any]]]:
        """Every ``(key, value)`` of ``namespace`` that has a value, written
        at or after ``since_s`` (wall-clock seconds; 0: all of them)."""
        ...


@runtime_checkable
class WatchableStateStore(Protocol):
    """A store that can tell every process that a key changed (PostgreSQL's
    LISTEN/NOTIFY), so that a waiter wakes at once instead of polling. Both
    are best effort: a waiter still re-reads now and then, since a
    notification can be lost while a listening connection is re-made."""

    async def notify(self, namespace: str, key: str) -> None:
        """Tell every watcher of ``namespace`` (in any process) that ``key`` changed."""
        ...

    async def watch(self, namespace: str, on_change: Callable[[str], None]) -> bool:
        """Have ``on_change(key)`` called, on this event loop, for each
        notified change in ``namespace``; False while that cannot be had
        (the caller keeps polling). Calling it again is cheap and re-makes
        a lost listening connection."""
        ...


def load_state_store_factory(name: str) -> Any:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return ep.load()
    raise LookupError(f"no state store named {name!r} in entry-point group {ENTRY_POINT_GROUP!r}")
