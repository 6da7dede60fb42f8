"""Events of a task as the tracker emits them, and clocks a test drives:
what every chat sink's tests (Slack, Telegram) and the benchmark build on."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, replace
from typing import Any

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    Status,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.sink import Clock

BASE_NS = 1_760_000_000_000_000_000


class ManualClock(Clock):
    """Time moves only when a test says so; sleepers wake in order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.t + seconds, next(self._seq), fut))
        await fut

    def advance(self, dt: float) -> None:
        self.t += dt
        while self._heap and self._heap[0][0] <= self.t:
            fut = heapq.heappop(self._heap)[2]
            if not fut.done():
                fut.set_result(None)


class ScaledClock(Clock):
    """Real time run ``speed`` times faster, for the sink and the fake Slack
    alike (``FakeSlack(now=clock.now)``): both keep Slack's per-minute limits
    in this clock's time, so a test of pacing and folding at Slack's real
    limits waits a tenth as long and still shows the same order, the same
    folds and no 429. What is not on the clock (HTTP timeouts, a test's own
    ``until`` bounds) stays in real seconds."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


@dataclass
class TaskScript:
    """Events of one task, with stable ids, as the tracker would emit them."""

    view: TaskView
    seq: int = 0

    @classmethod
    def new(cls, task_id: str, agent: str = "rivet", **kw: Any) -> TaskScript:
        v = TaskView(
            task_id=task_id,
            trace_id=stable_id("trace", task_id)[:32],
            root_span_id=task_id[:16],
            agent_id=agent,
            started_ns=BASE_NS,
            updated_ns=BASE_NS,
            **kw,
        )
        return cls(v)

    def _next(self, **changes: Any) -> tuple[str, int]:
        self.seq += 1
        t = BASE_NS + self.seq * 1_000_000
        # seq numbers the task's events as the tracker does; the sink orders views by it.
        self.view = replace(self.view, updated_ns=t, seq=self.seq, **changes)
        return stable_id(self.view.task_id, self.seq), t

    def started(self) -> TaskStarted:
        eid, t = self._next()
        return TaskStarted(event_id=eid, time_ns=t, task=self.view)

    def checkpoint(self, status: Status = "working", **changes: Any) -> Checkpoint:
        changed = tuple(k for k, v in changes.items() if getattr(self.view, k) != v)
        if status != self.view.status:
            changed += ("status",)
        eid, t = self._next(status=status, **changes)
        return Checkpoint(event_id=eid, time_ns=t, task=self.view, changed=changed)

    def warning(self, level: str, tokens: int, limit: int, threshold: float) -> ContextWarning:
        eid, t = self._next(context_tokens=tokens, context_limit=limit, status="context_warning")
        return ContextWarning(
            event_id=eid,
            time_ns=t,
            task=self.view,
            level=level,  # type: ignore[arg-type]
            threshold=threshold,
            ratio=tokens / limit,
            tokens=tokens,
            limit=limit,
        )

    def artifact(self, name: str, uri: str | None = None) -> ArtifactAdded:
        a = Artifact(name, uri)
        eid, t = self._next(artifacts=(*self.view.artifacts, a))
        return ArtifactAdded(event_id=eid, time_ns=t, task=self.view, artifact=a)

    def finished(self, outcome: str = "complete", **kw: Any) -> TaskFinished:
        eid, t = self._next(status=outcome, ended_ns=BASE_NS + (self.seq + 1) * 1_000_000)
        return TaskFinished(
            event_id=eid,
            time_ns=t,
            task=self.view,
            outcome=outcome,  # type: ignore[arg-type]
            duration_s=(t - BASE_NS) / 1e9,
            **kw,
        )


__all__ = ["BASE_NS", "ManualClock", "ScaledClock", "TaskScript"]
