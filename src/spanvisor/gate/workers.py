"""Long-lived threads for the launcher's gate, so a hook call starts none.

:class:`Workers` is a small pool: a few workers started with it and kept,
more started only when every one is busy (a call waiting for a person
holds its worker for minutes, and must never make a new call wait behind
it), up to a bound; at the bound :meth:`Workers.submit` says no at once,
and the caller answers that call itself (a block saying why) rather than
queue it past its deadline. A worker started past the first few ends
after a while with nothing to do.

:class:`Timers` is one thread for every backstop of the process: a heap of
deadlines (:meth:`Timers.schedule` / :meth:`Timers.cancel`), the thread
asleep until the earliest. What it runs must be quick (an answer written
to a buffer, a frame to a socket whose buffer holds it): every other
timer waits behind it. The launcher's gate has one for the session
(closed with it); :func:`shared` is the process's, for callers that own
none, whose thread ends once it has had nothing to wait for a moment.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

# How long a worker past the pool's first few waits for work before it ends.
IDLE_S = 60.0
# How long the process's shared timer thread outlives its last timer.
SHARED_LINGER_S = 2.0
# Cancelled timers are left in the heap (a cancel is O(1)) until they are
# this many and more than half of it; then it is rebuilt without them.
_COMPACT_AT = 256

_PENDING, _FIRED, _CANCELLED = 0, 1, 2


class Handle:
    """One scheduled call: what :meth:`Timers.cancel` takes."""

    __slots__ = ("at", "fn", "state")

    def __init__(self, at: float, fn: Callable[[], object]) -> None:
        self.at = at
        self.fn: Callable[[], object] | None = fn
        self.state = _PENDING

    @property
    def fired(self) -> bool:
        return self.state == _FIRED


class Timers:
    """Calls at monotonic times, all on one thread (started with the first).

    ``linger_s``: with nothing scheduled for that long the thread ends (the
    next :meth:`schedule` starts it again); None: it lives until
    :meth:`close`."""

    def __init__(self, name: str = "spanvisor-timers", linger_s: float | None = None) -> None:
        self.name, self.linger_s = name, linger_s
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self._dead = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.started = 0  # threads started in all (what the tests count)

    def schedule(self, at: float, fn: Callable[[], object]) -> Handle:
        """Run ``fn`` on the timer thread at ``at`` (``time.monotonic()``),
        unless cancelled before."""
        handle = Handle(at, fn)
        with self._cond:
            if self._closed:
                handle.state, handle.fn = _CANCELLED, None
                return handle
            heapq.heappush(self._heap, (at, next(self._seq), handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.started += 1
                self._thread.start()
            elif self._heap[0][2] is handle:  # earlier than what the thread sleeps for
                self._cond.notify()
        return handle

    def cancel(self, handle: Handle) -> bool:
        """Whether ``handle`` was still to run (now it never will)."""
        with self._cond:
            if handle.state != _PENDING:
                return False
            handle.state, handle.fn = _CANCELLED, None
            self._dead += 1
            if self._dead > _COMPACT_AT and 2 * self._dead > len(self._heap):
                self._heap = [e for e in self._heap if e[2].state == _PENDING]
                heapq.heapify(self._heap)
                self._dead = 0
        return True

    def pending(self) -> int:
        """How many calls are still to run."""
        with self._cond:
            return len(self._heap) - self._dead

    @property
    def thread(self) -> threading.Thread | None:
        """The timer thread while it runs."""
        return self._thread

    def close(self, wait_s: float = 1.0) -> None:
        """Nothing more runs: what is scheduled is dropped, the thread ends."""
        with self._cond:
            self._closed = True
            for _, _, handle in self._heap:
                handle.state, handle.fn = _CANCELLED, None
            self._heap, self._dead = [], 0
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                fn = self._next()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a backstop's failure must not stop every other one
                pass
            del fn

    def _next(self) -> Callable[[], object] | None:
        """The next call due, waiting for it (the lock held); None when the
        thread is to end (closed, or nothing scheduled for ``linger_s``)."""
        while True:
            while self._heap and self._heap[0][2].state == _CANCELLED:
                heapq.heappop(self._heap)
                self._dead -= 1
            if self._closed:
                self._thread = None
                return None
            now = time.monotonic()
            if self._heap and self._heap[0][0] <= now:
                handle = heapq.heappop(self._heap)[2]
                fn = handle.fn
                handle.state, handle.fn = _FIRED, None
                if fn is not None:
                    return fn
                continue
            if self._heap:
                self._cond.wait(self._heap[0][0] - now)
            elif not self._cond.wait(self.linger_s) and not self._heap and self.linger_s is not None:
                self._thread = None  # idle a while: the next schedule starts one again
                return None


class _Shared:
    timers: Timers | None = None
    lock = threading.Lock()


def shared() -> Timers:
    """The process's timer thread (one for every gate in it)."""
    timers = _Shared.timers
    if timers is None:
        with _Shared.lock:
            if _Shared.timers is None:
                _Shared.timers = Timers("spanvisor-gate-timers", SHARED_LINGER_S)
            timers = _Shared.timers
    return timers


def _forget_after_fork() -> None:
    # The parent's timer thread is not the child's.
    _Shared.timers, _Shared.lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class Workers:
    """``core`` threads kept, up to ``limit`` while all are busy; no queue."""

    def __init__(self, name: str, core: int, limit: int, idle_s: float | None = None) -> None:
        self.name, self.core, self.limit = name, max(0, core), max(1, limit, core)
        self.idle_s = IDLE_S if idle_s is None else idle_s
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._threads: set[threading.Thread] = set()
        self._free = 0  # workers not running a call (waiting, or not yet started)
        self._closed = False
        self.started = 0  # threads started in all (what the tests count)
        with self._cond:
            for _ in range(self.core):
                self._start()

    def submit(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on a worker now: an idle one, else a new one
        under the bound; False (nothing run) at the bound or once closed."""
        with self._cond:
            if self._closed:
                return False
            if self._free > len(self._tasks):  # a free worker takes it at once
                self._tasks.append((fn, args))
                self._cond.notify()
                return True
            if len(self._threads) >= self.limit:
                return False
            self._tasks.append((fn, args))
            self._start()
            return True

    @property
    def busy(self) -> int:
        """Workers running a call."""
        with self._cond:
            return len(self._threads) - self._free

    @property
    def alive(self) -> int:
        with self._cond:
            return len(self._threads)

    def close(self, wait_s: float = 1.0) -> None:
        """No more calls; idle workers end, busy ones are waited for
        ``wait_s`` in all (each is bounded by its call's deadline) and end
        with their call."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        until = time.monotonic() + wait_s
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, until - time.monotonic()))

    def _start(self) -> None:
        t = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._threads.add(t)
        self._free += 1
        self.started += 1
        t.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._tasks:
                    if self._closed:
                        break
                    if not self._cond.wait(self.idle_s) and not self._tasks and len(self._threads) > self.core:
                        break  # a burst's extra worker, idle long enough
                if not self._tasks:
                    self._threads.discard(me)
                    self._free -= 1
                    return
                fn, args = self._tasks.popleft()
                self._free -= 1
            try:
                fn(*args)
            except Exception:  # the call's own code answers its failures; the worker goes on
                pass
            del fn, args
            with self._cond:
                self._free += 1


__all__ = ["IDLE_S", "SHARED_LINGER_S", "Handle", "Timers", "Workers", "shared"]
