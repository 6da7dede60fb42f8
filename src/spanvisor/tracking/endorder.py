"""The end-order paths' building blocks: a decided subtree becomes its
task's events, buffered spans join their task, and provisional tasks
(:mod:`.provisional`) open, take their spans and end. :mod:`.tracker`
routes each span here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.current import A2A_TASK_STATE
from spanvisor.spans.data import SpanData
from spanvisor.spans.rootevents import EndedRoot
from spanvisor.tracking.provisional import guess, mark_below, named, top_arrived, top_as_root
from spanvisor.tracking.recent import pair_key
from spanvisor.tracking.taskindex import Key
from spanvisor.tracking.tracebuffer import Subtree, TraceBuffer, can_cause_events
from spanvisor.tracking.trackerbase import TrackerBase

# What a root states of the task's state and outcome (its plan, agent.steps,
# is what it set out to do: read as it opens): on these paths known
# only as of its end (OTLP carries its attributes as they ended), so read
# there, never back-dated onto the rows of its children before it.
STATE_AT_END = frozenset({cv.PROGRESS, cv.STEP, cv.MESSAGE, cv.STATUS, A2A_TASK_STATE})


def as_it_opened(root: SpanData) -> SpanData:
    """An ended root as its task opens before its children are read: without
    its state attributes and results (:data:`STATE_AT_END`), which its end reads."""
    a = root.attributes
    if not a or not any(k in STATE_AT_END or k.startswith(cv.RESULT_PREFIX) for k in a):
        return root
    kept = {k: v for k, v in a.items() if k not in STATE_AT_END and not k.startswith(cv.RESULT_PREFIX)}
    return replace(root, attributes=kept)


class EndOrder(TrackerBase):
    def _claim_buffered(self, key: Key) -> list[Event]:
        """A task its start record opened: what of it waits in its trace's
        buffer is its now (the root itself, held while its ancestry was
        unknown, decided by that record; else the root's buffered subtree)."""
        sub = self._pending.decide(*key)
        return self._emit_subtree(sub) if sub is not None else self._adopt(key[0], key[1], key)

    def _adopt(self, trace_id: str, sid: str, key: Key) -> list[Event]:
        """The buffered descendants of ``sid`` join task ``key``, in the order they arrived."""
        out: list[Event] = []
        for d in self._pending.below(trace_id, sid):  # as they arrived (docs/reference/conventions.md#clock-skew)
            out.extend(self._absorb(key, d, list(d.notes)))
        return out

    def settle(self) -> list[Event]:
        """A delivered batch is read: the traces it held spans of that look
        like an agent run and have no task get their provisional one."""
        prov = self._prov
        if not prov.dirty:
            return []
        out: list[Event] = []
        dirty, prov.dirty = prov.dirty, {}
        for tid in dirty:
            buf = self._pending.buffer(tid)
            if buf is None or not prov.may_open(tid) or self._live_roots.waits_in(tid):
                continue  # (records of its task wait: the live channel names it when it opens)
            stamp = prov.stamp_of(tid)
            if stamp is not None:  # a stamp named its task: that task, never a guess
                if prov.rule.holds(buf):
                    out.extend(self._show_stamped(tid, *stamp))
                continue
            if (
                prov.rule.holds(buf)
                and (sid := named(buf) or guess(buf)) is not None
                and not self._outlived(tid, buf, sid)
            ):
                out.extend(self._show(tid, buf, sid))
            elif buf.calls and not buf.held_back and not buf.held and top_arrived(buf):
                buf.held_back = True  # over, with no task: what the rule kept from every sink
                self.stats.inc("provisional_tasks_total", outcome="held_back")
        return out

    def _open_stamped(
        self, key: Key, stamps: dict[str, Any], resource: Mapping[str, Any], start_ns: int, notes: list[str]
    ) -> list[Event]:
        """Open task ``key`` from a stamp alone (its root unseen): the task's
        ids, and the agent the stamp names (the processor and the helpers copy
        the root's), so every sink shows them from TaskStarted on."""
        opener = SpanData(key[0], key[1], None, "", start_ns, None, stamps, resource=resource)
        out = self._open(key, opener, notes)
        self._tasks[key].identity.unknown_root(stamps)
        self._partial.opened(key, self._clock())
        return out

    def _show_stamped(
        self, tid: str, root_id: str, stamps: dict[str, Any], resource: Mapping[str, Any], start_ns: int
    ) -> list[Event]:
        """Trace ``tid`` looks like an agent run and a stamp of it (on a span
        that opened nothing) named its task: that task opens, under its own
        ids, with what of its root's subtree waited."""
        key = (tid, root_id)
        if key in self._tasks or pair_key(*key) in self._finished or not self.tasks.admits(key):
            return []
        out = self._open_stamped(key, stamps, resource, start_ns, [])
        out.extend(self._claim_buffered(key))
        return out

    def _outlived(self, tid: str, buf: TraceBuffer, sid: str) -> bool:
        """Whether ``sid``, where a task would hang, is a top span that ended
        without being held (no task root): its trace's work outlived it."""
        return sid not in buf.spans and self._prov.ended_top(tid, sid)

    def _show(self, tid: str, buf: TraceBuffer, sid: str) -> list[Event]:
        """Open trace ``tid``'s provisional task under ``sid`` (:func:`.provisional.guess`)."""
        key = (tid, sid)
        datas = mark_below(buf, sid, key, held=True)  # below where it hangs: inside the task, agent spans nested
        if not datas:  # its calls wait under an agent span held below: that span's hold decides
            for entry in buf.spans.values():
                if entry.task == key:
                    entry.task = None
            return []
        p = buf.spans.get(sid)
        if p is None:
            self._pending.placeholder(tid, sid, key)
        else:
            p.task = key  # an agent span held for its ancestry stays held, marked
        buf.task = key
        start = min(d.start_ns for d in datas)
        # The span it hangs from arrived (an agent span held for its ancestry)
        # and names the task's id: the task is shown under it from the start.
        named = p.data.attributes.get(cv.TASK_ID) if p is not None and p.data is not None else None
        attrs = {cv.TASK_ID: named} if named is not None else {}
        opener_span = SpanData(tid, sid, None, "", start, None, attrs, resource=datas[0].resource)
        out = self._open(key, opener_span, [], provisional=True)
        self._tasks[key].root_at = sid
        self._prov.opened(key)
        self.stats.inc("provisional_tasks_total", outcome="shown")
        for d in datas:  # as they arrived
            out.extend(self._absorb(key, d, list(d.notes), is_root=False))
        if p is not None and p.data is not None and not p.candidate and (p.parent_id is None or p.parent_remote):
            out.extend(self._top(key, p.data, list(p.data.notes)))  # the whole run came at once
        return out

    def _provisional(self, key: Key, span: SpanData, notes: list[str], candidate: bool) -> list[Event] | None:
        """A span of a trace whose provisional task ``key`` is open: its
        events when it is the task's, else None (it waits as any span)."""
        buf = self._pending.buffer(span.trace_id)
        if key not in self._tasks or buf is None:  # it ended otherwise (lost, evicted)
            self._release(key)
            return None
        if key[1] in buf.held or span.parent_id in buf.held:
            # Its root (or the agent span above it) arrived and waits for its
            # ancestry: what comes now waits with it (nested, or late), as before.
            return None
        sid = span.span_id
        mine = buf.spans.get(sid)
        if mine is not None and mine.placeholder and mine.task == key:
            return self._anchor(key, buf, span, notes, candidate)
        parent = buf.spans.get(span.parent_id) if span.parent_id is not None else None
        if parent is None or parent.task != key or (candidate and parent.placeholder):
            # Not under the task, or an agent span right under where it hangs:
            # its hold decides (it may be the root beside the task's spans).
            return None
        self._pending.link(span, key)
        out: list[Event] = []
        for d in mark_below(buf, sid, key, held=True):  # what of its subtree waited, as it arrived; then itself
            out.extend(self._absorb(key, d, list(d.notes), is_root=False))
        out.extend(self._absorb(key, span, notes, is_root=False))
        return out

    def _root_waits(self, trace_id: str, root_id: str) -> bool:
        """Whether ``root_id`` is a provisional task's root that arrived and
        waits for its ancestry: its children arriving now wait with it
        (its decision reads them as late, as it would have)."""
        if not self._prov.keys or (trace_id, root_id) not in self._prov.keys:
            return False
        buf = self._pending.buffer(trace_id)
        return buf is not None and root_id in buf.held

    def _anchor(self, key: Key, buf: TraceBuffer, span: SpanData, notes: list[str], candidate: bool) -> list[Event]:
        """The span provisional task ``key`` hangs from arrives."""
        out: list[Event] = []
        if candidate:  # an agent span: the root, unless its hold finds an agent span above it
            for sub in self._pending.hold(span, True, True, task=key):
                out.extend(self._emit_subtree(sub))
            return out
        parent = span.parent_id
        if parent is None or span.parent_remote:  # the trace's top, no agent span above the task: its root
            return self._top(key, span, notes)
        # A plain span with a parent is no root: a member (agent spans held
        # below it are nested), and the task hangs from its parent now, with
        # what waited of the parent's subtree but agent spans (they may be
        # roots beside the task: their holds decide).
        self._pending.link(span, key)
        for d in mark_below(buf, span.span_id, key, held=True):
            out.extend(self._absorb(key, d, list(d.notes), is_root=False))
        if parent not in buf.spans:
            self._pending.placeholder(span.trace_id, parent, key)
            self._tasks[key].root_at = parent  # its step spans hang from there now
            for d in mark_below(buf, parent, key):
                out.extend(self._absorb(key, d, list(d.notes), is_root=False))
        out.extend(self._absorb(key, span, notes, is_root=False))
        return out

    def _top(self, key: Key, top: SpanData, notes: list[str]) -> list[Event]:
        """Provisional task ``key`` ends with its trace's top span as its root."""
        out = self._absorb(key, top_as_root(top), notes, is_root=True)
        self._pending.unmark(key[0], key)
        return out

    def _release(self, key: Key) -> None:
        """Provisional task ``key`` is no longer open: its trace's buffer is
        no longer kept for it (its marks stay: a root that comes later finds
        the task ended, and what it brings is read as late)."""
        self._provisional_ended(key, self._closed.get(key, self._clock()))
        self._pending.release(key)

    def _emit_subtree(self, sub: Subtree) -> list[Event]:
        root = sub.root
        own = (sub.trace_id, root.span_id)
        # A subtree holding a provisional task's spans is that task's: this is its root.
        key = sub.task if sub.task is not None else own
        if pair_key(*key) in self._finished:
            if key != own:  # a provisional task that ended (lost, evicted) before its root came: late
                return [
                    e
                    for d in (*sub.on_time, root, *sub.late)
                    for e in self._late(key, d, list(d.notes), can_cause_events(d))
                ]
            self.stats.inc("duplicate_spans_total", sub.taken)  # the same task resent after it finished
            return []
        notes: list[str] = list(root.notes)
        if sub.nested:  # an agent span nested in a provisional task: its members, as they arrived
            return [e for d in (*sub.on_time, root, *sub.late) for e in self._absorb(key, d, list(d.notes), False)]
        # Its live records may have opened it meanwhile: then it continues.
        out = self._open(key, as_it_opened(root), notes, initial=True) if key not in self._tasks else []
        st = self._tasks[key]
        ended = EndedRoot(root) if root.events and sub.on_time else None
        # As they arrived, never by end times from other clocks (docs/reference/conventions.md#clock-skew).
        for d in sub.on_time:
            # The root's events up to each child's end first, as in-process
            # (only those not read yet: spans/rootevents.py).
            if ended is not None:
                until = d.end_ns or 0
                out.extend(st.absorb(ended.until(until), [], is_root=True, until_ns=until))
            out.extend(self._absorb(key, d, list(d.notes), is_root=False))
        out.extend(self._absorb(key, root, notes, is_root=True))
        out.extend(e for d in sub.late for e in self._late(key, d, list(d.notes), can_cause_events(d)))
        return out
