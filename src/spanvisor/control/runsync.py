"""What this process's tracker learns of runs, written to the shared control
log so that every replica judges a decision by the same facts.

The pipeline shows every event it dispatches to :meth:`RunSync.observe`
(O(1) per event, on the pipeline's loop): a run that starts, an approval
request that opens (or closes without an answer), a run that ends. Those
facts are merged per run and written by :meth:`RunSync.flush`, in the
background and before every decision is judged (so a decision on a request
this process has just seen never finds the store behind).

:meth:`RunSync.sweep` closes requests whose timeout has passed, in the store
(whichever replica holds the task, or none: an agent that died) and in this
process's view of the task, so the buttons go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spanvisor.control import floors, moved, reasked, runs
from spanvisor.control.log import NAMESPACE, RUNS_NAMESPACE, ControlLog, listing
from spanvisor.events import ApprovalRequest, Checkpoint, Event, HumanIntervention, TaskFinished, TaskView
from spanvisor.gate import taskids
from spanvisor.tracking import approvals
from spanvisor.tracking.openers import IGNORED_NOTE

if TYPE_CHECKING:
    from spanvisor.tracking.tracker import TaskTracker

_log = logging.getLogger("spanvisor.control")

# Runs whose facts this process remembers having written (the oldest go first).
MAX_KNOWN = 20_000
# Runs waiting to be written; beyond, the oldest are dropped (counted in
# spanvisor_dropped_total{reason="control_log_behind"}, logged once).
MAX_PENDING = 50_000
# Runs without approval requests written side by side (RunSync._side_by_side).
WRITE_AT_ONCE = 256
# The same in one transaction, with a store that batches (the local store).
WRITE_IN_ONE = 256


def _ids_of(view: TaskView) -> TaskView:
    """What writing a run's facts reads of its view (its ids, agent and
    start): a run waiting to be written must not keep the whole view alive
    (its strings and the decoded span's values, about 1.5 KB; a backlog of
    tens of thousands of runs under sustained load held tens of MB)."""
    return TaskView(
        view.task_id,
        view.trace_id,
        view.root_span_id,
        view.agent_id,
        run_id=view.run_id,
        started_ns=view.started_ns,
        former_id=view.former_id,
    )


@dataclass(slots=True)
class _Pending:
    view: TaskView  # only its ids (_ids_of) once the run has ended
    # None and an empty frozenset until a request opens or closes (most runs
    # have none): a backlog of runs waiting to be written holds no empty
    # dict and set each.
    opened: dict[str, ApprovalRequest] | None = None
    gone: frozenset[str] = frozenset()
    outcome: str | None = None
    ended_ns: int = 0
    # Its record was created but not yet added to its task's list of runs
    # (the add failed after the record was written: the retry finds the
    # record, so it must remember to add it).
    unlisted: bool = False
    # Whose word its end was (runs.agent_ends): a CLI's session the
    # launcher did not start; the keys its start records named here
    # (tracking.launcherend: the first, then any other); and its end here
    # carried the secret of the key this replica held. Facts only ever
    # added to the record, never taken away: a replica that saw no key (the
    # start record went to another) does not undo one that did, and a key
    # the agent named on another replica joins the launcher's.
    session: bool = False
    keys: tuple[str, ...] = ()
    proved: bool = False
    # The id its task was shown under before its root named another
    # (moved.former_of): its record moves from there before it is written,
    # and a decision naming that id waits for its facts too.
    former: str | None = None


# What is known of a run: its open requests (approval id, digest) while it
# runs (most runs: the one empty frozenset), then _FINISHED, or _ASKED when
# it ended with requests open (its write still touches the shared open list).
# A value, not an object a run: with the plain dict about 100 bytes an open
# task less.
_FINISHED = None
_ASKED = "asked"
_Known = frozenset[tuple[str, str]] | str | None
_UNSEEN: Any = object()
# One empty frozenset for every run without requests (Python makes a new one,
# 216 bytes, for each ``frozenset()``).
_NO_REQUESTS: frozenset[tuple[str, str]] = frozenset()


class RunSync:
    def __init__(self, tracker: TaskTracker, dispatch: Callable[[list[Event]], None]) -> None:
        self._tracker = tracker
        self._dispatch = dispatch
        # Oldest first. OrderedDict: evicting a plain dict's first key scans
        # the holes its earlier evictions left, O(n) an eviction once full.
        self._known: OrderedDict[tuple[str, str], _Known] = OrderedDict()
        self._pending: dict[tuple[str, str], _Pending] = {}
        # Runs renamed by their root whose records this process moved
        # (ControlLog.move; the oldest go first: a move repeated is a read).
        self._moved: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._urgent = False
        # One batch of writes at a time: a catch-up, a decision's own flush
        # and a sweep run on the same loop, and two updates of one record in
        # flight at once would each read the other's old value (the state
        # store keeps the later write whole).
        self._writing: asyncio.Lock | None = None
        tracker.stats.gauge("control_runs_waiting", lambda: float(len(self._pending)))

    def _lock(self) -> asyncio.Lock:
        if self._writing is None:
            self._writing = asyncio.Lock()
        return self._writing

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def urgent(self) -> bool:
        """A request opened or closed since the last write: written at once (a
        person may be shown it any moment); runs starting and ending wait for
        the next round, so a short task's start and end are one write."""
        return self._urgent

    def observe(self, events: Iterable[Event]) -> None:
        for ev in events:
            v = ev.task
            if not v.run_id or isinstance(ev, HumanIntervention):
                continue
            if isinstance(ev, Checkpoint) and ev.attributes and IGNORED_NOTE in ev.attributes:
                # Another task's note on this run's request: it stays open (tracking.openers).
                self._tracker.stats.inc("approval_notes_ignored_total")
            key = (v.task_id, v.run_id)
            known = self._known.get(key, _UNSEEN)
            if known is _UNSEEN:
                known = self._known[key] = self._renamed(key, v)
                p = self._pending_of(key, v)
                self._starter(p, v)
                if len(self._known) > MAX_KNOWN:
                    self._known.popitem(last=False)
            elif not isinstance(known, frozenset):
                continue  # ended
            if v.approvals or known:
                now = frozenset((r.approval_id, r.digest) for r in v.approvals)
                if now != known:
                    p = self._pending_of(key, v)
                    for r in v.approvals:
                        if (r.approval_id, r.digest) not in known:
                            if p.opened is None:
                                p.opened = {}
                            p.opened[r.approval_id] = r
                    p.gone |= {aid for aid, _ in known} - {r.approval_id for r in v.approvals}
                    self._known[key] = now
                    self._urgent = True
            if isinstance(ev, TaskFinished):
                p = self._pending_of(key, v)
                # The tracker lets go of a finished task's view: here only
                # its ids stay (an open task's view is the tracker's too).
                p.view = _ids_of(v)
                p.outcome, p.ended_ns = ev.outcome, ev.time_ns
                self._starter(p, v, ended=True)
                self._known[key] = _ASKED if self._known[key] else _FINISHED

    def _renamed(self, key: tuple[str, str], v: TaskView) -> _Known:
        """A run first seen under the id its root named (``v.former_id``: the
        one it was shown under): what was known and waits to be written of
        it under the old id goes with it (its open requests are not offered
        again), and its record moves before its next write."""
        former = moved.former_of(v)
        if former is None:
            return _NO_REQUESTS
        old = (former, v.run_id)
        p = self._pending_of(key, v)
        p.former = former
        was = self._pending.pop(old, None)
        if was is not None:
            _absorb(p, was)
        known = self._known.pop(old, _NO_REQUESTS)
        return known if isinstance(known, frozenset) else _NO_REQUESTS

    def _rekeyed(self) -> None:
        """Runs a start record keyed, or named a rival key of, after their
        first event: no event said so, and their keys must reach the shared
        record before the run's end (an agent that keyed the task first on
        one replica ends it with its own proof on another)."""
        for st in self._tracker.rekeyed():
            w = st.working
            if w.run_id:
                v = st.view
                self._starter(self._pending_of((w.task_id, w.run_id), v), v)

    def _starter(self, p: _Pending, v: TaskView, ended: bool = False) -> None:
        """What this replica knows of who may end the run: at its first event
        and at its end (a key named meanwhile). One lookup by the run's own
        ids; the session test hashes its ids (a few microseconds a run)."""
        p.session = p.session or taskids.is_session(v.task_id, v.trace_id, v.root_span_id)
        st = self._tracker.state_at((v.trace_id, v.root_span_id))
        launcher = st.launcher if st is not None else None
        if launcher is not None:
            p.keys = tuple(dict.fromkeys((*p.keys, launcher.key, *launcher.rivals)))
            p.proved = p.proved or (ended and launcher.proved)

    def _pending_of(self, key: tuple[str, str], view: TaskView) -> _Pending:
        p = self._pending.get(key)
        if p is None:
            p = self._pending[key] = _Pending(view)
            if len(self._pending) > MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
                self._tracker.stats.drop(
                    "control_log_behind", detail="the state store is behind: facts of the oldest runs waiting"
                )
        else:
            p.view = view
        if view.former_id is not None and p.former is None:
            p.former = moved.former_of(view)
        return p

    async def flush(self, log: ControlLog, task_id: str | None = None) -> None:
        """Write every fact seen so far (only the runs of ``task_id`` when
        given: a decision waits for its own task's facts, not a backlog);
        what fails stays for the next round."""
        self._rekeyed()
        if task_id is None:
            self._urgent = False
        else:
            # A round already under way may have taken this task's runs and
            # be writing them: they are no longer waiting here, yet not in
            # the store. Its batch ends first, so the decision reads them.
            async with self._lock():
                pass
        keys = [k for k, p in self._pending.items() if task_id is None or task_id in (k[0], p.former)]
        while keys:
            # Locked a batch at a time, not the whole flush: a decision's own
            # flush waits for one batch of a long catch-up, not all of it.
            async with self._lock():
                batch, quiet = self._side_by_side(keys, log.batches)
                keys = keys[len(batch) :]
                pending = [(k, p) for k in batch if (p := self._pending.pop(k, None)) is not None]
                if quiet and log.batches:
                    try:
                        await self._write_together(log, [p for _, p in pending])
                    except BaseException:
                        self._merge_back(pending)
                        raise
                    continue
                done = await asyncio.gather(*(self._write(log, p) for _, p in pending), return_exceptions=True)
                failed = [(k, p, e) for (k, p), e in zip(pending, done, strict=True) if isinstance(e, BaseException)]
                if failed:
                    self._merge_back([(k, p) for k, p, _ in failed])
                    raise failed[0][2]

    def _side_by_side(self, keys: list[tuple[str, str]], in_one: bool) -> tuple[list[tuple[str, str]], bool]:
        """The first runs of ``keys`` that may be written at once, and whether
        they are all quiet: each write waits for the pipeline's loop a few
        times, so one at a time a busy loop fell behind the runs it finishes
        (tens of thousands waiting, and their facts dropped past
        MAX_PENDING). Runs without approval requests touch only their own
        record and their task's list of runs: up to WRITE_AT_ONCE of those,
        one per task id, or up to WRITE_IN_ONE in one transaction of a store
        that batches (``in_one``: applied in order, so a task id may repeat).
        A run with requests (they share the open list) is written alone, in
        order."""
        batch: list[tuple[str, str]] = []
        tasks: set[str] = set()
        for key in keys[: WRITE_IN_ONE if in_one else WRITE_AT_ONCE]:
            p, known = self._pending.get(key), self._known.get(key)
            asked = known == _ASKED or (isinstance(known, frozenset) and known)
            moving = p is not None and p.former is not None and key not in self._moved
            quiet = p is None or not (p.opened or p.gone or asked or moving)
            if not quiet or (key[0] in tasks and not in_one):
                return (batch, True) if batch else ([key], quiet)
            batch.append(key)
            tasks.add(key[0])
        return batch, True

    def _merge_back(self, failed: list[tuple[tuple[str, str], _Pending]]) -> None:
        """Runs whose write failed go back first, with what was seen of them
        meanwhile: one rebuild of the waiting runs, however many failed (a
        rebuild per run blocked the loop for a backlog of tens of thousands)."""
        back: dict[tuple[str, str], _Pending] = {}
        for key, p in failed:
            later = self._pending.pop(key, None)
            if later is not None:
                p.view = later.view
                _absorb(p, later)
            back[key] = p
        self._pending = {**back, **self._pending}

    async def _write_together(self, log: ControlLog, pending: list[_Pending]) -> None:
        """Quiet runs' records and their places in their tasks' lists of runs,
        in one transaction of the store: one wait for the loop and a few for
        the GIL, for up to WRITE_IN_ONE runs."""
        now = time.time_ns()
        updates: list[tuple[str, str, Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, Any]]]] = []
        for p in pending:
            v = p.view
            updates.append((NAMESPACE, runs.run_key(v.task_id, v.run_id), _unless_moved(_record_change(p, [], now))))
            updates.append((RUNS_NAMESPACE, v.task_id, listing(v.run_id, v.started_ns)))
        results = await log.update_many(updates)
        closed = set()
        elsewhere = []
        for p, got in zip(pending, results[::2], strict=True):
            if isinstance(got, moved.Moved):  # under an id its root renamed: written where it went
                elsewhere.append(p)
                continue
            p.unlisted = False
            closed |= {(p.view.run_id, aid) for aid in got[1]}
        if closed:  # requests another process listed, closed by the run's end
            await log.unlist(closed)
        for p in elsewhere:
            await self._write(log, p)

    async def _write(self, log: ControlLog, p: _Pending) -> None:
        v = p.view
        key = (v.task_id, v.run_id)
        if p.former is not None and key not in self._moved:
            await log.move(v, p.former)
            self._moved[key] = None
            if len(self._moved) > MAX_KNOWN:
                self._moved.popitem(last=False)
        opened = [r for r in (p.opened or {}).values() if r.approval_id not in p.gone]
        now = time.time_ns()
        change = _record_change(p, opened, now)
        fresh, closed = await log.update_run(v.task_id, v.run_id, change)
        if change.refused:
            # The record keeps its first copy: the open list must not take the
            # refused one either (its timeout is what the sweep expires by).
            self._refused(v, change.refused)
            opened = [r for r in opened if r.approval_id not in change.refused]
        if fresh:
            p.unlisted = True
        if p.unlisted:
            await log.add_run(v.task_id, v.run_id, v.started_ns)
            p.unlisted = False
        asked = [r for r in opened if not r.policy_denied]
        if asked and p.outcome is None:
            # Under the id its record is kept under: a replica that saw only a
            # renamed task's earlier events lists them under its new id.
            await log.list_open(change.home or v.task_id, v.run_id, v.agent_id, asked)
        if len(asked) < len(opened):
            self._denied(v, [r for r in opened if r.policy_denied])
        if closed or p.gone:
            await log.unlist({(v.run_id, aid) for aid in (*closed, *p.gone)})

    def _refused(self, v: TaskView, refused: dict[str, str]) -> None:
        """Copies of open requests with other content, refused: counted, and
        logged (the record keeps each, runs.offer_request)."""
        for why in refused.values():
            self._tracker.stats.inc("approval_requests_refused_total", reason="changed")
            _log.warning("task %s run %s: %s (spanvisor_approval_requests_refused_total)", v.task_id, v.run_id, why)

    def _denied(self, v: TaskView, denied: list[ApprovalRequest]) -> None:
        """Requests the central policy denies, recorded decided: their
        rejection announced once here (the audit row, the thread line), and
        closed in this process's view of the task."""
        open_states, closed_states = self._tracker.states_of(v.task_id)
        st = approvals.find(open_states, (), v.task_id, v.run_id)
        for r in denied:
            if st is not None and approvals.is_open(st, r.approval_id):
                d = floors.policy_decision(r, v.task_id, v.run_id)
                self._dispatch([approvals.as_event(open_states, closed_states, d, "applied", None, request=r)])

    async def sweep(self, log: ControlLog) -> None:
        """Close the requests whose timeout has passed (or whose run ended),
        everywhere; drop what is no longer open from the open list."""
        async with self._lock():  # not beside a flush's writes of the same records
            await self._sweep(log)

    async def _sweep(self, log: ControlLog) -> None:
        now = time.time_ns()
        done: set[tuple[str, str]] = set()
        for item in await log.open_list():
            task_id, run_id, aid = item.get("task_id"), item.get("run_id"), item.get("approval_id")
            if not (isinstance(task_id, str) and isinstance(run_id, str) and isinstance(aid, str)):
                continue
            r = runs.request_from_dict(item)
            end = runs.expires_ns(r) if r is not None else None
            if end is None or end > now:
                continue  # still open (or open until its run ends); decisions and ends unlist it

            def change(rec: dict[str, Any] | None, aid: str = aid) -> tuple[dict[str, Any] | None, bool]:
                if rec is None:
                    return None, False
                return (
                    (rec, True) if runs.close_request(rec, aid, "expired", now, "its timeout passed") else (None, False)
                )

            await log.update_run(task_id, run_id, change)
            done.add((run_id, aid))
            self.close_here(task_id, run_id, [aid], now)
        await log.unlist(done)

    def close_here(self, task_id: str, run_id: str, approval_ids: Iterable[str], now_ns: int) -> None:
        """Close requests the store says are expired in this process's view."""
        st = approvals.find(self._tracker.states_of(task_id)[0], (), task_id, run_id)
        if st is None:
            return
        out: list[Event] = [cp for cp in (approvals.expire(st, aid, now_ns) for aid in approval_ids) if cp is not None]
        self._dispatch(out)


