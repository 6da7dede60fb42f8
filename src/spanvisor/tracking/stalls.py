"""Tasks that went quiet: no sign of life for their agent's stall time
(``SPANVISOR_STALL_AFTER``, 10 min by default, per agent in
``SPANVISOR_STALL_AFTER_BY_AGENT``; 0 turns it off), or for much longer.

The tracker notes when each open task last showed a sign of life (a span
starting in-process, a span ending on every path, a live-channel record or
heartbeat) and checks once a second: a task quiet for longer gets a
``TaskStalled`` and the ``stalled`` mark, cleared by a ``TaskResumed`` when
life comes back. One quiet for ``SPANVISOR_LOST_AFTER`` (24 h by default) is
finished as ``lost``: its agent died without ending its root, and no sink
should show it running for ever. The stall is always said first (while
stall detection is on for its agent): a task quiet for the lost time but not
yet for its stall time (an agent's stall time longer than the lost time) is
said stalled in the same check, just before it is lost. Only a replica that
holds the task open can say either (a replica that saw only some children,
and no live record, lets the task sleep after ``SPANVISOR_ROOT_HOLD``: see
docs/reference/deploy.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spanvisor.events import Event, TaskResumed, TaskStalled
from spanvisor.spans.conventions import STATE_KEYS
from spanvisor.spans.current import with_a2a_status
from spanvisor.spans.data import SpanData
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.settings import StallSettings

Key = tuple[str, str]


@dataclass
class StallWatch:
    settings: StallSettings = field(default_factory=StallSettings)
    # task -> when it last saw a span (the tracker's monotonic clock)
    seen: dict[Key, float] = field(default_factory=dict)

    def touch(self, key: Key, now: float) -> float:
        """Note activity; returns when the task last saw some (``now`` if never)."""
        last = self.seen.get(key, now)
        self.seen[key] = now
        return last

    def quiet(self, tasks: Mapping[Key, TaskRecord], now: float) -> list[tuple[TaskRecord, float]]:
        """Open tasks quiet past their limit and not yet said to be; tasks no
        longer open are forgotten here."""
        out = []
        for key, last in list(self.seen.items()):
            st = tasks.get(key)
            if st is None or st.finished:
                del self.seen[key]
                continue
            if st.working.stalled:
                continue
            limit = self.settings.limit(st.working.agent_id)
            if limit <= 0:
                continue
            # A task about to be lost is said stalled first, whatever its
            # agent's stall time (issue 64: an orphan is stalled, then lost;
            # never lost unannounced). The tracker says these stalls before
            # it asks :meth:`lost`, in the same check.
            lost = self.settings.lost_after_s
            if now - last >= (min(limit, lost) if lost > 0 else limit):
                out.append((st, now - last))
        return out

    def lost(self, tasks: Mapping[Key, TaskRecord], now: float) -> list[tuple[Key, float]]:
        """Open tasks quiet for the lost time, with how long; with stall
        detection on for its agent, only one already said stalled
        (:meth:`quiet` says it first, in the same check): the stall is said
        before the loss on every path."""
        limit = self.settings.lost_after_s
        if limit <= 0:
            return []
        out = []
        for key, last in self.seen.items():
            st = tasks.get(key)
            if st is None or now - last < limit:
                continue
            if not st.working.stalled and self.settings.limit(st.working.agent_id) > 0:
                continue  # not said stalled yet: lost at a later check, after its stall
            out.append((key, now - last))
        return out


def root_moved(state: TaskRecord, snap: SpanData) -> bool:
    """Whether a snapshot of the open root holds news (an event later than the
    task's last, or changed state attributes), without reading it."""
    if snap.events:
        # An event read before (an exception recorded on a root that never
        # ends) is no news, however late it is.
        by_span = state.events_seen
        seen = by_span.get(snap.span_id, ()) if by_span else ()
        if any(e.time_ns > state.last_ns and (e.time_ns, e.name, 1) not in seen for e in snap.events):
            return True
    a = with_a2a_status(snap.attributes)  # as the task reads its root
    current = {k: a[k] for k in STATE_KEYS if k in a} if a else {}
    return current != state.fields.seen(snap.span_id)


def stalled(state: TaskRecord, idle_s: float, now_ns: int | None = None) -> Event:
    state.update(stalled=True)
    t = state.next_time(now_ns if now_ns is not None else time.time_ns())
    n = state.stalls = state.stalls + 1
    return TaskStalled(event_id=state.event_id("stalled", n), time_ns=t, task=state.view, idle_s=round(idle_s, 1))


def resumed(state: TaskRecord, idle_s: float, now_ns: int) -> Event:
    state.update(stalled=False)
    t = state.next_time(now_ns)
    return TaskResumed(
        event_id=state.event_id("resumed", state.stalls), time_ns=t, task=state.view, idle_s=round(idle_s, 1)
    )


def room_after_rebuild(tasks: Iterable[TaskRecord], settings: StallSettings, now_ns: int) -> int:
    """Tasks rebuilt from their records after a restart: the clock's events
    (a stall, its resume, a loss) are in no record, so each task's ``seq``
    and stall count fall short of what the last process reached, and every
    sink keeps the view with the highest ``seq``: it would refuse the
    task's next views. Each skips as many as it can have had: one stall per
    stall time of its age, plus one, a resume for each, and a loss.
    Returns how many tasks."""
    n = 0
    for st in tasks:
        w = st.working
        limit = settings.limit(w.agent_id)
        age_s = max(0.0, (now_ns - w.started_ns) / 1e9) if w.started_ns else 0.0
        quiet = math.ceil(age_s / limit) + 1 if limit > 0 else 0
        st.leave_room(2 * quiet + 1, quiet)
        n += 1
    return n


__all__ = ["StallSettings", "StallWatch", "resumed", "room_after_rebuild", "root_moved", "stalled"]
