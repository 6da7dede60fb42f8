"""What a graceful stop waits for before it drains the pipeline.

During the drain the OTLP listeners stay open and refuse new exports with
503 + ``Retry-After`` / UNAVAILABLE + ``RetryInfo`` (a Collector retries
those, on another replica or after the restart); a refused connection
would be retried too, but is indistinguishable from a dead replica and
gives the client no hint when to come back. Exports that were admitted
before the stop must hand their spans over before the pipeline is flushed,
or the journal would be marked delivered without them: :class:`InFlight`
counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """Exports being handled right now, on every transport of one receiver."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def request(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def idle(self, timeout_s: float) -> bool:
        """Wait until no export is in flight; False when ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True