class _RecordChange:
    """What a run's facts change in its record: created if new, ``opened``
    requests added, requests gone closed, finished; called with the stored
    record, it answers (fresh, closed ids) and remembers the copies of
    known requests it refused (approval id -> why: runs.offer_request)."""

    def __init__(self, p: _Pending, opened: list[ApprovalRequest], now: int) -> None:
        self.p, self.opened, self.now = p, opened, now
        self.refused: dict[str, str] = {}
        self.home: str | None = None  # the task id the record is kept under

    def __call__(self, rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, tuple[bool, list[str]]]:
        p, now = self.p, self.now
        v = p.view
        fresh = rec is None
        rec = runs.new_record(v) if rec is None else rec
        self.home = str(rec.get("task_id") or v.task_id)
        changed = fresh
        closed: list[str] = []
        self.refused = {}  # a compare-and-set retried runs this again on the newer record
        for r in self.opened:
            got = runs.offer_request(rec, r, now)
            changed = got in ("added", "raised", "refused") or changed
            if got == "refused":
                self.refused[r.approval_id] = str(reasked.refusals_of(rec)[-1].get("reason") or "")
        for aid in p.gone:
            # Closed by the agent's own note (its timeout, or the answer it
            # read): no decision may land on it after.
            if runs.close_request(rec, aid, "expired", now, "the agent stopped waiting"):
                closed.append(aid)
        for fact in ("session", "proved"):
            if getattr(p, fact) and not rec.get(fact):
                rec[fact], changed = True, True
        if p.keys:
            have = runs.keys_of(rec)
            keys = [*have, *(k for k in p.keys if k not in have)][: runs.MAX_KEYS]
            if keys != have:
                rec["keys"], changed = keys, True
        if p.outcome is not None and runs.state_of(rec) == "running":
            closed += runs.finish(rec, p.outcome, p.ended_ns or now)
        return (rec if changed or closed or p.outcome is not None else None), (fresh, closed)


def _record_change(p: _Pending, opened: list[ApprovalRequest], now: int) -> _RecordChange:
    return _RecordChange(p, opened, now)


def _unless_moved(
    change: _RecordChange,
) -> Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, tuple[bool, list[str]] | moved.Moved]]:
    """``change``, unless the key holds a renamed task's alias (moved.py)."""

    def guarded(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, tuple[bool, list[str]] | moved.Moved]:
        to = moved.target(rec)
        return (None, moved.Moved(to, rec)) if to is not None and rec is not None else change(rec)

    return guarded


def _absorb(p: _Pending, later: _Pending) -> None:
    """What was seen of a run in ``later`` added to ``p`` (facts only ever
    add up: a request opened or gone, an end, a key, a proof)."""
    if later.opened:
        p.opened = {**(p.opened or {}), **later.opened}
    p.gone |= later.gone
    p.outcome, p.ended_ns = later.outcome or p.outcome, later.ended_ns or p.ended_ns
    p.session, p.proved = p.session or later.session, p.proved or later.proved
    p.keys = tuple(dict.fromkeys((*p.keys, *later.keys)))
    p.unlisted = p.unlisted or later.unlisted
    p.former = p.former or later.former


__all__ = ["RunSync"]
