"""TaskTracker: spans in, domain events out. Pure code: no I/O, no threads.

Spans reach it in two orders:

* **In start order** (the in-process processor): ``span_started`` sees every
  span of a task as it starts, so membership is known at once, and ``poll``
  re-reads the open roots so live progress arrives before the root ends.
* **In end order** (the exporter and the receiver): ``span_ended`` alone,
  children before their root, in any batch. A span stamped by an upstream
  processor (``agent.task.root_span_id``) joins its task at once. Unstamped
  spans wait in a per-trace buffer until their task root ends; a root
  candidate whose parent has not ended yet is held (at most ``root_hold_s``)
  to learn whether it has a task ancestor, so both orders agree on which
  span is the root.

Both orders give the same event ids and final views. Memory is bounded
(:mod:`.edges`, :mod:`.recent`), every eviction counted. A person's decision
finds its task through :mod:`.taskindex` and is applied by :mod:`.approvals`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData, read_live_sdk_span
from spanvisor.spans.live import LiveFact
from spanvisor.stats import PipelineStats
from spanvisor.tracking import late, stalls
from spanvisor.tracking.edges import ClosedTasks, PartialTasks
from spanvisor.tracking.live import LiveRoots, opener
from spanvisor.tracking.recent import RecentKeys, pair_key
from spanvisor.tracking.stalls import StallWatch
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.taskindex import Key, TaskIndex
from spanvisor.tracking.taskstate import TaskState
from spanvisor.tracking.tracebuffer import PENDING_TTL_S, PendingSpan, TraceBuffer, can_cause_events

# What a stamped descendant that opens its task lends it before the root comes.
_OPENER_KEYS = frozenset({cv.TASK_ID, cv.TASK_ROOT, cv.AGENT_ID})


def default_task_id(trace_id: str, root_span_id: str) -> str:
    return f"{trace_id}-{root_span_id}"


class TaskTracker:
    def __init__(
        self,
        settings: TrackerSettings | None = None,
        *,
        max_open_tasks: int = 10_000,
        dedup_window: int = 200_000,
        root_hold_s: float = 30.0,
        max_pending_spans: int = 200_000,
        stats: PipelineStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        snapshot: Callable[[Any], SpanData | None] | None = None,
        partial_idle_s: float | None = None,
    ) -> None:
        self.settings = settings or TrackerSettings()
        self.stats = stats or PipelineStats()
        self._max_open = max(1, max_open_tasks)
        self._dedup_window = max(1, dedup_window)
        self._hold_s = root_hold_s
        self._max_pending = max_pending_spans
        self._clock = clock
        self._wall = wall_clock
        self._tasks: OrderedDict[Key, TaskState] = OrderedDict()
        self._span_task: dict[str, Key] = {}
        self._live: dict[Key, Any] = {}
        # Compact keys (tracking/recent.py): the most a long stream leaves behind.
        self._seen = RecentKeys(self._dedup_window)
        self._finished = RecentKeys(self._dedup_window)
        self._buffers: OrderedDict[str, TraceBuffer] = OrderedDict()
        self.snapshot: Callable[[Any], SpanData | None] = snapshot or read_live_sdk_span
        self._pending_count = 0
        self._closed = ClosedTasks()
        self._by_task = TaskIndex()
        self._stalls = StallWatch(self.settings.stalls)
        self._live_roots = LiveRoots()
        # A task opened from a descendant sleeps once idle as long as a root is held.
        self._partial = PartialTasks(root_hold_s if partial_idle_s is None else partial_idle_s, self._max_open)

    @property
    def open_tasks(self) -> int:
        return len(self._tasks)

    def states(self) -> tuple[list[TaskState], list[TaskState]]:
        """Open tasks' states and just-finished ones' (for :mod:`.approvals`)."""
        return list(self._tasks.values()), self._closed.states()

    def states_of(self, task_id: str) -> tuple[list[TaskState], list[TaskState]]:
        """What ``states()`` holds of one task id, through an index (:mod:`.taskindex`)."""
        return self._by_task.states(task_id, self._tasks, self._closed, self._clock())

    def _open(self, key: Key, span: SpanData, notes: list[str], initial: bool = False) -> list[Event]:
        """Open a task. ``initial``: ``span`` is the root as it starts, so its
        state attributes are the task's initial state (part of TaskStarted)."""
        trace_id, root_id = key
        raw_id = span.attributes.get(cv.TASK_ID)
        task_id = sz.name(raw_id, cv.TASK_ID, notes) if raw_id is not None else None
        task_id = task_id or default_task_id(trace_id, root_id)
        st = TaskState.open(task_id, trace_id, root_id, span, self.settings, notes)
        if initial:  # the root as it starts, or before its children are replayed (end order)
            st.read_initial(span, notes)
        self._tasks[key] = st
        self._by_task.add(task_id, key, self._tasks, self._closed)
        self._stalls.touch(key, self._clock())
        out = [*self._bound_open(span.start_ns), *st.started(st.view.started_ns, notes)]
        for fact in self._live_roots.take(key):  # live records that came before the task
            out.extend(self._live_read(key, st, fact))
        return out

    def _bound_open(self, now_ns: int) -> list[Event]:
        evicted: list[Event] = []
        while len(self._tasks) > self._max_open:
            old, old_st = self._tasks.popitem(last=False)
            self._live.pop(old, None)
            self._live_roots.forget(old)
            self.stats.inc("evicted_tasks_total", reason="capacity")
            if old in self._partial:
                # Its root is elsewhere (or later): it sleeps, unfinished here.
                self._partial.sleep(old, old_st, self._clock())
                continue
            self._finished.remember(pair_key(*old))
            self.stats.drop("open_task_evicted", detail="more open tasks than SPANVISOR_MAX_OPEN_TASKS")
            evicted.append(old_st.abandon(now_ns, f"evicted: more than {self._max_open} open tasks"))
        return evicted

    def _revive(self, key: Key, now_ns: int) -> list[Event] | None:
        """A sleeping partial task gets a span: open again, state intact. None: not sleeping."""
        st = self._partial.wake(key)
        if st is None:
            return None
        self._tasks[key] = st
        self._by_task.add(st.working["task_id"], key, self._tasks, self._closed)
        self._partial.opened(key, self._clock())
        return self._bound_open(now_ns)

    def _finish(self, key: Key, st: TaskState, root: SpanData, notes: list[str]) -> list[Event]:
        ev = st.finish(root, notes)
        self._tasks.pop(key, None)
        self._live.pop(key, None)
        self._live_roots.forget(key)
        self._closed.add(key, st, self._clock())
        self._finished.remember(pair_key(*key))
        self.stats.inc("evicted_tasks_total", reason="finished")
        return [ev]

    def _lose(self, key: Key, idle_s: float) -> list[Event]:
        """Finish a task whose agent went silent for the lost time."""
        st = self._tasks.pop(key)
        self._live.pop(key, None)
        self._live_roots.forget(key)
        self._partial.root_seen(key)
        self._closed.add(key, st, self._clock())
        self._finished.remember(pair_key(*key))
        self.stats.inc("evicted_tasks_total", reason="lost")
        why = f"no sign of life for {round(idle_s)} s (SPANVISOR_LOST_AFTER): the agent died without ending the task"
        return [st.abandon(max(self._wall(), st.last_ns), why, "lost", "SpanvisorLost")]

    def _absorb(self, key: Key, span: SpanData, notes: list[str]) -> list[Event]:
        st = self._tasks.get(key)
        if st is None:  # a member of a task that has finished: late (tracking/late.py)
            return self._late(key, span, notes, can_cause_events(span)) if pair_key(*key) in self._finished else []
        self._tasks.move_to_end(key)
        self.stats.inc("spans_in_tasks_total")
        is_root = span.span_id == key[1]
        now = self._clock()
        if is_root:
            self._partial.root_seen(key)
        else:
            self._partial.touch(key, now)
        idle = now - self._stalls.touch(key, now)
        out = [stalls.resumed(st, idle, self._wall())] if st.working["stalled"] else []
        out.extend(st.absorb(span, notes, is_root))
        if is_root and span.end_ns is not None:
            out.extend(self._finish(key, st, span, notes))
        return out

    def add_member(self, span_id: str, parent_id: str) -> bool:
        """Record a started span whose parent is in an open task. False: it is not."""
        key = self._span_task.get(parent_id)
        if key is None or key not in self._tasks:
            return False
        self._span_task[span_id] = key
        self._stalls.touch(key, self._clock())  # a span starting is activity too
        return True

    def span_started(self, span: SpanData, live: Any = None) -> list[Event]:
        """A span started in-process. ``live`` is kept to poll open roots."""
        notes: list[str] = list(span.notes)
        key = self._span_task.get(span.parent_id) if span.parent_id else None
        if key is not None and key in self._tasks:
            self._span_task[span.span_id] = key
            return []
        if not cv.is_root_candidate(span.attributes):
            return []
        stamped_root = span.attributes.get(cv.TASK_ROOT)
        if isinstance(stamped_root, str) and stamped_root and stamped_root != span.span_id:
            # Stamped as a descendant of a task that has already ended (async
            # work outliving its root): not a new task.
            self.stats.inc("late_spans_total")
            return []
        key = (span.trace_id, span.span_id)
        if key in self._tasks or pair_key(*key) in self._finished:
            return []
        self._span_task[span.span_id] = key
        if live is not None:
            self._live[key] = live
        return self._open(key, span, notes, initial=True)

    def poll(self, snapshot: Callable[[Any], SpanData | None] | None = None, now_ns: int | None = None) -> list[Event]:
        """Re-read every open task root still being written by the agent.

        ``now_ns``: when the roots are read (wall clock by default); changed
        attributes count from then, and no event after it is taken yet.
        """
        if snapshot is not None:
            self.snapshot = snapshot
        snapshot = self.snapshot
        now = self._wall() if now_ns is None else now_ns
        out: list[Event] = []
        for key, live in list(self._live.items()):
            snap = snapshot(live)
            if snap is None or snap.end_ns is not None:
                continue  # its end arrives through span_ended
            st = self._tasks.get(key)
            if st is not None:
                if stalls.root_moved(st, snap):  # a checkpoint on the root is activity too
                    idle = self._clock() - self._stalls.touch(key, self._clock())
                    out.extend([stalls.resumed(st, idle, now)] if st.working["stalled"] else [])
                out.extend(st.absorb(snap, [], is_root=True, now_ns=now))
        return out

    # -- the live channel (every path; spans/live.py) ---------------------------

    def live(self, facts: Iterable[LiveFact]) -> list[Event]:
        """Live-channel records: facts of open roots, each read as a poll of
        its root at the record's time (:mod:`.live`)."""
        out: list[Event] = []
        for fact in facts:
            key = (fact.trace_id, fact.root_span_id)
            if key in self._live:
                continue  # read live in this process: its poll says all this
            st = self._tasks.get(key)
            if st is None:
                if pair_key(*key) in self._finished:
                    self.stats.inc("live_records_total", outcome="late")  # its root's end said it all
                    continue
                revived = self._revive(key, fact.time_ns)
                if revived is None and fact.name != cv.LIVE_TASK_START:
                    self._live_roots.wait(key, fact, self._clock())
                    continue
                if revived is None:
                    self.stats.inc("live_records_total", outcome="opened")
                    out.extend(self._open(key, opener(fact), [], initial=True))
                    out.extend(self._claim_buffered(key))
                    continue
                out.extend(revived)
                st = self._tasks[key]
            self.stats.inc("live_records_total", outcome="read")
            out.extend(self._live_read(key, st, fact))
        return out

    def _live_read(self, key: Key, st: TaskState, fact: LiveFact) -> list[Event]:
        if key in self._live:
            return []
        # Its root is alive and speaking: not a partial task that may sleep.
        self._partial.root_seen(key)
        now = self._clock()
        idle = now - self._stalls.touch(key, now)
        out = [stalls.resumed(st, idle, fact.time_ns)] if st.working["stalled"] else []
        if fact.name == cv.LIVE_HEARTBEAT:
            return out
        v = st.view
        snap = self._live_roots.root(key, v.task_name or "", v.started_ns, fact.resource).read(*key, fact)
        out.extend(st.absorb(snap, [], is_root=True, now_ns=fact.time_ns))
        return out

    # -- in end order (every path) ---------------------------------------------

    def span_ended(self, span: SpanData) -> list[Event]:
        content = can_cause_events(span)
        if content:
            # Only spans that can cause events use the dedup window: the
            # keyless majority would otherwise push real ones out of it
            # within seconds. A resent keyless span changes nothing anyway.
            sid = span.span_id
            if not self._seen.remember(span.trace_id + sid if len(sid) == 16 else (span.trace_id, sid)):
                self.stats.inc("duplicate_spans_total")
                return []
        # What was changed on the way in (a clamped time) goes with its events.
        notes: list[str] = list(span.notes)
        if span.dropped_attributes:  # by the sender's limit: what we never got
            self.stats.inc("span_attributes_dropped_total", span.dropped_attributes)
        key = self._span_task.pop(span.span_id, None)
        if key is not None:
            out: list[Event] = []
            live = self._live.get(key)
            if (
                live is not None
                and span.span_id != key[1]
                and span.end_ns is not None
                and (span.events or cv.has_known_key(span.attributes))
            ):
                # Read the open root's events up to this span's end first, so a
                # checkpoint the agent added before it is not ordered after it,
                # and one added since does not leak into this span's view.
                # (The root may have ended since; its end arrives later, and
                # the events read here are not read twice.)
                snap = self.snapshot(live)
                st = self._tasks.get(key)
                if snap is not None and st is not None:
                    out.extend(st.absorb(snap, [], is_root=True, until_ns=span.end_ns))
            out.extend(self._absorb(key, span, notes))
            return out
        root_id = span.attributes.get(cv.TASK_ROOT)
        if isinstance(root_id, str) and root_id:
            return self._stamped(span, root_id.lower()[:32], notes, content)
        own = (span.trace_id, span.span_id)
        if own in self._tasks or self._partial.is_dormant(own):
            # The unstamped root of a task its stamped children (or its live
            # records) opened: it joins that task (stamps are optional for
            # OTLP senders), after its descendants still buffered.
            revived = self._revive(own, span.start_ns) or []
            return [*revived, *self._adopt(span.trace_id, span.span_id, own), *self._absorb(own, span, notes)]
        parent = span.parent_id
        if parent is not None and (span.trace_id, parent) in self._tasks:
            # A child of an open task's root: it is the task's now, and so is
            # what of its subtree ended before it.
            key = (span.trace_id, parent)
            return [*self._adopt(span.trace_id, span.span_id, key), *self._absorb(key, span, notes)]
        return self._unstamped(span, notes, content)

    def _claim_buffered(self, key: Key) -> list[Event]:
        """A task its start record opened: what of it waits in its trace's
        buffer is its now (the root itself, held while its ancestry was
        unknown, decided by that record; else the root's buffered subtree)."""
        buf = self._buffers.get(key[0])
        if buf is None:
            return []
        if key[1] in buf.held:
            return self._resolve(key[0], buf, force=(key[1],))
        return self._adopt(key[0], key[1], key)

    def _adopt(self, trace_id: str, sid: str, key: Key) -> list[Event]:
        """The buffered descendants of ``sid`` join task ``key``, in the order they arrived."""
        buf = self._buffers.get(trace_id)
        if buf is None:
            return []
        datas, taken = buf.take_below(sid)
        self._pending_count -= taken
        if not buf.spans:
            self._buffers.pop(trace_id, None)
        out: list[Event] = []
        for d in datas:  # as they arrived (docs/conventions.md#clock-skew)
            out.extend(self._absorb(key, d, list(d.notes)))
        return out

    def _stamped(self, span: SpanData, root_id: str, notes: list[str], content: bool) -> list[Event]:
        key = (span.trace_id, root_id)
        # Every way into _tasks checks the finished record first: most spans build no key.
        if key not in self._tasks and pair_key(span.trace_id, root_id) in self._finished:
            return self._late(key, span, notes, content)
        out: list[Event] = []
        if key not in self._tasks:
            revived = self._revive(key, span.start_ns)
            if revived is not None:
                out.extend(revived)
            elif span.span_id == root_id:
                out.extend(self._open(key, span, notes))
            elif not content and cv.TASK_NAME not in span.attributes:
                # A descendant that can cause no event opens nothing: under
                # spraying most spans are such, and a replica would otherwise
                # open (and announce) every task it gets one of them from. One
                # that names the task (`spanvisor emit start`; the processor
                # never stamps the name) announces it.
                return []
            else:
                # A descendant arrived first: open from the task's ids alone;
                # the span's own identity fills gaps until the root arrives.
                # The stamp names the task's agent too (the processor and
                # the helpers copy the root's): every sink shows that name
                # from TaskStarted on, not the sender's service.name.
                stamps = {k: v for k, v in span.attributes.items() if k in _OPENER_KEYS}
                opener = SpanData(span.trace_id, root_id, None, "", span.start_ns, None, stamps, resource=span.resource)
                out.extend(self._open(key, opener, notes))
                self._partial.opened(key, self._clock())
        out.extend(self._absorb(key, span, notes))
        return out

    def _late(self, key: Key, span: SpanData, notes: list[str], content: bool) -> list[Event]:
        """A span of a task that finished here: a TaskCorrected or nothing (:mod:`.late`, :mod:`.edges`)."""
        self.stats.inc("late_spans_total")
        if span.span_id == key[1]:
            return []  # the root again, resent without anything to dedup it by
        st = self._closed.get(key, self._clock())
        if st is None:
            if content:
                self.stats.drop("late_span", detail="a span came after its task had finished and been forgotten")
            return []
        self.stats.inc("spans_in_tasks_total")
        return late.correct(st, span, notes)

    def _unstamped(self, span: SpanData, notes: list[str], content: bool) -> list[Event]:
        a = span.attributes
        candidate = bool(a) and cv.is_root_candidate(a)
        interesting = candidate or content
        parent = span.parent_id  # pair_key inlined below: nearly every plain span comes here
        done = parent is not None and (span.trace_id + parent if len(parent) == 16 else (span.trace_id, parent))
        if parent is not None and done in self._finished:
            # A child of a task that has already finished (a Collector retry
            # reordered batches): late, and never a task of its own.
            return self._late((span.trace_id, parent), span, notes, content)
        buf = self._buffers.get(span.trace_id)
        if buf is None:
            if not interesting:
                return []  # the fast path: most spans end here
            buf = self._buffers[span.trace_id] = TraceBuffer()
        self._buffers.move_to_end(span.trace_id)
        buf.touched = self._clock()
        buf.spans[span.span_id] = PendingSpan(
            span.parent_id, span.parent_remote, span if interesting else None, candidate
        )
        self._pending_count += 1
        if candidate:
            buf.held[span.span_id] = buf.touched + self._hold_s
        out = self._resolve(span.trace_id, buf, force=())
        self._bound_pending()
        return out

    def _resolve(self, trace_id: str, buf: TraceBuffer, force: Iterable[str]) -> list[Event]:
        """Decide every held root candidate whose ancestry is now known."""
        out: list[Event] = []
        forced = set(force)
        for sid in list(buf.held):
            if sid not in buf.held:
                continue
            # A nested candidate stays held: its outer root takes it along, or
            # its deadline passes and it becomes a task of its own.
            if sid in forced or buf.ancestry(sid) == "root":
                del buf.held[sid]
                out.extend(self._emit_subtree(trace_id, buf, sid))
        if not buf.spans:
            self._buffers.pop(trace_id, None)
        return out

    def _emit_subtree(self, trace_id: str, buf: TraceBuffer, root_sid: str) -> list[Event]:
        root, on_time, after, taken = buf.take_subtree(root_sid)  # after the root arrived: late
        self._pending_count -= taken
        key = (trace_id, root_sid)
        if pair_key(*key) in self._finished:  # the same task resent after it finished
            self.stats.inc("duplicate_spans_total", taken)
            return []
        notes: list[str] = list(root.notes)
        # Its live records may have opened it meanwhile: then it continues.
        out = self._open(key, root, notes, initial=True) if key not in self._tasks else []
        st = self._tasks[key]
        for d in on_time:  # as they arrived, never by end times from other clocks (docs/conventions.md#clock-skew)
            # The root's events up to each child's end first, as in-process.
            out.extend(st.absorb(root, [], is_root=True, until_ns=d.end_ns or 0))
            out.extend(self._absorb(key, d, list(d.notes)))
        out.extend(self._absorb(key, root, notes))
        out.extend(e for d in after for e in self._late(key, d, list(d.notes), can_cause_events(d)))
        return out

    def _bound_pending(self) -> None:
        while self._pending_count > self._max_pending and self._buffers:
            _, buf = self._buffers.popitem(last=False)
            self._pending_count -= len(buf.spans)
            self.stats.drop(
                "pending_spans_evicted",
                len(buf.spans),
                detail="too many spans waiting for their task root; raise the limit or route by trace id",
            )

    def expire(self) -> list[Event]:
        """Release held roots past their deadline, forget stale buffers, put
        idle partial tasks to sleep and forget old closed ones."""
        now = self._clock()
        for key in self._partial.due(now):
            if (waiting := self._tasks.get(key)) is not None and waiting.working["approvals"]:
                # Waiting for a person is a sign of life: it stays open here.
                self._partial.opened(key, now)
                continue
            st = self._tasks.pop(key, None)
            if st is not None:
                self._live.pop(key, None)
                self._partial.sleep(key, st, now)
                self.stats.inc("evicted_tasks_total", reason="partial")
        self._partial.expire(now)
        self._closed.expire(now)
        out: list[Event] = [stalls.stalled(st, idle, self._wall()) for st, idle in self._stalls.quiet(self._tasks, now)]
        for key, idle in self._stalls.lost(self._tasks, now):
            out.extend(self._lose(key, idle))
        self._live_roots.expire(now)
        if self._live_roots.dropped:
            self.stats.drop(
                "live_unclaimed",
                self._live_roots.dropped,
                detail="live-channel records whose task never opened here; route logs by trace id with the traces",
            )
            self._live_roots.dropped = 0
        for trace_id, buf in list(self._buffers.items()):
            due = [sid for sid, deadline in buf.held.items() if deadline <= now]
            if due:
                out.extend(self._resolve(trace_id, buf, force=due))
            if trace_id in self._buffers and now - buf.touched > PENDING_TTL_S and not buf.held:
                del self._buffers[trace_id]
                self._pending_count -= len(buf.spans)
                self.stats.inc("evicted_tasks_total", reason="expired")
        return out
