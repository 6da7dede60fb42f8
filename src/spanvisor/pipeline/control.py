"""The pipeline's :class:`spanvisor.control.Control`: people's decisions,
checked against what this process knows of the task, recorded once in the
shared control log and announced to every sink as a ``HumanIntervention``.

Everything runs on the pipeline's loop (the tracker is that thread's alone);
callers on other loops or threads are hopped over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from spanvisor.control.hub import Verdict
from spanvisor.control.log import ControlLog, first_of_kind
from spanvisor.events import Decision, Event, InterventionOutcome, TaskView
from spanvisor.readable import decided
from spanvisor.tracking import approvals

if TYPE_CHECKING:
    from spanvisor.tracking.tracker import TaskTracker

T = TypeVar("T")
logger = logging.getLogger("spanvisor.control")
UNKNOWN_TASK = "recorded; this process does not track that task: check the id if it is not another replica's"
# Longest a caller on another loop waits for the pipeline's (a long-poll's
# own wait is at most 60 s).
HOP_TIMEOUT_S = 90.0
# How often tasks with an open request re-read their decision log.
CATCH_UP_S = 0.5


def who(d: Decision) -> str:
    return f"<@{d.actor_id}>" if d.source == "slack" else (d.actor_name or d.actor_id)


def describe(prior: Decision) -> str:
    """ "already approved by @alice" (Slack renders <@U…> as the user's name)."""
    return f"already {decided(prior.action)} by {who(prior)}"


def refusal(tracker: TaskTracker, d: Decision) -> str | None:
    """Why this process refuses ``d`` from what it knows of the task, or None.
    A task it does not know may be another replica's: that is not a refusal."""
    st = approvals.find(*tracker.states_of(d.task_id), d.task_id)
    if st is None:
        return None
    v = st.view
    if st.finished:
        if d.action in ("retry", "acknowledge"):
            return None if v.status == "error" else f"only a failed task can be {decided(d.action)} (it is {v.status})"
        return f"the task has already finished ({v.status})"
    if d.action in ("approve", "reject"):
        if not d.approval_id or not approvals.is_open(st, d.approval_id):
            return "that approval is no longer open"
        return None
    if d.action in ("retry", "acknowledge"):
        return "the task is still running"
    return None


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

    def attach(self, log: ControlLog) -> None:
        """Called on the pipeline loop once the state store is open."""
        self.log = log
        if self._log_ready is None:
            self._log_ready = asyncio.Event()
        self._log_ready.set()
        self._sync = asyncio.get_running_loop().create_task(self._catch_up_loop())

    async def _catch_up_loop(self) -> None:
        """Decisions other processes recorded on tasks this one holds with an
        open request (a replica that got the click for another's task): the
        task's view catches up within about CATCH_UP_S, whether or not the
        agent notes the answer itself."""
        while True:
            await asyncio.sleep(CATCH_UP_S)
            try:
                await self.catch_up()
            except Exception as exc:  # a store outage: try again next round
                logger.debug("catching up on decisions failed: %s", exc)

    async def catch_up(self) -> None:
        assert self.log is not None
        for st in [s for s in self._tracker.states()[0] if s.working["approvals"]]:
            out: list[Event] = []
            for d in await self.log.read(st.working["task_id"]):
                cp = approvals.catch_up(st, d)
                if cp is not None:
                    out.append(cp)
            self._dispatch(out)

    async def close(self) -> None:
        task = getattr(self, "_sync", None)
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
        future = asyncio.run_coroutine_threadsafe(run(), loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), HOP_TIMEOUT_S)

    async def _ready_log(self) -> ControlLog:
        if self.log is None:
            if self._log_ready is None:
                self._log_ready = asyncio.Event()
            await asyncio.wait_for(self._log_ready.wait(), 30)
        assert self.log is not None
        return self.log

    def announce(self, d: Decision, outcome: InterventionOutcome, reason: str | None) -> None:
        self._dispatch([approvals.as_event(*self._tracker.states_of(d.task_id), d, outcome, reason)])

    async def decide(self, decision: Decision, *, denied: str | None = None) -> Verdict:
        return await self._hop(lambda: self._decide(decision, denied))

    async def _decide(self, d: Decision, denied: str | None) -> Verdict:
        log = await self._ready_log()
        if denied is None:
            # "Already approved by @x" outranks "no longer open": it says why.
            prior = first_of_kind(await log.read(d.task_id), d)
            if prior is not None and prior.intervention_id == d.intervention_id:
                return Verdict("duplicate", None, prior)  # a replay: recorded, announced once
            if prior is not None:
                return Verdict("already_decided", describe(prior), prior)
            before = await log.denied_before(d.intervention_id)
            if before is not None:
                return Verdict("denied", before)
        reason = denied or refusal(self._tracker, d)
        if reason is not None:
            if await log.first_denial(d.intervention_id, reason):
                self.announce(d, "denied", reason)
            return Verdict("denied", reason)
        rec = await log.record(d)
        if rec.outcome == "applied":
            self.announce(d, "applied", None)
            if approvals.find(*self._tracker.states_of(d.task_id), d.task_id) is None:
                # Recorded all the same: another replica's task, or one that
                # finished long ago; but a typo would land here too, so say so.
                return Verdict("applied", UNKNOWN_TASK)
            return Verdict("applied")
        if rec.outcome == "already_decided" and rec.prior is not None:
            return Verdict("already_decided", describe(rec.prior), rec.prior)
        if rec.outcome == "full":
            return Verdict("full", "this task holds too many decisions")
        return Verdict("duplicate", None, rec.prior)

    async def decisions(self, task_id: str, after: int = 0, wait_s: float = 0.0) -> list[Decision]:
        async def run() -> list[Decision]:
            return await (await self._ready_log()).wait(task_id, after, wait_s)

        return await self._hop(run)

    async def task(self, task_id: str) -> TaskView | None:
        async def run() -> TaskView | None:
            st = approvals.find(*self._tracker.states_of(task_id), task_id)
            return None if st is None else st.view

        return await self._hop(run)

    async def open_tasks(self) -> list[TaskView]:
        async def run() -> list[TaskView]:
            return [st.view for st in self._tracker.states()[0]]

        return await self._hop(run)

    def call_sync(self, fn: Callable[[], Awaitable[T]], timeout_s: float) -> Any:
        """Run one of the coroutines above from a plain thread (an agent's)."""
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the pipeline is not running")

        async def run() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)


__all__ = ["UNKNOWN_TASK", "PipelineControl", "describe", "refusal", "who"]
