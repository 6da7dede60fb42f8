"""The launcher's own records (the task's start, its heartbeats), sent from
a bounded background queue: the CLI starts at once whether the receiver is
up or down, and nothing of the OTel SDK (its retry lines) reaches the
user's terminal.

Records go as OTLP/JSON through the gate's standard-library sender
(:mod:`spanvisor.gate.otlp`). A record the receiver did not take is tried
again (every 2 s, oldest first) while the session runs; an unreachable
receiver is said once on stderr. The queue holds at most
:data:`MAX_QUEUED` records; a heartbeat that finds it full is dropped
(another follows), and the count is said at the end.

Closing waits for a request already under way (each is bounded by
:data:`REQUEST_TIMEOUT_S`), as the relay does: once :meth:`Records.close`
returns nothing of the launcher's is in flight, so the task's end, sent
after it, never overtakes a record (the receiver ignores a record of a task
that ended: a pull request said after the end was lost).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.gate import otlp
from spanvisor.gate.session import TaskKey

MAX_QUEUED = 64
RETRY_S = 2.0
REQUEST_TIMEOUT_S = 3.0


class Records:
    """One session's launcher records, sent in the background."""

    def __init__(self, session: TaskKey, endpoint: str, token: str | None, task_id: str) -> None:
        self.session, self.endpoint, self.token, self.task_id = session, endpoint, token, task_id
        self._queue: collections.deque[otlp.Record] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._until = 0.0  # once stopping: no request starts after this (time.monotonic)
        self.dropped = 0
        self.said_away = False
        self._thread = threading.Thread(target=self._run, name="spanvisor-run-records", daemon=True)
        self._thread.start()

    def say(self, name: str, attrs: Mapping[str, Any], at: int | None = None) -> None:
        record = (name, {otlp.TASK_ID: self.task_id, **attrs}, at or time.time_ns())
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                return
            self._queue.append(record)
            self._cond.notify()

    def close(self, within_s: float) -> int:
        """Stop after sending what waits: no request starts after
        ``within_s``, and one under way then is waited for (it ends within
        :data:`REQUEST_TIMEOUT_S`), so that nothing is in flight once this
        returns. What is left unsent (a request that got no answer counts)."""
        with self._cond:
            self._stopping = True
            self._until = time.monotonic() + within_s
            self._cond.notify()
        self._thread.join(within_s + REQUEST_TIMEOUT_S + 1.0)
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        trace_hex, span_hex = self.session.ids
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue or (self._stopping and time.monotonic() >= self._until):
                    return
                batch = list(self._queue)
            body = otlp.encode(self.session.service, trace_hex, span_hex, batch)
            if otlp.post(self.endpoint, self.token, body, REQUEST_TIMEOUT_S):
                with self._cond:
                    for _ in batch:
                        self._queue.popleft()
                continue
            if not self.said_away:
                self.said_away = True
                print(
                    f"spanvisor run: {self.endpoint} cannot be reached; the CLI runs anyway, and the session's "
                    "records are sent when it can be",
                    file=sys.stderr,
                    flush=True,
                )
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(RETRY_S)


__all__ = ["MAX_QUEUED", "Records"]
