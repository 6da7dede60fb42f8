"""What this process remembers of each coding-agent session: whether its
task was started here, and the name it was given.

A session's records come in many requests (every few seconds); its task is
started once, named from its first prompt, and every later request only
says it is alive. Bounded (least recently heard of goes first, counted by
the caller as a restart would be): a session forgotten here and heard of
again is started again, which the tracker reads as a repeat of the start.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_SESSIONS = 20_000


@dataclass(slots=True)
class Session:
    name: str
    named: bool  # from a prompt or the launcher, not the fallback


class Sessions:
    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._by_key: OrderedDict[tuple[str, str], Session] = OrderedDict()
        # gRPC and HTTP decode on the event loop, but nothing requires it.
        self._lock = threading.Lock()

    def get(self, trace_id: str, root_id: str) -> Session | None:
        with self._lock:
            s = self._by_key.get((trace_id, root_id))
            if s is not None:
                self._by_key.move_to_end((trace_id, root_id))
            return s

    def put(self, trace_id: str, root_id: str, session: Session) -> bool:
        """Remember ``session``; True when an older one had to be forgotten."""
        with self._lock:
            self._by_key[(trace_id, root_id)] = session
            self._by_key.move_to_end((trace_id, root_id))
            if len(self._by_key) > self._limit:
                self._by_key.popitem(last=False)
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()


SESSIONS = Sessions()

__all__ = ["SESSIONS", "Session", "Sessions"]
