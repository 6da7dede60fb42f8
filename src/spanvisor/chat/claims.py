"""A chat sink's side of the state store: claims that outlast outages and slow posts.

A state-store error is an outage (PostgreSQL restarting), not a bug: every
call is retried with backoff, like a transient error of the channel, until it answers
or the shutdown deadline passes. So a blip never loses an event, and a post
the channel accepted is never forgotten and posted again.

A claim is a lease. While a post waits for its turn (a 429 pause, the
channel's bucket, a slow service) its claims are renewed in the background,
and renewed once more right after the wait, immediately before the HTTP
call: a lease cannot lapse under a post in progress unless the store is
unreachable for longer than the lease. For that last case the result is
stored with ``put_if_owner``, which tells the slower of two posters that it
lost, so it can delete its own message.

Slack's shared view of a task (:mod:`spanvisor_slack.shared`) is written with ``put_if_newer``,
through the same retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from spanvisor.chat.retry import Failure, ServerErrorStrategy
from spanvisor.sink import Clock
from spanvisor.statestores.api import Claim, StateStore, StoreUnavailable, put_own
from spanvisor.stats import PipelineStats

T = TypeVar("T")


@dataclass
class Claims:
    store: StateStore
    owner: str
    clock: Clock
    stats: PipelineStats
    lease_s: float = 120.0
    deadline: Callable[[], float | None] = lambda: None
    backoff: ServerErrorStrategy = field(default_factory=ServerErrorStrategy)
    # Whose claims: the stat's prefix (``slack_state_store_errors_total``) and the logger.
    channel: str = "chat"
    _down: bool = False

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"spanvisor.{self.channel}")
        # Each by itself: a store of another plugin may offer one and not the other.
        self._put_if_owner: Callable[..., Awaitable[bool]] | None = getattr(self.store, "put_if_owner", None)
        self._put_if_newer: Callable[..., Awaitable[Claim]] | None = getattr(self.store, "put_if_newer", None)

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.inc(f"{self.channel}_state_store_errors_total", op=op)
                if not self._down:
                    self._down = True
                    # The type and message only: a driver's error text names
                    # hosts and users, never passwords.
                    self.log.warning(
                        "state store failed on %s (%s: %.200s); %s output waits and retries",
                        op,
                        type(exc).__name__,
                        exc,
                        self.channel,
                    )
                delay = self.backoff.decide(Failure("state_store", "connection", 0, None, attempt))
                wait = delay.delay_s if delay else 1.0
                end = self.deadline()
                if end is not None and self.clock.now() + wait > end:
                    raise StoreUnavailable(f"state store {op}: {type(exc).__name__}") from exc
                await self.clock.sleep(wait)
                continue
            if self._down:
                self._down = False
                self.log.warning("state store answers again; %s output goes on", self.channel)
            return result

    async def claim(self, namespace: str, key: str) -> Claim:
        return await self._call("claim", lambda: self.store.claim(namespace, key, self.owner, self.lease_s))

    async def settle(self, namespace: str, key: str, value: Mapping[str, Any]) -> bool:
        """Store the result unless another owner took the key; False when it did."""
        conditional = self._put_if_owner
        if conditional is not None:
            return await self._call("put", lambda: conditional(namespace, key, value, self.owner))
        # A store without put_if_owner cannot tell; the lease renewal is all we have.
        await self._call("put", lambda: self.store.put(namespace, key, value, self.owner))
        return True

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        return await self._call("get", lambda: self.store.get(namespace, key))

    async def put(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Overwrite a settled key on purpose (.rename: the alias a renamed run's former key keeps)."""
        await self._call("put", lambda: self.store.put(namespace, key, value, self.owner))

    async def put_if_newer(self, namespace: str, key: str, value: Mapping[str, Any], version: int) -> Claim:
        """Write ``value`` unless a newer version is stored (then: its value).
        This replica may rewrite the version it stored (``own``): a task's
        view is updated in place by its owner, one worker at a time."""
        conditional = self._put_if_newer
        if conditional is not None:
            return await self._call("put", lambda: put_own(conditional, namespace, key, value, version, self.owner))
        # A store without versions: compare, then write. Two replicas may
        # interleave here; one process cannot.
        stored = await self.get(namespace, key)
        if stored is not None:
            known = stored.get("version")
            if isinstance(known, int) and (known > version or (known == version and stored.get("owner") != self.owner)):
                return Claim(won=False, value=stored)
        await self._call("put", lambda: self.store.put(namespace, key, value, self.owner))
        return Claim(won=True)

    async def release(self, namespace: str, key: str) -> None:
        await self._call("release", lambda: self.store.release(namespace, key, self.owner))

    def lease(self, namespace: str, keys: Sequence[str]) -> Lease:
        return Lease(self, namespace, tuple(keys))


class Lease:
    """Keeps claims alive while the body runs; ``confirm`` is the last check
    before the HTTP call (pass it as the transport's ``before_call``)."""

    def __init__(self, claims: Claims, namespace: str, keys: tuple[str, ...]) -> None:
        self._claims, self._ns, self._keys = claims, namespace, keys
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lease:
        self._renewer = asyncio.ensure_future(self._renew())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)

    async def _renew(self) -> None:
        c = self._claims
        while True:
            await c.clock.sleep(c.lease_s / 3)
            for key in self._keys:
                try:
                    await c.store.claim(self._ns, key, c.owner, c.lease_s)
                except asyncio.CancelledError:
                    raise
                except Exception:  # confirm() retries before the call; so does the next tick
                    c.log.debug("renewing the claim %s/%s failed", self._ns, key)

    async def confirm(self) -> bool:
        """Renew every claim now; False when another owner holds one."""
        for key in self._keys:
            claim = await self._claims.claim(self._ns, key)
            if not claim.won:
                return False
        return True
