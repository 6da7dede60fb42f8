"""How fast something drains, recently: what the receiver's Retry-After is made of.

A refusal should say how soon there will be room, not a constant: a client
told "2 s" when the queue empties in 0.3 s leaves the process idle for the
rest. :class:`Rate` keeps a smoothed items-per-second of one consumer (the
tracker, a sink's deliveries) measured while it works; an idle consumer has
no rate (:meth:`Rate.per_s` is None), and then no estimate is better than a
wrong one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A sample spans at least this long, so one slow batch does not swing the rate.
SAMPLE_S = 0.25
# Smoothing horizon: the rate follows a change within about this long.
HORIZON_S = 2.0
# Nothing counted for this long: the consumer is idle or stuck, no rate.
STALE_S = 2.0


class Rate:
    """Items per second, smoothed over the last seconds. Counted by one
    thread; read from any (a float read is atomic)."""

    def __init__(self, stale_s: float | None = STALE_S, clock: Callable[[], float] = time.monotonic) -> None:
        # None: the rate never goes stale (a consumer that only stops when it
        # is held back, such as the tracker behind a full durable sink).
        self._stale = stale_s
        self._clock = clock
        self._since: float | None = None
        self._count = 0
        self._last = 0.0
        self._rate = 0.0

    def add(self, n: int, started: float | None = None) -> None:
        """``n`` more items done; ``started``: when the work on them began
        (this clock), if known, e.g. a sink's export call."""
        now = self._clock()
        if self._since is None or now - self._last > STALE_S:
            # First work after idling: measure from here, not from the idle
            # start; how long these n took is unknown, so they do not count,
            # unless the caller timed them. A durable sink's first batches
            # are what admission waits on right after a start: without
            # them a sink that had filled its queue in the first second had
            # no rate, and every request waited its whole wait for nothing.
            if started is None or not started <= now:
                self._since, self._count, self._last = now, 0, now
                return
            self._since, self._count = started, 0
        self._count += n
        self._last = now
        dt = now - self._since
        if dt >= SAMPLE_S:
            sample = self._count / dt
            weight = min(1.0, dt / HORIZON_S)
            self._rate = sample if self._rate == 0.0 else self._rate + weight * (sample - self._rate)
            self._since, self._count = now, 0

    def per_s(self) -> float | None:
        """The recent rate, or None when nothing was counted lately or no sample is complete."""
        if self._rate <= 0.0 or (self._stale is not None and self._clock() - self._last > self._stale):
            return None
        return self._rate

    def seconds_for(self, n: float) -> float | None:
        """About how long ``n`` more items take at the recent rate (None: unknown)."""
        rate = self.per_s()
        if rate is None:
            return None
        return max(0.0, n) / rate
