"""What every way into a :class:`~.tracker.TaskTracker` shares: its
records, opening a task, reading a span into it, and a span that comes
after its task finished (:mod:`.late`). The ways in (start order, end
order, the live channel, provisional tasks) are :mod:`.tracker`'s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, read_live_sdk_span
from spanvisor.spans.rootevents import EventCursor, OpenRoots, read_sdk_events
from spanvisor.stats import PipelineStats
from spanvisor.tracking import late, launcherend, stalls, statefacts
from spanvisor.tracking.provisional import ProvisionalTasks
from spanvisor.tracking.recent import RecentKeys, pair_key
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.taskindex import Key
from spanvisor.tracking.taskstate import TaskState
from spanvisor.tracking.tasktable import TaskTable
from spanvisor.tracking.tracebuffer import PendingTraces, can_cause_events


class TrackerBase:
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
        read_events: Callable[[Any, EventCursor], bool] = read_sdk_events,
    ) -> None:
        self.settings = settings or TrackerSettings()
        self.stats = stats or PipelineStats()
        self._clock = clock
        self._wall = wall_clock
        self.tasks = TaskTable(
            self.settings,
            self.stats,
            clock,
            wall_clock,
            max_open=max_open_tasks,
            dedup_window=max(1, dedup_window),
            partial_idle_s=root_hold_s if partial_idle_s is None else partial_idle_s,
        )
        t = self.tasks  # the table's records, by the names this class has always used
        self._tasks, self._finished, self._closed, self._partial = t.open, t.finished, t.closed, t.partial
        self._live, self._live_roots = t.polled, t.live_roots
        self._span_task: dict[str, Key] = {}
        self._seen = RecentKeys(max(1, dedup_window))
        self._pending = PendingTraces(root_hold_s, max_pending_spans, self.stats, clock, self.settings.pending)
        self.snapshot: Callable[[Any], SpanData | None] = snapshot or read_live_sdk_span
        # Open roots' events as last read: a read takes only the new ones.
        self._roots = OpenRoots(read_events)
        self._prov = ProvisionalTasks(self.settings.provisional)

    @property
    def open_tasks(self) -> int:
        return len(self._tasks)

    def states(self) -> tuple[list[TaskState], list[TaskState]]:
        """Open tasks' states and just-finished ones' (for :mod:`.approvals`)."""
        return self.tasks.states()

    def records_only_quiet(self) -> list[tuple[Key, str, str]]:
        """Open tasks only live records told of, gone quiet: to look up in the
        shared record of runs (:meth:`.tasktable.TaskTable.records_only_quiet`)."""
        return self.tasks.records_only_quiet()

    def finished_by_another_replica(self, key: Key) -> bool:
        """Another replica finished ``key``: not open here any more, no end of its own."""
        return self.tasks.finished_by_another_replica(key)

    def rekeyed(self) -> list[TaskState]:
        """Tasks whose starter keys changed since the last call (:meth:`.tasktable.TaskTable.rekeyed`)."""
        return self.tasks.rekeyed()

    def state_at(self, key: Key) -> TaskState | None:
        """The task of these root ids, open or just finished (None: neither)."""
        return self.tasks.state_at(key)

    def states_of(self, task_id: str) -> tuple[list[TaskState], list[TaskState]]:
        """What ``states()`` holds of one task id, through an index (:mod:`.taskindex`)."""
        return self.tasks.states_of(task_id)

    def _open(self, key: Key, span: SpanData, notes: list[str], initial: bool = False, **how: Any) -> list[Event]:
        self._prov.had_task(key[0])  # a trace with a task gets no provisional one
        st, out = self.tasks.create(key, span, notes, initial, **how)
        for fact in self._live_roots.take(key):  # live records that came before the task
            out.extend(self.tasks.live_read(key, st, fact))
        return out

    def _absorb(self, key: Key, span: SpanData, notes: list[str], is_root: bool | None = None) -> list[Event]:
        """``span`` read into task ``key``; ``is_root``: whether it is the
        root (by default: whether it is ``key``'s span; a provisional task's
        root may be another, and its own span a member)."""
        st = self._tasks.get(key)
        if st is None:  # a member of a task that has finished: late (tracking/late.py)
            return self._late(key, span, notes, can_cause_events(span)) if pair_key(*key) in self._finished else []
        self._tasks.move_to_end(key)
        self.stats.inc("spans_in_tasks_total")
        if self.tasks.records_only:
            self.tasks.records_only.pop(key, None)  # a span of it came here: its own to end
        if is_root is None:
            is_root = span.span_id == key[1]
        if is_root and span.end_ns is not None and st.launcher is not None:
            if not launcherend.proves(st.launcher.key, span.attributes):
                return self._claimed_end(key, st, span, notes)
            notes = [*notes, *st.launcher.notes()]  # the launcher's end, the claims kept beside it
            st.launcher.proved = True
            span = launcherend.without_proof(span)
        now = self._clock()
        if is_root:
            self._partial.root_seen(key)
        else:
            self._partial.touch(key, now)
        if not is_root and self._prov.keys and key in self._prov.keys and cv.is_root_candidate(span.attributes):
            self._prov.took_agent(key, span.span_id)
        out = self.tasks.alive(key, st, self._wall(), now)
        if is_root and self._prov.keys and key in self._prov.keys and span.end_ns is not None:
            # A provisional task's root naming its id: the task is known by it from the root's events on.
            self.tasks.rename(key, st, span.attributes.get(cv.TASK_ID), notes)
        out.extend(st.absorb(span, notes, is_root))
        if span.error and not is_root and st.errors is not None and st.errors.step is not None:
            self.tasks.step_failed(key)
        if is_root and span.end_ns is not None:
            self._roots.forget(key)  # the root is read whole, and no more
            out.extend(self.tasks.finish(key, st, span, notes))
            if key in self._prov.keys:  # a provisional task's root: its late spans are this task's
                self._pending.release(key)
                self.tasks.alias((key[0], span.span_id), st)
                self._provisional_ended(key, st)
        return out

    def _claimed_end(self, key: Key, st: TaskState, span: SpanData, notes: list[str]) -> list[Event]:
        """A launched task's root end without its launcher's proof: a claim,
        said once on the task (its message), which stays open (:mod:`.launcherend`)."""
        self.stats.inc("claimed_ends_total")
        outcome = launcherend.claimed_outcome(span)
        end_ns = span.end_ns or span.start_ns
        if not st.launcher or not st.launcher.claim(outcome, end_ns):
            return []
        out = self.tasks.alive(key, st, self._wall(), self._clock())
        said = {cv.MESSAGE: launcherend.claim_message(outcome)}
        out.extend(statefacts.checkpoint_event(st, span.span_id, 0, max(end_ns, st.last_ns), said, notes))
        return out

    def _provisional_ended(self, key: Key, st: TaskState | None) -> None:
        """Provisional task ``key`` ended (``st``: its state, if still kept).
        An agent span it took as a member is this task's: a live record that
        names it as a root comes late (it would open a task whose root was
        read already, one that never ends), and its late spans correct this one."""
        for sid in self._prov.closed(key):
            if st is not None:
                self.tasks.alias((key[0], sid), st)
            else:
                self._finished.remember(pair_key(key[0], sid))

    def _late(self, key: Key, span: SpanData, notes: list[str], content: bool) -> list[Event]:
        """A span of a task that finished here: a TaskCorrected or nothing (:mod:`.late`, :mod:`.edges`)."""
        self.stats.inc("late_spans_total")
        if span.span_id == key[1]:
            return []  # the root again, resent without anything to dedup it by
        now = self._clock()
        st = self._closed.get(key, now)
        if st is None:
            if content:
                self.stats.drop("late_span", detail="a span came after its task had finished and been forgotten")
            return []
        self.stats.inc("spans_in_tasks_total")
        # How long after its task's end it came, by when it ended: a Collector
        # that reorders shows as arrived_late, async work as outlived.
        kind = "arrived_late" if late.arrived_late(st, span) else "outlived"
        self.stats.observe("late_span_arrival_seconds", self._closed.age(key, now) or 0.0, kind=kind)
        return late.correct(st, span, notes)

    def rebuilt(self) -> int:
        """The open tasks were rebuilt from journaled records (``spanvisor
        serve`` after a restart): each leaves room for the clock's events the
        last process said (:func:`.stalls.room_after_rebuild`). Returns how many."""
        return stalls.room_after_rebuild(self._tasks.values(), self.tasks.stalls.settings, self._wall())
