"""The tasks one tracker holds, and their lives: open, asleep, finished, lost.

:class:`TaskTable` owns every per-task record of a tracker: the open tasks
(oldest touched first, bounded: past ``max_open`` one is evicted by the
rule of :meth:`TaskTable._victim`, by what it has shown before its age, and
finished as ``evicted``, or put to sleep when its root is elsewhere), the
partial ones opened from descendants (:mod:`.edges`), the recently finished
ones (kept for late spans), the record of finished roots, the task-id index
(:mod:`.taskindex`), the stall clock (:mod:`.stalls`) and the open roots read
live in-process. It opens, revives, finishes and loses tasks and says what
each costs in events; which span belongs to which task is the tracker's
business (:mod:`.tracker`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.spans.live import LiveFact
from spanvisor.stats import PipelineStats
from spanvisor.tracking import launcherend, stalls
from spanvisor.tracking.edges import ClosedTasks, PartialTasks
from spanvisor.tracking.live import LiveRoots, root_attributes
from spanvisor.tracking.recent import RecentKeys, pair_key
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.stalls import StallWatch
from spanvisor.tracking.taskindex import Key, TaskIndex
from spanvisor.tracking.taskstate import TaskState

# The most tasks waiting for a person passed over to find one to evict: past
# it the table is all but full of them, and the oldest goes (one eviction
# stays O(1)).
MAX_SKIPPED = 256
# Tasks whose keys changed, waiting for the shared record of runs (a round of
# control.runsync's catch-up takes them all; beyond, a flood of start records
# the agent sends, the rest wait for their run's end, which writes its keys).
MAX_REKEYED = 10_000
# Activity this recent protects a task from eviction by a newcomer nobody
# confirmed yet, when stall detection is off (else the stall time).
RECENT_S = 600.0
# A task is heard of once (one request: its start, a heartbeat, a call, all
# at one moment) until a sign of life comes at least this long after it
# opened. Such tasks go first past max_open: one token can send any number
# of them, while a session that lives speaks again.
ONCE_S = 1.0
# What a task heard of once may show and still be a one-shot: its start and
# one more event (a model call: what one forged record makes). One that shows
# more (a tool call, a second call, its state, a person's decision) goes only
# after every one-shot.
ONE_SHOT_EVENTS = 2
# Open tasks looked at for the least shown when every one left spoke within
# its liveness window (the idlest first): a bounded look, so eviction stays O(1).
LIVE_SCAN = 8

# Why a task is evicted past max_open, in the order the rule takes them;
# each counted in dropped_total under its reason.
UNCONFIRMED, ONCE, IDLE, SHOWN, LIVE = "unconfirmed", "once", "idle", "shown", "live"
EVICTED_AS = {
    UNCONFIRMED: "open_task_unconfirmed_evicted",
    ONCE: "open_task_once_evicted",
    IDLE: "open_task_idle_evicted",
    SHOWN: "open_task_evicted",
    LIVE: "open_task_evicted",
}
SAID = {
    UNCONFIRMED: "only its start record spoke of it",
    ONCE: "it was heard of at one moment only and showed no more than its start and one call",
    IDLE: "it had been silent for longer than its stall time",
    SHOWN: "it was heard of at one moment only, and no start-only, one-shot or silent task was left",
    LIVE: "every task left spoke within its stall time; of the idlest it showed the least",
}


def default_task_id(trace_id: str, root_span_id: str) -> str:
    return f"{trace_id}-{root_span_id}"


class TaskTable:
    def __init__(
        self,
        settings: TrackerSettings,
        stats: PipelineStats,
        clock: Callable[[], float],
        wall_clock: Callable[[], int],
        *,
        max_open: int,
        dedup_window: int,
        partial_idle_s: float,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.clock = clock
        self.wall = wall_clock
        self.max_open = max(1, max_open)
        self.open: OrderedDict[Key, TaskState] = OrderedDict()
        # Compact keys (tracking/recent.py): the most a long stream leaves behind.
        self.finished = RecentKeys(dedup_window)
        self.closed = ClosedTasks()
        self.by_task = TaskIndex()
        self.stalls = StallWatch(settings.stalls)
        # A task opened from a descendant sleeps once idle as long as a root is held.
        self.partial = PartialTasks(partial_idle_s, self.max_open)
        self.polled: dict[Key, Any] = {}  # open roots read live in this process (SDK spans)
        self.live_roots = LiveRoots()
        # Tasks a live start record opened with nothing heard since (oldest
        # first): the first to go past max_open, since one token can send
        # any number of them. Any later record, span or poll confirms one.
        self.unconfirmed: OrderedDict[Key, None] = OrderedDict()
        # Open tasks heard of at one moment only (ONCE_S), oldest first, by
        # when they opened: the next to go once no unconfirmed one is left.
        self.once: OrderedDict[Key, float] = OrderedDict()
        # Those of them that showed more than a one-shot (ONE_SHOT_EVENTS, a
        # person's decision), moved here when an eviction looks (once each:
        # what a task showed only grows): they go after every one-shot and
        # every silent task.
        self.once_shown: OrderedDict[Key, float] = OrderedDict()
        # Open tasks with a failed step under a root not ended yet (see
        # TaskState.unended): finished as failed once quiet for the root hold.
        self.failed_steps: dict[Key, None] = {}
        # Open tasks that only live records told of here, no span yet: under
        # several replicas, a task whose records reached this one and whose
        # spans (its root's end among them) reached another. Value: when the
        # shared record was last asked about it (:meth:`records_only_quiet`).
        self.records_only: dict[Key, float] = {}
        # Tasks whose keys changed, for the shared record (keyed, rekeyed).
        self._rekeyed: dict[Key, None] = {}

    def __len__(self) -> int:
        return len(self.open)

    def is_finished(self, key: Key) -> bool:
        return pair_key(*key) in self.finished

    def states(self) -> tuple[list[TaskState], list[TaskState]]:
        """Open tasks' states and just-finished ones' (for :mod:`.approvals`)."""
        return list(self.open.values()), self.closed.states()

    def state_at(self, key: Key) -> TaskState | None:
        """The task of these root ids, open or just finished (None: neither)."""
        return self.open.get(key) or self.closed.get(key, self.clock())

    def states_of(self, task_id: str) -> tuple[list[TaskState], list[TaskState]]:
        """What ``states()`` holds of one task id, through an index (:mod:`.taskindex`)."""
        return self.by_task.states(task_id, self.open, self.closed, self.clock())

    def create(
        self,
        key: Key,
        span: SpanData,
        notes: list[str],
        initial: bool,
        *,
        unconfirmed: bool = False,
        heard_ns: int = 0,
        provisional: bool = False,
    ) -> tuple[TaskState, list[Event]]:
        """Open a task. ``initial``: ``span`` is the root as it starts, so its
        state attributes are the task's initial state (part of TaskStarted).
        ``unconfirmed``: opened by a live start record alone, heard at
        ``heard_ns`` (its stall clock starts then). ``provisional``: opened
        before its root arrived (:mod:`.provisional`)."""
        trace_id, root_id = key
        raw_id = span.attributes.get(cv.TASK_ID)
        task_id = sz.name(raw_id, cv.TASK_ID, notes) if raw_id is not None else None
        task_id = task_id or default_task_id(trace_id, root_id)
        st = TaskState.open(task_id, trace_id, root_id, span, self.settings, notes)
        if provisional:
            st.provisional()
        if initial:  # the root as it starts, or before its children are replayed (end order)
            st.read_initial(span, notes)
        self.open[key] = st
        self.by_task.add(task_id, key, self.open, self.closed)
        heard = self.heard(heard_ns)
        self.stalls.touch(key, heard)
        self.once[key] = heard
        if unconfirmed:
            self.unconfirmed[key] = None
        return st, [*self._bound(span.start_ns, key), *st.started(st.working.started_ns, notes)]

    def revive(self, key: Key, now_ns: int) -> list[Event] | None:
        """A sleeping partial task gets a span: open again, state intact. None: not sleeping."""
        st = self.partial.wake(key)
        if st is None:
            return None
        self.open[key] = st
        self.by_task.add(st.working.task_id, key, self.open, self.closed)
        self.partial.opened(key, self.clock())
        return self._bound(now_ns, key)

    def alive(self, key: Key, st: TaskState, now_ns: int, now: float | None = None) -> list[Event]:
        """A sign of life: the stall clock starts again, and a stalled task resumes.
        ``now``: the monotonic clock if the caller read it already (one float
        kept for the task, not one per table)."""
        if now is None:
            now = self.clock()
        self.unconfirmed.pop(key, None)
        opened = self.once.get(key)
        if opened is None and self.once_shown:
            opened = self.once_shown.get(key)
        if opened is not None and now - opened >= ONCE_S:
            self._heard_again(key)  # heard of again, later: it lives
        if key in self.open:
            self.open.move_to_end(key)  # the idlest go first past max_open
        idle = now - self.stalls.touch(key, now)
        return [stalls.resumed(st, idle, now_ns)] if st.working.stalled else []

    def heard(self, heard_ns: int) -> float:
        """The tracker's clock at wall time ``heard_ns`` (0: now): a record
        replayed from the journal is as old as when it was heard."""
        now = self.clock()
        return now - max(0, self.wall() - heard_ns) / 1e9 if heard_ns else now

    def live_read(self, key: Key, st: TaskState, fact: LiveFact) -> list[Event]:
        """One live-channel record of an open task: a sign of life as of when
        it was heard, and unless a heartbeat, a reading of the open root."""
        if key in self.polled:
            return []
        # Its root is alive and speaking: not a partial task that may sleep.
        self.partial.root_seen(key)
        out = self.alive(key, st, fact.time_ns, self.heard(fact.heard_ns))
        if fact.name == cv.LIVE_HEARTBEAT:
            return out
        if fact.name == cv.LIVE_TASK_START:
            self.keyed(key, st, fact)
        w = st.working
        snap = self.live_roots.root(key, w.task_name or "", w.started_ns, fact.resource).read(*key, fact)
        out.extend(st.absorb(snap, [], is_root=True, now_ns=fact.time_ns))
        return out

    def records_only_quiet(self, most: int = 256) -> list[tuple[Key, str, str]]:
        """Tasks only live records told of, quiet for the root hold and not
        asked about for as long: (key, task id, run id) of each, to be
        looked up in the shared record of runs (the pipeline's control:
        did another replica finish it?). Each is asked at most once a root
        hold; at most ``most`` a call."""
        if not self.records_only:
            return []
        now, hold = self.clock(), self.partial.idle_s
        out: list[tuple[Key, str, str]] = []
        for key, asked in list(self.records_only.items()):
            st = self.open.get(key)
            if st is None or st.finished:
                del self.records_only[key]
                continue
            last = self.stalls.seen.get(key, now)
            if now - last < hold or now - asked < hold or st.working.approvals:
                continue
            self.records_only[key] = now
            out.append((key, st.working.task_id, st.working.run_id))
            if len(out) >= most:
                break
        return out

    def finished_by_another_replica(self, key: Key) -> bool:
        """Another replica finished this task, whose records alone came here:
        it is no longer open here and gets no end of its own (that replica's
        TaskFinished went to the sinks). It sleeps as a partial task does, so
        a span that still comes continues it. False when it is no longer a
        records-only open task (a span joined it meanwhile)."""
        st = self.open.get(key)
        if key not in self.records_only or st is None or st.finished:
            return False
        del self.records_only[key]
        self.open.pop(key)
        self.polled.pop(key, None)
        self.unconfirmed.pop(key, None)
        self._heard_again(key)
        self.live_roots.forget(key)
        self.partial.sleep(key, st, self.clock())
        self.stats.inc("evicted_tasks_total", reason="finished_by_another_replica")
        return True

    def keyed(self, key: Key, st: TaskState, start: LiveFact) -> None:
        """A start record naming spanvisor run's session key: the task ends
        by its launcher's word only (:mod:`.launcherend`). The first key
        stands; another is noted as a rival. Either is a fact the shared
        record of runs must get even when no event follows (a start record
        of an open task says nothing new): :meth:`rekeyed` hands them over."""
        named = launcherend.key_of(start.attributes)
        if named is None:
            return
        if st.launcher is None:
            st.launcher = launcherend.LauncherEnd(named)
        elif not st.launcher.named(named):
            return
        if len(self._rekeyed) < MAX_REKEYED:
            self._rekeyed[key] = None

    def rekeyed(self) -> list[TaskState]:
        """The tasks a start record keyed or named a rival key of since the
        last call, open or just finished (control.runsync writes their keys)."""
        if not self._rekeyed:
            return []
        keys, self._rekeyed = list(self._rekeyed), {}
        return [st for st in map(self.state_at, keys) if st is not None]

    def exception_record(self, key: Key, fact: LiveFact) -> list[Event]:
        """An ``exception`` log record (span events are becoming log records,
        spans/current.py): read as the span event it stands for, of the root,
        or of another span when the record names its root
        (``agent.task.root_span_id``). An open task's only: it never opens or
        waits for one (libraries record exceptions of no task). Any other
        record: nothing."""
        st = self.open.get(key)
        if fact.name != cv.EVENT_EXCEPTION or st is None:
            return []
        event = SpanEventData(cv.EVENT_EXCEPTION, fact.time_ns, root_attributes(fact))
        snap = SpanData(key[0], key[1], None, "", st.working.started_ns, None, {}, (event,))
        return st.absorb(snap, [], is_root=cv.TASK_ROOT not in fact.attributes, until_ns=fact.time_ns)

    def finish(self, key: Key, st: TaskState, root: SpanData, notes: list[str]) -> list[Event]:
        ev = st.finish(root, notes)
        self._close(key, st, "finished")
        return [ev]

    def rename(self, key: Key, st: TaskState, raw: Any, notes: list[str]) -> bool:
        """Task ``key``, opened provisionally under a derived id, meets its
        root, which names its ``agent.task.id`` (``raw``): the task takes that
        id from the root's events on, its views naming the derived one as
        ``former_id`` (every sink moves what it keeps of the run), and a
        lookup by either id finds it. A task opened under an id a span named
        keeps it. Returns whether it was renamed."""
        w = st.working
        if raw is None or w.former_id is not None or w.task_id != default_task_id(w.trace_id, w.root_span_id):
            return False
        task_id = sz.name(raw, cv.TASK_ID, notes)
        if not task_id or task_id == w.task_id:
            return False
        st.rename(task_id)
        self.by_task.add(task_id, key, self.open, self.closed)
        self.stats.inc("provisional_tasks_total", outcome="renamed")
        return True

    def alias(self, key: Key, st: TaskState) -> None:
        """``key`` (a provisional task's root, not the span it was opened
        under) is the finished task ``st``: its late spans correct it."""
        if key != (st.working.trace_id, st.working.root_span_id):
            self.finished.remember(pair_key(*key))
            self.closed.add(key, st, self.clock())

    def step_failed(self, key: Key) -> None:
        """A task's step under its open root failed (see :meth:`expire`)."""
        self.failed_steps[key] = None

    def _unended(self, now: float) -> list[Event]:
        """Tasks whose step under the root failed, quiet since for their
        agent's stall time (the root hold when stall detection is off, and
        never less): the root never ended (smolagents' failing run), so they
        are finished as failed. Not one waiting for a person. The stall time,
        not the root hold: a step whose failure the agent got past may be
        followed by a long model call, whose span says nothing until it ends."""
        out: list[Event] = []
        for key in list(self.failed_steps):
            st = self.open.get(key)
            if st is None or st.finished:
                del self.failed_steps[key]
                continue
            last = self.stalls.seen.get(key)
            quiet = max(self.partial.idle_s, self.stalls.settings.limit(st.working.agent_id))
            if last is None or now - last < quiet or st.working.approvals:
                continue
            del self.failed_steps[key]
            self._close(key, st, "finished")
            out.append(st.unended(now - last))
        return out

    def lose(self, key: Key, idle_s: float) -> list[Event]:
        """Finish a task whose agent went silent for the lost time."""
        st = self.open[key]
        self._close(key, st, "lost")
        why = f"no sign of life for {round(idle_s)} s (SPANVISOR_LOST_AFTER): the agent died without ending the task"
        return [st.abandon(max(self.wall(), st.last_ns), why, "lost", "SpanvisorLost")]

    def _heard_again(self, key: Key) -> None:
        self.once.pop(key, None)
        if self.once_shown:
            self.once_shown.pop(key, None)

    def _close(self, key: Key, st: TaskState, reason: str) -> None:
        self.open.pop(key, None)
        self.records_only.pop(key, None)
        self.failed_steps.pop(key, None)
        self.unconfirmed.pop(key, None)
        self._heard_again(key)
        self.polled.pop(key, None)
        self.live_roots.forget(key)
        self.partial.root_seen(key)
        self.closed.add(key, st, self.clock())
        self.finished.remember(pair_key(*key))
        self.stats.inc("evicted_tasks_total", reason=reason)

    def admits(self, key: Key) -> bool:
        """Whether a task only a start record vouches for may open: there is
        room, or a task to make room with (another unconfirmed one, or one
        idle for longer than the stall time and waiting for nobody). Else it
        is refused (counted): a flood of start records never pushes out work
        in progress."""
        if len(self.open) < self.max_open or key in self.open:
            return True
        found = self._victim(None)
        if found is not None:
            victim, why = found
            last = self.stalls.seen.get(victim)
            idle = self.clock() - last if last is not None else None
            if why in (UNCONFIRMED, IDLE) or idle is None:
                return True
            if why == ONCE and idle >= ONCE_S:
                return True  # a one-shot, not heard of again since: it makes room
        self.stats.drop(
            "open_task_refused",
            detail="a start record for a new task when SPANVISOR_MAX_OPEN_TASKS are open and all recently active",
        )
        return False

    def _window(self, st: TaskState) -> float:
        """How long a live task may stay silent: its agent's stall time (:data:`RECENT_S` when off)."""
        after = self.settings.stalls.limit(st.working.agent_id)
        return after if after > 0 else RECENT_S

    @staticmethod
    def _shown(st: TaskState) -> int:
        """What a task has shown, to evict the least first: 0 for a one-shot
        (its start and at most one more event: :data:`ONE_SHOT_EVENTS`); more
        with every event it caused (model and tool calls, state, artifacts);
        most with a person's decision or an open request."""
        w = st.working
        if w.decisions or w.approvals:
            return 1 << 30
        return max(0, w.seq - ONE_SHOT_EVENTS)

    def _victim(self, newcomer: Key | None) -> tuple[Key, str] | None:
        """Who goes past max_open, and why, by what each task has shown before
        its age; never ``newcomer`` while another task is open, never one
        waiting for a person while another can go:

        1. the oldest task only its start record spoke of (:data:`UNCONFIRMED`);
        2. the oldest heard of at one moment only that showed no more than a
           one-shot (:data:`ONCE`: a flood of one-call sessions evicts its own);
        3. the idlest, when silent for longer than its stall time (:data:`IDLE`);
        4. the oldest heard of at one moment only that showed more (:data:`SHOWN`);
        5. of the idlest few (:data:`LIVE_SCAN`), the one that showed the
           least (:data:`LIVE`), else the idlest.

        So a task that spoke within its stall time is never evicted while a
        one-shot or a silent task remains, and a session heard of over time
        (records since it opened, a launcher's heartbeats) goes after every
        task heard of once. Those waiting for a person are passed over (at
        most :data:`MAX_SKIPPED` per eviction); every step is O(1) amortized
        (a task leaves ``once`` for ``once_shown`` at most once)."""
        for key in self.unconfirmed:  # oldest first: at most the newcomer is passed
            if key != newcomer:
                return key, UNCONFIRMED
        one_shot = self._one_shot(newcomer)
        if one_shot is not None:
            return one_shot, ONCE
        idlest, first = self._idlest(newcomer)
        if idlest is None:
            return (first, LIVE) if first is not None else None
        st = self.open[idlest]
        last = self.stalls.seen.get(idlest)
        if last is None or self.clock() - last >= self._window(st):
            return idlest, IDLE
        for n, key in enumerate(self.once_shown):
            if n > MAX_SKIPPED:
                break
            if key != newcomer and (shown := self.open.get(key)) is not None and not shown.working.approvals:
                return key, SHOWN
        best, least = idlest, self._shown(st)
        for n, key in enumerate(self.open):
            if n >= LIVE_SCAN or least == 0:
                break
            other = self.open[key]
            if key != newcomer and not other.working.approvals and (shown_ := self._shown(other)) < least:
                best, least = key, shown_
        return best, LIVE

    def _one_shot(self, newcomer: Key | None) -> Key | None:
        """The oldest open task heard of once that showed no more than a
        one-shot; those found to show more move to ``once_shown`` on the way."""
        found: Key | None = None
        shown: list[Key] = []
        for n, key in enumerate(self.once):
            if n > MAX_SKIPPED:
                break
            if key == newcomer:
                continue
            st = self.open.get(key)
            if st is not None and self._shown(st) == 0:
                found = key
                break
            shown.append(key)
        for key in shown:
            opened = self.once.pop(key)
            if key in self.open:
                self.once_shown[key] = opened
        return found

    def _idlest(self, newcomer: Key | None) -> tuple[Key | None, Key | None]:
        """The idlest open task not waiting for a person (those are looked at
        again last, at most :data:`MAX_SKIPPED` of them), and the first one
        passed over (the one to go when every task waits for a person)."""
        skipped = 0
        first: Key | None = None
        open_ = self.open
        while open_:
            key = next(iter(open_))
            if key == newcomer and len(open_) == 1:
                return None, None
            st = open_[key]
            if key != newcomer and not st.working.approvals:
                return key, first
            if first is None and key != newcomer:
                first = key
            skipped += 1
            if skipped > min(MAX_SKIPPED, len(open_)):
                break
            open_.move_to_end(key)  # waiting for a person: looked at again last
        return None, first

    def _bound(self, now_ns: int, newcomer: Key | None = None) -> list[Event]:
        evicted: list[Event] = []
        while len(self.open) > self.max_open:
            found = self._victim(newcomer)
            if found is None:
                return evicted
            old, reason = found
            old_st = self.open.pop(old)
            self.records_only.pop(old, None)
            self.unconfirmed.pop(old, None)
            self._heard_again(old)
            self.polled.pop(old, None)
            self.live_roots.forget(old)
            self.stats.inc("evicted_tasks_total", reason="capacity")
            if old in self.partial:
                # Its root is elsewhere (or later): it sleeps, unfinished here.
                self.partial.sleep(old, old_st, self.clock())
                continue
            self.finished.remember(pair_key(*old))
            self.stats.drop(
                EVICTED_AS[reason],
                detail=f"more open tasks than SPANVISOR_MAX_OPEN_TASKS; the one evicted because {SAID[reason]}",
            )
            why = (
                f"evicted: more than {self.max_open} open tasks (SPANVISOR_MAX_OPEN_TASKS) and {SAID[reason]}; "
                "no longer tracked"
            )
            evicted.append(old_st.abandon(now_ns, why))
        return evicted

    def expire(self) -> list[Event]:
        """Put idle partial tasks to sleep (not one waiting for a person),
        forget old sleeping and closed ones, say stalls, lose the silent."""
        now = self.clock()
        out: list[Event] = self._unended(now) if self.failed_steps else []
        for key in self.partial.due(now):
            if ((waiting := self.open.get(key)) is not None and waiting.working.approvals) or key in self.failed_steps:
                # Waiting for a person is a sign of life, and a failed step
                # under a root that may never end is finished here: it stays open.
                self.partial.opened(key, now)
                continue
            st = self.open.pop(key, None)
            if st is not None:
                self.polled.pop(key, None)
                self.unconfirmed.pop(key, None)
                self._heard_again(key)
                self.partial.sleep(key, st, now)
                self.stats.inc("evicted_tasks_total", reason="partial")
        self.partial.expire(now)
        self.closed.expire(now)
        out.extend(stalls.stalled(st, idle, self.wall()) for st, idle in self.stalls.quiet(self.open, now))
        for key, idle in self.stalls.lost(self.open, now):
            out.extend(self.lose(key, idle))
        self.live_roots.expire(now)
        if self.live_roots.dropped:
            self.stats.drop(
                "live_unclaimed",
                self.live_roots.dropped,
                detail="live-channel records whose task never opened here; route logs by trace id with the traces",
            )
            self.live_roots.dropped = 0
        return out


__all__ = ["TaskTable", "default_task_id"]
