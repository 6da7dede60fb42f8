"""The pipeline's :class:`spanvisor.control.Control`: people's decisions,
judged against the shared record of the run they name (its state, its open
requests and their questions: :mod:`spanvisor.control.runs`), recorded
once in the control log and announced to every sink as a
``HumanIntervention``, or refused and audited with the reason.

What this process knows of a task is never a reason to apply a decision:
every replica reads the same record. What it learns of runs reaches that
record through :class:`~spanvisor.control.runsync.RunSync`, written
before each decision is judged.

Everything runs on the pipeline's loop (the tracker is that thread's alone);
callers on other loops or threads are hopped over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from spanvisor.control import budgetstop, faults, grants, runs
from spanvisor.control.hub import Verdict, VerdictOutcome
from spanvisor.control.log import ControlLog
from spanvisor.control.runs import RefusalCode
from spanvisor.control.runsync import RunSync
from spanvisor.events import Decision, Event, InterventionOutcome, TaskView
from spanvisor.tracking import approvals

if TYPE_CHECKING:
    from spanvisor.tracking.tracker import TaskTracker

T = TypeVar("T")
logger = logging.getLogger("spanvisor.control")
# Longest a caller on another loop waits for the pipeline's (a long-poll's
# own wait is at most 60 s).
HOP_TIMEOUT_S = 90.0
# How often runs held here re-read their record (decisions and expiries other
# processes recorded), and the store is swept for expired requests.
CATCH_UP_S = 0.5
who = runs.who
describe = runs.describe


class PipelineControl:
    def __init__(
        self,
        tracker: TaskTracker,
        dispatch: Callable[[list[Event]], None],
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self._tracker = tracker
        self._dispatch = dispatch
        self._loop = loop
        self.log: ControlLog | None = None
        self._log_ready: asyncio.Event | None = None
        self.sync = RunSync(tracker, dispatch)
        self._flushing: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()  # budgets' cancels being judged

    def observe(self, events: list[Event]) -> None:
        """Every event the pipeline dispatches (on its loop): facts of runs,
        written at once in the background (and before any decision). None
        without a control log (a state store that cannot compare-and-set).
        A budget set to stop that was reached: its cancel, judged as a person's."""
        budgetstop.follow(events, lambda d: self._decide(d, None, None), self._stopping)
        if self.log is None:
            return
        self.sync.observe(events)
        if self.log is not None and self.sync.urgent and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self._flush_quietly(self.log))

    async def _flush_quietly(self, log: ControlLog) -> None:
        try:
            while self.sync.urgent:  # a request seen while writing: written now too
                await self.sync.flush(log)
        except Exception as exc:  # a store outage: the catch-up loop tries again
            logger.debug("writing facts of runs failed: %s", exc)

    def attach(self, log: ControlLog) -> None:
        """Called on the pipeline loop once the state store is open."""
        self.log = log
        log.floor = self._tracker.settings.floor
        if self._log_ready is None:
            self._log_ready = asyncio.Event()
        self._log_ready.set()
        self._sync = asyncio.get_running_loop().create_task(self._catch_up_loop())

    async def _catch_up_loop(self) -> None:
        """Facts written, decisions other processes recorded applied to the
        runs held here, expired requests closed: about every CATCH_UP_S."""
        while True:
            await asyncio.sleep(CATCH_UP_S)
            try:
                await self.catch_up()
            except Exception as exc:  # a store outage: try again next round
                logger.debug("catching up on decisions failed: %s", exc)

    async def catch_up(self) -> None:
        assert self.log is not None
        await self.sync.flush(self.log)
        for key, task_id, run_id in self._tracker.records_only_quiet():
            # Only its live records came here; its spans, and its end, may
            # have gone to another replica (a Collector that routes logs and
            # spans apart): finished there, it is no longer open here, and
            # no stall or loss is said of it.
            if runs.state_of(await self.log.record(task_id, run_id)) not in (None, "running"):
                self._tracker.finished_by_another_replica(key)
        held = [s for s in self._tracker.states()[0] if s.working["approvals"]]
        standing = grants.grants_of(await self.log.store.get(grants.NAMESPACE, grants.KEY)) if held else []
        for st in held:
            w = st.working
            if standing:
                await self._by_grant(w["task_id"], w["run_id"], standing)
            rec = await self.log.record(w["task_id"], w["run_id"])
            out: list[Event] = []
            for d in runs.decisions_of(rec):
                cp = approvals.catch_up(st, d)
                if cp is not None:
                    out.append(cp)
            self._dispatch(out)
            now = time.time_ns()
            gone = [aid for aid, r in runs.requests_of(rec).items() if r.get("state") == "expired"]
            self.sync.close_here(w["task_id"], w["run_id"], gone, now)
        await self.sync.sweep(self.log)

    async def _by_grant(self, task_id: str, run_id: str, standing: list[grants.Grant]) -> None:
        """Approve the run's open requests that a live grant covers (and no
        person has started to approve), as the grant's decision."""
        assert self.log is not None
        rec = await self.log.record(task_id, run_id)
        now = time.time_ns()
        agent = str((rec or {}).get("agent_id") or "")
        # The id its record is kept under, and the one a renamed task showed
        # under before (a grant given for the run then names that one): the
        # grant's decision is the same on every replica, whichever id it holds.
        task_id = str((rec or {}).get("task_id") or task_id)
        former = (rec or {}).get("former_id")
        for req in runs.open_requests(rec, now):
            g = grants.find(standing, req, agent, task_id, run_id, now, former if isinstance(former, str) else None)
            if g is not None and not runs.votes_of(runs.requests_of(rec)[req.approval_id]):
                await self._decide(grants.decision(g, req, task_id, run_id, now), None, None, granted=True)

    async def list_grants(self) -> list[grants.Grant]:
        async def go() -> list[grants.Grant]:
            log = await self._ready_log()
            return grants.grants_of(await log.store.get(grants.NAMESPACE, grants.KEY))

        return await self._hop(go)

    async def add_grant(self, g: grants.Grant) -> bool:
        """Keep ``g``; False when the most grants allowed are live already."""

        async def go() -> bool:
            log = await self._ready_log()
            return bool(await log.update(grants.NAMESPACE, grants.KEY, lambda v: grants.add(v, g, time.time_ns())))

        return await self._hop(go)

    async def revoke_grant(self, grant_id: str, by: str) -> grants.Grant | None:
        async def go() -> grants.Grant | None:
            log = await self._ready_log()
            return await log.update(
                grants.NAMESPACE, grants.KEY, lambda v: grants.revoke(v, grant_id, by, time.time_ns())
            )

        return await self._hop(go)

    async def close(self) -> None:
        for task in [getattr(self, "_sync", None), *self._stopping]:  # a budget's cancel not yet recorded: logged
            if task is not None:
                task.cancel()

    async def _hop(self, fn: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the pipeline is not running")
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            return await fn()

        async def run() -> T:
            return await fn()

        # Bounded: a pipeline loop that stops first must not leave the caller
        # (a control API handler, the Slack intake) waiting for ever.
        coro = run()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the pipeline's loop closed meanwhile (serve stopping)
            coro.close()
            raise RuntimeError("the pipeline is not running") from None
        return await asyncio.wait_for(asyncio.wrap_future(future), HOP_TIMEOUT_S)

    async def _ready_log(self) -> ControlLog:
        if self.log is None:
            if self._log_ready is None:
                self._log_ready = asyncio.Event()
            await asyncio.wait_for(self._log_ready.wait(), 30)
        assert self.log is not None
        return self.log

    def announce(self, d: Decision, v: Verdict) -> None:
        outcome: InterventionOutcome = "applied" if v.outcome == "applied" else "denied"
        open_states, closed_states = self._tracker.states_of(d.task_id)
        ev = approvals.as_event(
            open_states,
            closed_states,
            d,
            outcome,
            v.reason,
            request=v.request,
            code=v.code,
            votes=v.votes,
            votes_needed=v.votes_needed,
        )
        self._dispatch([ev])

    async def decide(
        self, decision: Decision, *, denied: str | None = None, code: RefusalCode | None = None
    ) -> Verdict:
        return await self._hop(lambda: self._decide(decision, denied, code))

    async def _resolve(self, log: ControlLog, d: Decision) -> Decision | None:
        """``d`` with its run named: the one given, else the task id's latest
        run (for an answer, the latest that asked that approval id). None:
        no run of that task is known anywhere."""
        if d.run_id:
            return d if await log.record(d.task_id, d.run_id) is not None else None
        known = await log.runs_of(d.task_id)
        if not known:
            return None
        pick = known[-1]
        if d.action in ("approve", "reject") and d.approval_id:
            asked = []
            for run_id in reversed(known):
                req = runs.requests_of(await log.record(d.task_id, run_id)).get(d.approval_id)
                if req is not None:
                    asked.append((req.get("state") == "open", run_id))
            pick = next((r for ok, r in asked if ok), asked[0][1] if asked else pick)
        return dataclasses.replace(d, run_id=pick)

    async def _decide(
        self, d: Decision, denied: str | None, code: RefusalCode | None, granted: bool = False
    ) -> Verdict:
        log = await self._ready_log()
        await self.sync.flush(log, d.task_id)  # what this process has seen of the task is in the store first
        before = await log.denied_before(d.intervention_id)
        if before is not None:
            return Verdict("denied", before)  # a refused click replayed: refused again, audited once
        resolved = await self._resolve(log, d)
        if resolved is None:
            what = f"run {d.run_id} of task {d.task_id}" if d.run_id else f"task {d.task_id}"
            return await self._refuse(log, d, Verdict("denied", f"no {what} is known", code="unknown_task"))
        d = resolved
        now = time.time_ns()
        if denied is not None:
            rec = await log.record(d.task_id, d.run_id) or {}
            seen = runs.judge(rec, d, now)
            if seen.outcome == "duplicate":
                return self._again(d, seen)
            v = Verdict("denied", denied, code=code or "denied", run_id=d.run_id, request=seen.request)
            return await self._refuse(log, d, v)

        # A grant's decision holds only while the grant is live, checked in
        # one step with a revoke (never on what an earlier read said).
        await faults.stop_at(faults.BEFORE_LOG)
        got = await (log.apply_granted(d, now) if granted and d.grant_id else log.apply(d, now))
        if got.outcome == "applied":
            await faults.stop_at(faults.BEFORE_ANSWER)
            v = Verdict(
                "applied",
                got.reason,  # a cancel after an end only the agent said: what it does still (runs.agent_ends)
                run_id=d.run_id,
                request=got.request,
                votes=got.votes,
                votes_needed=got.votes_needed,
            )
            self.announce(d, v)
            if d.action in ("approve", "reject") and d.approval_id and got.decides:
                await log.unlist({(d.run_id, d.approval_id)})
            return v
        if got.outcome == "duplicate":
            if d.action in ("approve", "reject") and d.approval_id and got.votes >= got.votes_needed:
                # Sent again after a crash between its record and its answer:
                # the open list may still name the request.
                await log.unlist({(d.run_id, d.approval_id)})
            return self._again(d, got)
        outcome: VerdictOutcome = (
            "already_decided" if got.code == "already_decided" else "full" if got.code == "full" else "denied"
        )
        v = Verdict(outcome, got.reason, got.prior, code=got.code, run_id=d.run_id, request=got.request)
        if got.code == "expired" and d.approval_id:
            await log.unlist({(d.run_id, d.approval_id)})
            self.sync.close_here(d.task_id, d.run_id, [d.approval_id], now)
        return await self._refuse(log, d, v)

    @staticmethod
    def _again(d: Decision, got: runs.Judgement) -> Verdict:
        """The same decision again (its ``intervention_id``): answered as
        already applied, with what the first answered; nothing announced."""
        return Verdict(
            "duplicate",
            got.reason,
            got.prior,
            run_id=d.run_id,
            request=got.request,
            votes=got.votes,
            votes_needed=got.votes_needed,
        )

    async def _refuse(self, log: ControlLog, d: Decision, v: Verdict) -> Verdict:
        """Audit a refused decision once (its replays are refused the same way);
        a budget's cancel of a task that ended or was cancelled is left alone."""
        if budgetstop.is_budgets(d):
            return v
        if await log.first_denial(d.intervention_id, v.reason or v.outcome):
            self.announce(d, v)
        return v

    async def permit(
        self,
        task_id: str,
        approval_id: str,
        action: Mapping[str, Any] | None,
        run_id: str | None = None,
        by: str = "agent",
        agent: str | None = None,
        key: str | None = None,
    ) -> runs.Permit:
        """Whether ``action`` may run on approval ``approval_id`` of the run
        (the task id's latest run that asked it, when none is named), and
        the approval consumed when it may: once, across every replica."""

        async def go() -> runs.Permit:
            log = await self._ready_log()
            await self.sync.flush(log, task_id)
            rid = run_id
            if not rid:
                for known in reversed(await log.runs_of(task_id)):
                    if approval_id in runs.requests_of(await log.record(task_id, known)):
                        rid = known
                        break
            if not rid:
                return runs.Permit(False, f"no run of task {task_id} asked approval {approval_id!r}", "unknown_request")
            return await log.permit(task_id, rid, approval_id, action, time.time_ns(), by, agent, key)

        return await self._hop(go)

    async def decisions(
        self, task_id: str, after: int = 0, wait_s: float = 0.0, run_id: str | None = None
    ) -> list[Decision]:
        async def run() -> list[Decision]:
            return await (await self._ready_log()).wait(task_id, after, wait_s, run_id)

        return await self._hop(run)

    async def run(self, task_id: str, run_id: str | None = None) -> Mapping[str, Any] | None:
        async def go() -> Mapping[str, Any] | None:
            log = await self._ready_log()
            await self.sync.flush(log, task_id)
            rid = run_id or next(reversed(await log.runs_of(task_id)), None)
            return await log.record(task_id, rid) if rid else None

        return await self._hop(go)

    async def runs(self, task_id: str) -> list[str]:
        async def go() -> list[str]:
            return await (await self._ready_log()).runs_of(task_id)

        return await self._hop(go)

    async def open_requests(self) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            log = await self._ready_log()
            await self.sync.flush(log)
            now = time.time_ns()
            out = []
            for item in await log.open_list():
                r = runs.request_from_dict(item)
                end = runs.expires_ns(r) if r is not None else None
                if r is not None and (end is None or end > now):
                    out.append(item)
            return out

        return await self._hop(go)

    async def task(self, task_id: str, run_id: str | None = None) -> TaskView | None:
        async def go() -> TaskView | None:
            st = approvals.find(*self._tracker.states_of(task_id), task_id, run_id or "")
            return None if st is None else st.view

        return await self._hop(go)

    async def open_tasks(self) -> list[TaskView]:
        async def go() -> list[TaskView]:
            return [st.view for st in self._tracker.states()[0]]

        return await self._hop(go)

    def call_sync(self, fn: Callable[[], Awaitable[T]], timeout_s: float) -> Any:
        """Run one of the coroutines above from a plain thread (an agent's)."""
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the pipeline is not running")

        async def run() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)


__all__ = ["PipelineControl", "describe", "who"]
