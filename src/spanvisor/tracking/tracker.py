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

In end order a task may show before its root arrives: after each delivered
batch ``settle`` opens a *provisional task* for a trace whose held spans look
like an agent run, and its spans join it as they land (:mod:`.provisional`).

Both orders give the same event ids and final views. Memory is bounded
(:mod:`.edges`, :mod:`.recent`), every eviction counted. A person's decision
finds its task through :mod:`.taskindex` and is applied by :mod:`.approvals`.
What every way in shares is :mod:`.trackerbase`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking import stalls
from spanvisor.tracking.endorder import EndOrder
from spanvisor.tracking.live import opener
from spanvisor.tracking.provisional import chain_run
from spanvisor.tracking.recent import pair_key
from spanvisor.tracking.taskindex import Key
from spanvisor.tracking.tracebuffer import can_cause_events

# What a stamped descendant that opens its task lends it before the root comes.
_OPENER_KEYS = frozenset({cv.TASK_ID, cv.TASK_ROOT, cv.AGENT_ID})


def _stamps(span: SpanData) -> dict[str, Any]:
    return {k: v for k, v in span.attributes.items() if k in _OPENER_KEYS}


class TaskTracker(EndOrder):
    def add_member(self, span_id: str, parent_id: str) -> bool:
        """Record a started span whose parent is in an open task. False: it is not."""
        key = self._span_task.get(parent_id)
        if key is None or key not in self._tasks:
            return False
        self._span_task[span_id] = key
        self.tasks.stalls.touch(key, self._clock())  # a span starting is activity too
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
        self._roots.keep_only(self._live)
        for key, live in list(self._live.items()):
            cur = self._roots.cursor(key, live)  # its new events before the whole root
            snap = snapshot(live)
            if snap is None or snap.end_ns is not None:
                continue  # its end arrives through span_ended
            st = self._tasks.get(key)
            if st is not None:
                if cur is not None:
                    snap = self._roots.polled(cur, snap, st.last_ns, now)
                if stalls.root_moved(st, snap):  # a checkpoint on the root is activity too
                    out.extend(self.tasks.alive(key, st, now))
                out.extend(st.absorb(snap, [], is_root=True, now_ns=now))
        return out

    # -- the live channel (every path; spans/live.py) ---------------------------

    def live(self, facts: Iterable[LiveFact]) -> list[Event]:
        """Live-channel records: facts of open roots, each read as a poll of
        its root at the record's time (:mod:`.live`)."""
        out: list[Event] = []
        for fact in facts:
            key = (fact.trace_id, fact.root_span_id)
            if self._prov.by_trace and key not in self._tasks:
                # Its trace's provisional task (shown before this record came): the record's root speaks for it.
                key = self._prov.by_trace.get(fact.trace_id, key)
            if key in self._live or fact.name == cv.EVENT_EXCEPTION:  # polled here: all but an exception said
                out.extend(self.tasks.exception_record(key, fact))
                continue
            st = self._tasks.get(key)
            if st is None:
                if pair_key(*key) in self._finished:
                    self.stats.inc("live_records_total", outcome="late")  # its root's end said it all
                    continue
                revived = self.tasks.revive(key, fact.time_ns)
                if revived is None:
                    out.extend(self._live_open(key, fact))
                    continue
                out.extend(revived)
                st = self._tasks[key]
            self.stats.inc("live_records_total", outcome="read")
            out.extend(self.tasks.live_read(key, st, fact))
        return out

    def _live_open(self, key: Key, fact: LiveFact) -> list[Event]:
        """A record of a task not open here. Its start record (this one, or
        one that waits) opens it, when the table admits it (a flood of
        start records never pushes out work in progress: tasktable.admits);
        else the record waits for its task (tracking/live.py)."""
        start = fact if fact.name == cv.LIVE_TASK_START else self._live_roots.start_of(key)
        if start is None or not self.tasks.admits(key):
            self.stats.inc("live_records_total", outcome="waiting" if start is None else "refused")
            self._live_roots.wait(key, fact, self._clock())
            return []
        self.stats.inc("live_records_total", outcome="opened")
        out = self._open(key, opener(start), [], initial=True, unconfirmed=start is fact, heard_ns=start.heard_ns)
        self.tasks.keyed(key, self._tasks[key], start)
        self.tasks.records_only[key] = self._clock()
        if start is not fact:
            out.extend(self.tasks.live_read(key, self._tasks[key], fact))
        out.extend(self._claim_buffered(key))
        return out

    # -- in end order (every path) ---------------------------------------------

    def span_ended(self, span: SpanData) -> list[Event]:
        content = can_cause_events(span)
        if content:
            # Only spans that can cause events use the dedup window: the
            # keyless majority would otherwise push real ones out of it
            # within seconds. A resent keyless span changes nothing anyway.
            sid = span.span_id
            seen: Any = span.trace_id + sid if len(sid) == 16 else (span.trace_id, sid)
            proof = span.attributes.get(cv.SESSION_PROOF)
            if proof is not None:
                # A launched task's end with its launcher's proof is not the
                # repeat of a claimed end under the same ids (launcherend.py).
                seen = (seen, str(proof)[:80])
            if not self._seen.remember(seen):
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
                st = self._tasks.get(key)
                snap = None if st is None else self._roots.until(key, live, span.end_ns) or self.snapshot(live)
                if snap is not None and st is not None:
                    out.extend(st.absorb(snap, [], is_root=True, until_ns=span.end_ns))
            out.extend(self._absorb(key, span, notes))
            return out
        root_id = span.attributes.get(cv.TASK_ROOT)
        if isinstance(root_id, str) and root_id:
            return self._stamped(span, root_id.lower()[:32], notes, content)
        own = (span.trace_id, span.span_id)
        if (own in self._tasks and own not in self._prov.keys) or self._partial.is_dormant(own):
            # The unstamped root of a task its stamped children (or its live
            # records) opened: it joins that task (stamps are optional for
            # OTLP senders), after its descendants still buffered.
            revived = self.tasks.revive(own, span.start_ns) or []
            return [*revived, *self._adopt(span.trace_id, span.span_id, own), *self._absorb(own, span, notes)]
        parent = span.parent_id
        if (
            parent is not None
            and (span.trace_id, parent) in self._tasks
            and not self._root_waits(span.trace_id, parent)
        ):
            # A child of an open task's root: it is the task's now, and so is
            # what of its subtree ended before it.
            key = (span.trace_id, parent)
            return [*self._adopt(span.trace_id, span.span_id, key), *self._absorb(key, span, notes)]
        return self._unstamped(span, notes, content)

    def _stamped(self, span: SpanData, root_id: str, notes: list[str], content: bool) -> list[Event]:
        key = (span.trace_id, root_id)
        # Every way into _tasks checks the finished record first: most spans build no key.
        if key not in self._tasks and pair_key(span.trace_id, root_id) in self._finished:
            return self._late(key, span, notes, content)
        out: list[Event] = []
        if key not in self._tasks:
            revived = self.tasks.revive(key, span.start_ns)
            if revived is not None:
                out.extend(revived)
            elif span.span_id == root_id:
                out.extend(self._open(key, span, notes))
            elif not content and cv.TASK_NAME not in span.attributes:
                # A descendant that can cause no event opens nothing: under
                # spraying most spans are such, and a replica would otherwise
                # open (and announce) every task it gets one of them from. One
                # that names the task (`spanvisor emit start`; the processor
                # never stamps the name) announces it. Its stamp is kept: should
                # the trace's unstamped spans look like an agent run, its task
                # opens under the stamped ids, never a provisional guess (settle).
                self._prov.stamped(span.trace_id, root_id, _stamps(span), span.resource, span.start_ns)
                return []
            elif not self.tasks.admits(key):
                return []  # at capacity, every open task live: refused (counted), as a start record is
            else:
                # A descendant arrived first: open from the task's ids alone; the span's own identity fills
                # gaps until the root arrives. The stamp names the task's agent (the processor and the
                # helpers copy the root's): every sink shows it from TaskStarted on, not the service.name.
                out.extend(self._open_stamped(key, _stamps(span), span.resource, span.start_ns, notes))
        out.extend(self._absorb(key, span, notes))
        return out

    def _unstamped(self, span: SpanData, notes: list[str], content: bool) -> list[Event]:
        a = span.attributes
        candidate = bool(a) and cv.is_root_candidate(a)
        if not candidate and span.parent_id is None and (run := chain_run(span, self._pending.buffer(span.trace_id))):
            span, candidate = run, True  # a framework's top-level run (tracebuffer.chain_run)
        interesting = candidate or content
        parent = span.parent_id  # pair_key inlined below: nearly every plain span comes here
        done = parent is not None and (span.trace_id + parent if len(parent) == 16 else (span.trace_id, parent))
        if parent is not None and done in self._finished:
            # A child of a task that has already finished (a Collector retry
            # reordered batches): late, and never a task of its own.
            return self._late((span.trace_id, parent), span, notes, content)
        if parent is None or span.parent_remote:
            self._prov.top_ended(span.trace_id, span.span_id)  # one a trace
        if not interesting and not self._pending.waiting(span.trace_id):
            return []  # the fast path: most spans end here
        if self._prov.by_trace and (prov := self._prov.by_trace.get(span.trace_id)) is not None:
            joined = self._provisional(prov, span, notes, candidate)
            if joined is not None:
                return joined
        out: list[Event] = []
        top = parent is None or span.parent_remote  # kept whole: a provisional task's root, maybe
        for sub in self._pending.hold(span, interesting, candidate, keep=top):
            out.extend(self._emit_subtree(sub))
        self._prov.touched(span.trace_id)
        return out

    def expire(self) -> list[Event]:
        """Release held roots past their deadline, forget stale buffers, put
        idle partial tasks to sleep, forget old closed ones, say stalls and
        lose the silent (:mod:`.tasktable`)."""
        out = self.tasks.expire()
        for sub in self._pending.expire(self._clock()):
            out.extend(self._emit_subtree(sub))
        for key in [k for k in self._prov.keys if k not in self._tasks]:
            self._release(key)  # lost, evicted, or failed without its root
        return out
