"""Turns per key: inside one process, one coroutine at a time changes a key.

The state store's compare-and-set decides between processes; inside one,
coroutines that would only lose it to each other (and read again, and
retry) wait for their turn instead. A key's lock exists while some
coroutine holds or waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _KeyTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # coroutines holding or waiting for it


class Turns:
    def __init__(self) -> None:
        self._turns: dict[tuple[str, str], _KeyTurn] = {}

    def __len__(self) -> int:
        return len(self._turns)

    @contextlib.asynccontextmanager
    async def of(self, namespace: str, key: str) -> AsyncIterator[None]:
        """Held while the body runs; the next coroutine waiting goes then."""
        turn = self._turns.get((namespace, key))
        if turn is None:
            turn = self._turns[(namespace, key)] = _KeyTurn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[(namespace, key)]


__all__ = ["Turns"]
