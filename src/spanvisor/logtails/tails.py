"""Each open task's last log records: the story of a failure.

Producers (the in-process :class:`~spanvisor.otel.logs.SpanvisorLogProcessor`,
the log exporter, the receiver's ``/v1/logs`` and ``LogsService/Export``)
call :meth:`LogTails.add` with :class:`LogIn` records from any thread. It
never blocks or raises and does O(1) work a record: two dict lookups by
trace id and a bounded ``deque.append``. Which trace belongs to a task is
learnt on the pipeline thread by :meth:`LogTails.enrich`, from the events
going by (any event of a task names its trace); ``enrich`` also replaces a
finished task's ``TaskFinished`` with one carrying its ``log_tail``, then
forgets the task.

Per trace there are two rings:

* ``kept``: the last ``SPANVISOR_LOG_TAIL_LINES`` records at or above the
  level floor (``SPANVISOR_LOG_TAIL_LEVEL``, default warning);
* ``before``: the last ``SPANVISOR_LOG_TAIL_CONTEXT`` records below it. When
  an error record arrives they move into ``kept`` ahead of it, and a task
  that fails takes them too: the lines just before a failure, of any level.

A record of a trace no task is known for waits in a *pending* ring (at most
:data:`MAX_PENDING_TRACES` traces, each forgotten after :data:`PENDING_TTL_S`):
on the end-order paths a task is announced only when its root (or a stamped
span) arrives, after most of its logs, and in-process the pipeline learns of
a new task up to a pump (50 ms) after its root started. Only records at or
above the floor open a pending ring, or any record the producer knows is in
a task (``LogIn.in_task``: the log processor asks the span processor); the
others are counted as ``no_task`` and dropped at once, which is the fate of
an agent's log lines outside any task.

A tail goes only with a task that did not complete (error, cancelled): a
completed task's warnings stay out of its summary. Lines are sanitised and
redacted like spanvisor's own logs, at most ``MAX_LINE`` characters a
line and ``MAX_TAIL_BYTES`` a tail, oldest first (:mod:`.records`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from spanvisor.events import Event, HumanIntervention, LogLine, TaskFinished, TaskView
from spanvisor.logtails.records import ERROR_SEVERITY, SEVERITY, LogIn, lines
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor.logtail")

MAX_PENDING_TRACES = 1_000
# Open tasks followed at once (the tracker's own bound is 10,000 by default).
MAX_OPEN_TASKS = 50_000
PENDING_TTL_S = 600.0
_EXPIRE_EVERY_S = 1.0


_Item = tuple[int, LogIn]  # (arrival number, record): arrival order across rings


class _Ring:
    __slots__ = ("before", "born", "kept")

    def __init__(self, size: int, context: int) -> None:
        self.kept: deque[_Item] = deque(maxlen=size)
        self.before: deque[_Item] = deque(maxlen=context) if context else deque(maxlen=0)
        self.born = time.monotonic()

    def add(self, item: _Item, floor: int) -> None:
        sev = item[1].severity
        if sev < floor:
            self.before.append(item)
            return
        if sev >= ERROR_SEVERITY and self.before:
            # The lines just before an error, whatever their level.
            try:
                while True:
                    self.kept.append(self.before.popleft())
            except IndexError:
                pass
        self.kept.append(item)

    def merge(self, other: _Ring) -> None:
        self.kept.extend(other.kept)
        self.before.extend(other.before)


class LogTails:
    def __init__(self, config: Any, stats: PipelineStats, path: str = "processor") -> None:
        self.config = config
        self.stats = stats
        get = getattr(config, "get", None)
        setting = get if get is not None else (lambda _k, d: d)
        # End-order paths: a failed task's events wait this long for late logs
        # (in-process the agent's records are handed over before its root ends).
        self.wait_s = 0.0 if path == "processor" else max(0.0, float(setting("log_tail_wait_s", 2.0)))
        self._held: dict[str, tuple[float, list[Event]]] = {}
        self.size = max(1, int(setting("log_tail_lines", 20)))
        self.floor = SEVERITY.get(str(setting("log_tail_level", "warning")).lower(), 13)
        self.context = max(0, int(setting("log_tail_context", 5)))
        # trace id -> ring: traces with an open task (pipeline thread writes,
        # any thread reads) and traces not known yet (any thread adds).
        self._tasks: dict[int, _Ring] = {}
        # Traces with an open task (pipeline thread writes, any thread reads);
        # a task's ring in _tasks comes with its first record.
        self._known: set[int] = set()
        self._pending: dict[int, _Ring] = {}
        # Pipeline thread only: open task id -> trace id, and tasks per trace.
        self._open: dict[str, int] = {}
        # Open tasks per trace, for traces with more than one (the others
        # have one: a dict entry an open task less, about 50 bytes).
        self._per_trace: dict[int, int] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()  # the counts below, one addition at a time
        self._no_task = 0
        self._full = 0
        self._errors = 0
        self._last_expire = 0.0
        stats.gauge("log_tail_traces", lambda: float(len(self._known) + len(self._pending)))

    # -- any thread ---------------------------------------------------------------

    def add(self, records: Sequence[LogIn]) -> bool:
        """Keep ``records`` for their tasks; never blocks, never raises."""
        no_task = full = 0
        try:
            tasks, pending, floor, seq = self._tasks, self._pending, self.floor, self._seq
            known = self._known
            for r in records:
                tid = r.trace_id
                ring = tasks.get(tid)
                if ring is None and tid in known:
                    # A task's first record: its ring is made now, not when the
                    # task opened (most tasks log nothing: 1.5 KB each saved).
                    # setdefault is atomic: two producers get the same ring.
                    ring = tasks.setdefault(tid, _Ring(self.size, self.context))
                if ring is None:
                    ring = pending.get(tid)
                    if ring is None:
                        if not (r.in_task or (r.in_task is None and tid and r.severity >= floor)):
                            no_task += 1
                            continue
                        if len(pending) >= MAX_PENDING_TRACES:
                            full += 1
                            continue
                        ring = pending.setdefault(tid, _Ring(self.size, self.context))
                ring.add((next(seq), r), floor)
        except Exception:
            with self._lock:
                self._errors += 1
            return False
        if no_task or full:
            with self._lock:
                self._no_task += no_task
                self._full += full
        return True

    # -- the pipeline thread ---------------------------------------------------------

    def enrich(self, events: list[Event], now: float | None = None) -> list[Event]:
        """Learn open tasks' traces from ``events``; a finished task that did not
        complete gets its log tail. Returns the events to dispatch: on the
        end-order paths a failed task's end (and any later event of that task)
        is held up to ``wait_s`` for logs still on their way, and released by
        a later call (every pump makes one) or :meth:`release_all`."""
        if self.wait_s <= 0:
            return self._enrich(events)
        t = time.monotonic() if now is None else now
        ready: list[Event] = []
        for ev in events:
            held = self._held.get(ev.task_id)
            if held is not None:
                held[1].append(ev)  # behind its task's held end: order kept
            elif isinstance(ev, TaskFinished) and ev.outcome != "complete":
                self._held[ev.task_id] = (t + self.wait_s, [ev])
            else:
                ready.append(ev)
        for task_id in [k for k, (due, _) in self._held.items() if due <= t]:
            ready.extend(self._held.pop(task_id)[1])
        return self._enrich(ready)

    def release_all(self) -> list[Event]:
        """Every held event, now (a flush or shutdown waits for no late log)."""
        held = [ev for _, evs in self._held.values() for ev in evs]
        self._held.clear()
        return self._enrich(held) if held else []

    def _enrich(self, events: list[Event]) -> list[Event]:
        out = events
        try:
            for i, ev in enumerate(events):
                if isinstance(ev, HumanIntervention) and not ev.known:
                    continue  # not a view of a task open here
                former = ev.task.former_id
                if former is not None and former in self._open:
                    # Its root named its id: the same task, its trace counted once.
                    self._open[ev.task.task_id] = self._open.pop(former)
                if isinstance(ev, TaskFinished):
                    tail = self._finish(ev)
                    if tail:
                        if out is events:
                            out = list(events)
                        out[i] = dataclasses.replace(ev, log_tail=tail)
                elif ev.task.task_id not in self._open and ev.task.ended_ns is None:
                    # (A finished task's late events carry its final view: not reopened.)
                    self._learn(ev.task)
            self.sync()
        except Exception as exc:  # a tail is best effort: the events go on
            self.stats.drop("log_tail_error", detail=f"{type(exc).__name__}: {exc}")
            log.exception("log tail error")
        return out

    def sync(self) -> None:
        """Fold the counts made on producers' threads into the stats, and
        forget pending traces no task claimed in time."""
        with self._lock:
            no_task, full, errors = self._no_task, self._full, self._errors
            self._no_task = self._full = self._errors = 0
        if no_task:
            self.stats.inc("log_records_total", no_task, outcome="no_task")
        if full:
            self.stats.drop(
                "log_pending_full",
                full,
                detail=f"log records of {MAX_PENDING_TRACES} traces with no task known yet are waiting",
            )
        if errors:
            self.stats.drop("log_tail_error", errors, detail="a log record could not be read")
        now = time.monotonic()
        if now - self._last_expire >= _EXPIRE_EVERY_S:
            self._last_expire = now
            self._expire(now)

    def _expire(self, now: float) -> None:
        # A record that raced its task's announcement may have opened a
        # pending ring after the task claimed it: fold it in now.
        for tid in [t for t in self._pending if t in self._known]:
            self._claim_pending(tid)
        old = [tid for tid, ring in list(self._pending.items()) if now - ring.born > PENDING_TTL_S]
        unclaimed = 0
        for tid in old:
            ring = self._pending.pop(tid, None)
            if ring is not None:
                unclaimed += len(ring.kept) + len(ring.before)
        if unclaimed:
            self.stats.inc("log_records_total", unclaimed, outcome="no_task")

    def _learn(self, view: TaskView) -> int | None:
        if not view.trace_id:
            return None
        try:
            tid = int(view.trace_id, 16)
        except ValueError:
            return None
        if len(self._open) >= MAX_OPEN_TASKS:
            # A task that never finishes here cannot pin its ring for ever.
            self._forget(*next(iter(self._open.items())))
        self._open[view.task_id] = tid
        if tid in self._known:
            self._per_trace[tid] = self._per_trace.get(tid, 1) + 1
        else:
            # Known first, so a producer that misses the pending ring from now
            # on makes (or finds) the task's ring.
            self._known.add(tid)
            self._claim_pending(tid)
        return tid

    def _claim_pending(self, tid: int) -> None:
        early = self._pending.pop(tid, None)
        if early is not None:
            ring = self._tasks.setdefault(tid, early)
            if ring is not early:
                ring.merge(early)

    def _forget(self, task_id: str, tid: int) -> int:
        """Forget one open task; how many others its trace still has."""
        self._open.pop(task_id, None)
        left = self._per_trace.get(tid, 1) - 1
        if left <= 0:
            self._known.discard(tid)
            self._tasks.pop(tid, None)
        if left <= 1:
            self._per_trace.pop(tid, None)
        else:
            self._per_trace[tid] = left
        return left

    def _finish(self, ev: TaskFinished) -> tuple[LogLine, ...]:
        view = ev.task
        tid = self._open.get(view.task_id)
        if tid is None:
            tid = self._learn(view)
            if tid is None:
                return ()
        ring = self._tasks.get(tid)
        self._forget(view.task_id, tid)
        if ring is None or ev.outcome == "complete":
            return ()
        items = list(ring.kept)
        if ev.outcome == "error":
            items.extend(ring.before)
        # Only what was logged while the task ran: a trace may hold other
        # tasks, or work before and after it (a record with no time passes).
        lo, hi = view.started_ns, view.ended_ns or ev.time_ns
        items = [it for it in items if not it[1].time_ns or lo <= it[1].time_ns <= hi]
        items.sort(key=lambda it: it[0])
        tail = lines([r for _, r in items], self.size)
        if tail:
            self.stats.inc("log_records_total", len(tail), outcome="attached")
        return tail


__all__ = ["LogTails"]
