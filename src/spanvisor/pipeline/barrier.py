"""A flush barrier: put into every sink worker's queue, passed in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("spanvisor.pipeline")


@dataclass
class Barrier:
    """Fires ``callback(ok)`` once ``count`` workers have passed it."""

    count: int
    callback: Callable[[bool], None]
    ok: bool = True

    def reached(self, ok: bool = True) -> None:
        self.ok = self.ok and ok
        self.count -= 1
        if self.count == 0:
            try:
                self.callback(self.ok)
            except Exception:
                log.exception("barrier callback failed")


class Queue(Protocol):
    """What a flush needs of a sink worker: the worker's queue takes the
    barrier, and its sink flushes. Named here so the worker, which passes
    barriers, and the flush, which sends them, do not import each other."""

    def put_barrier(self, barrier: Barrier) -> None: ...

    async def force_flush(self, timeout_s: float) -> bool: ...


async def flush_workers(workers: Sequence[Queue], deadline: float) -> bool:
    """Pass a barrier through every worker's queue, then flush each sink: True
    when all got there and flushed before ``deadline`` (a monotonic time)."""
    if not workers:
        return True
    done = asyncio.get_running_loop().create_future()

    def release(ok: bool) -> None:
        if not done.done():
            done.set_result(ok)

    remaining = Barrier(len(workers), release)
    for w in workers:
        w.put_barrier(remaining)
    try:
        # False when a worker still holds events it could not deliver (a held task).
        passed = bool(await asyncio.wait_for(done, max(0.0, deadline - time.monotonic())))
    except TimeoutError:
        return False
    results = await asyncio.gather(*(w.force_flush(max(0.0, deadline - time.monotonic())) for w in workers))
    return passed and all(results)
