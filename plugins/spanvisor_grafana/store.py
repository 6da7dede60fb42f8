"""The state store as the Grafana sink sees it: its failures are transient.

A state store (PostgreSQL for replicas) can be briefly away. That is an
outage like Grafana's own, not a bug: the batch must come back later, so
its errors become :class:`~spanvisor.statestores.api.StoreUnavailable`, which
the sink, as for a :class:`TransientError`, turns into RETRY without
remembering the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from spanvisor.statestores.api import Claim, StateStore, StoreUnavailable
from spanvisor_grafana.errors import TransientError


class GuardedStore:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float) -> Claim:
        try:
            return await self._store.claim(namespace, key, owner, lease_s)
        except (asyncio.CancelledError, TransientError):
            raise
        except Exception as exc:
            raise _unavailable("claim", key, exc) from exc

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        try:
            await self._store.put(namespace, key, value, owner)
        except (asyncio.CancelledError, TransientError):
            raise
        except Exception as exc:
            raise _unavailable("put", key, exc) from exc

    async def put_if_newer(self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str) -> Claim:
        """A versioned write; a store without versions gets a plain put (one
        process cannot race itself)."""
        try:
            conditional = getattr(self._store, "put_if_newer", None)
            if conditional is None:
                await self._store.put(namespace, key, value, owner)
                return Claim(won=True)
            result: Claim = await conditional(namespace, key, value, version, owner)
            return result
        except (asyncio.CancelledError, TransientError):
            raise
        except Exception as exc:
            raise _unavailable("put", key, exc) from exc

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        try:
            return await self._store.get(namespace, key)
        except (asyncio.CancelledError, TransientError):
            raise
        except Exception as exc:
            raise _unavailable("get", key, exc) from exc

    async def release(self, namespace: str, key: str, owner: str) -> None:
        try:
            await self._store.release(namespace, key, owner)
        except (asyncio.CancelledError, TransientError):
            raise
        except Exception as exc:
            raise _unavailable("release", key, exc) from exc


def _unavailable(op: str, key: str, exc: Exception) -> StoreUnavailable:
    # Only the exception type: a driver's message may carry a DSN.
    return StoreUnavailable(f"state store {op} for task {key[:80]!r} failed: {type(exc).__name__}")
