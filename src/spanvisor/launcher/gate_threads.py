"""The launcher's gate answers a tool call on threads it already has.

Starting a thread costs a call more than it seems: the new thread must
first win the GIL from the others, and each of the gate's calls started
three (the connection's, the decision's, a timer's; 17 % of a call's wall
time in issue 70's profile). So the local gate keeps:

* :class:`Workers`: long-lived threads that take jobs in turn. A job runs
  at once on a worker that waits for one, or on a new worker when every
  worker is busy (a call waiting for a person holds its worker for
  minutes, and no call ever waits for another's). A worker with nothing to
  do for :data:`IDLE_S` ends.
* :class:`Backstops`: one thread that keeps every call's backstop (the
  block due just before the CLI's hook timeout) in a heap. A backstop
  that comes due runs on a thread of its own (the rare path: a decision
  that hangs), so a block whose answer is slow to write never delays
  another call's.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("spanvisor.launcher")

# How long a worker with nothing to do waits for a job before it ends.
IDLE_S = 60.0

Job = Callable[[], object]


class Workers:
    """Threads that run jobs in turn, as many as are busy at once."""

    def __init__(self, name: str, idle_s: float = IDLE_S) -> None:
        self.name, self.idle_s = name, idle_s
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._waiting = 0  # workers waiting for a job
        self.started = 0  # threads ever started (for tests and benchmarks)

    @property
    def waiting(self) -> int:
        """Workers waiting for a job (idle)."""
        return self._waiting

    def run(self, job: Job) -> None:
        """Run ``job`` now, on a waiting worker or a new one."""
        with self._cond:
            self._jobs.append(job)
            if self._waiting >= len(self._jobs):
                self._cond.notify()
                return
            self.started += 1
        threading.Thread(target=self._work, name=self.name, daemon=True).start()

    def _work(self) -> None:
        with self._cond:
            while True:
                while not self._jobs:
                    self._waiting += 1
                    woke = self._cond.wait(self.idle_s)
                    self._waiting -= 1
                    if not woke and not self._jobs:
                        return
                job = self._jobs.popleft()
                self._cond.release()
                try:
                    job()
                except Exception:  # a job answers its own call; the worker goes on
                    log.exception("the gate's %s failed", self.name)
                finally:
                    self._cond.acquire()


class Backstops:
    """Every call's backstop on one thread: ``at(due, fire)`` calls ``fire``
    at ``due`` (``time.monotonic``) unless the cancel it returns ran first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list[Job | None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def at(self, due: float, fire: Job) -> Callable[[], None]:
        slot: list[Job | None] = [fire]
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spanvisor-run-gate-backstops", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is slot:
                self._cond.notify()  # due before what the thread waits for

        def cancel() -> None:
            slot[0] = None  # left in the heap, skipped when it comes up

        return cancel

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2][0] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                fire = heapq.heappop(self._heap)[2][0]
                if fire is not None:
                    threading.Thread(target=fire, name="spanvisor-run-gate-backstop", daemon=True).start()


# One of each per launcher: the socket's calls and the http hook's share them.
WORKERS = Workers("spanvisor-run-gate-call")
BACKSTOPS = Backstops()

__all__ = ["BACKSTOPS", "IDLE_S", "WORKERS", "Backstops", "Workers"]
