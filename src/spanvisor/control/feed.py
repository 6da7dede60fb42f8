"""One task's decisions as an agent reads them: answers to its approval
requests and a cancel request (used by :class:`spanvisor.agent.TaskHandle`).

A :class:`TaskFeed` keeps the decisions read so far (the log is append-only,
so a cursor is their count) and reads on from a
:class:`~spanvisor.control.client.DecisionSource` by long-polling: a
decision recorded anywhere reaches the waiting agent as soon as the source
has it. Several readers (the agent waiting for an answer, the cancel
watcher) may poll at once; what they bring back is merged once.

Nothing here raises into the agent: an unreachable source reads as "no
decision yet", and a callback's exception is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from spanvisor.control.client import DecisionSource, Poll, source_from_env
from spanvisor.control.runs import Permit
from spanvisor.events import Decision

log = logging.getLogger("spanvisor.agent")

ApprovalOutcome = Literal["approve", "reject", "timed_out", "cancelled"]
# Longest single wait of one poll: an approval wait is cut into pieces this
# long, and the cancel watcher looks at its stop flag this often.
WAIT_CHUNK_S = 10.0
WATCH_CHUNK_S = 2.0
# Pause after a source that could not be read (the HTTP source also backs off).
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """The answer to one approval request.

    ``outcome``: ``approve``, ``reject``, ``timed_out`` (no answer within
    the timeout, or nothing that could answer) or ``cancelled`` (someone
    asked the task to stop: the wait ends at once). ``by``: who decided (a
    name, or an id such as a Slack user id; who cancelled), None when timed out. ``at_ns``: when
    it was decided (or when the wait ended). ``digest``: of the request the
    decider was shown (None: the open request's, as the server has it).

    Before running the action, check it: :meth:`permits` is true only for an
    approve of exactly that action, and only once.
    """

    outcome: ApprovalOutcome
    by: str | None
    at_ns: int
    comment: str | None = None
    approval_id: str = ""
    intervention_id: str | None = None
    digest: str | None = None
    task_id: str = ""
    run_id: str = ""
    # Set by the helper that asked: the digest of the request with a given
    # action (None for an action that is not valid), the request's own, and
    # the check that consumes the approval where it is recorded.
    expect: Callable[[Mapping[str, Any] | None], str | None] | None = field(default=None, compare=False, repr=False)
    asked_digest: str | None = None
    consume: Callable[[Mapping[str, Any] | None], Permit] | None = field(default=None, compare=False, repr=False)
    _used: list[Permit] = field(default_factory=list, compare=False, repr=False)
    # The action as the approver edited it (same tool, other arguments): the
    # one to run, and the only one the approval permits. None: as asked.
    edited: Mapping[str, Any] | None = None

    def action_to_run(self, asked: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The action to run: the approver's edit of ``asked``, else ``asked``."""
        return self.edited if self.edited is not None else asked

    @property
    def approved(self) -> bool:
        return self.outcome == "approve"

    def check(self, action: Mapping[str, Any] | None) -> Permit:
        """Whether ``action`` may run now on this decision, with the reason;
        consumes the approval when it may (see :meth:`permits`)."""
        if self.outcome != "approve":
            return Permit(False, f"the request was not approved ({self.outcome})", "not_approved")
        if self._used:
            return Permit(False, "this approval was already used", "consumed")
        if self.expect is None or self.consume is None or self.asked_digest is None:
            return Permit(False, "this decision was not read for a request asked here", "denied")
        want = self.expect(action)
        approved = self.asked_digest if self.edited is None else self.expect(self.edited)
        if want is None or want != approved:
            what = "the action the request asked for" if self.edited is None else "the arguments the approver set"
            return Permit(False, f"that is not {what}", "digest_mismatch", want)
        self._used.append(Permit(False, "checking", "consumed"))
        try:
            got = self.consume(action)
        except Exception as exc:  # never into the agent: refused
            log.exception("checking approval %s failed", self.approval_id)
            got = Permit(False, f"{type(exc).__name__}: {exc}", "denied")
        self._used[0] = got
        return got

    def permits(self, action: Mapping[str, Any] | None) -> bool:
        """True only for an approve whose digest is that of ``action`` (with
        the request's agent, task, run, question, options and details), and
        only the first time: the approval is consumed where it is recorded,
        so a second check (here, after a restart, on another replica) is
        false. Never raises."""
        return self.check(action).permitted

    @classmethod
    def of(cls, d: Decision, **extra: Any) -> ApprovalDecision:
        if d.action == "cancel":  # the task's cancel ended the wait: nothing is permitted
            return cls.cancelled(d.approval_id or "", d)
        outcome: ApprovalOutcome = "approve" if d.action == "approve" else "reject"
        if d.edited is not None and outcome == "approve":
            try:
                extra["edited"] = json.loads(d.edited)
            except ValueError:  # a record no server writes: nothing is permitted
                extra["edited"], extra["expect"] = {}, None
        return cls(
            outcome,
            d.actor_name or d.actor_id,
            d.time_ns,
            d.comment,
            d.approval_id or "",
            d.intervention_id,
            d.digest,
            d.task_id,
            d.run_id,
            **extra,
        )

    @classmethod
    def cancelled(cls, approval_id: str, cancel: Decision) -> ApprovalDecision:
        """The wait on ``approval_id`` ended by the task's cancel: nothing is permitted."""
        return cls("cancelled", cancel.actor_name or cancel.actor_id, cancel.time_ns, cancel.comment, approval_id)

    @classmethod
    def timed_out(cls, approval_id: str) -> ApprovalDecision:
        return cls("timed_out", None, time.time_ns(), None, approval_id)


class CancelRequested(Exception):
    """Someone asked the task to stop (``t.raise_if_cancelled()``). Leaving
    ``with task(...)`` with it marks the task cancelled, not failed."""

    def __init__(self, decision: Decision | None = None) -> None:
        who = (decision.actor_name or decision.actor_id) if decision is not None else None
        super().__init__(f"cancel requested by {who}" if who else "cancel requested")
        self.decision = decision


def answers(d: Decision, approval_id: str) -> bool:
    return d.action in ("approve", "reject") and d.approval_id == approval_id


class TaskFeed:
    def __init__(
        self, task_id: str, source: Callable[[], DecisionSource | None] = source_from_env, run_id: str | None = None
    ) -> None:
        self.task_id = task_id
        # The run the agent is (run_id_of its root): a task id reused after a
        # finished run must not read that run's decisions (its cancel).
        self.run_id = run_id
        self._source_factory = source
        self._source: DecisionSource | None = None
        self._lock = threading.Lock()
        self._seen: list[Decision] = []
        self._cancel: Decision | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- reading -------------------------------------------------------------

    def source(self) -> DecisionSource | None:
        """Resolved on first use, and again while there is none (a pipeline
        may start after the task did)."""
        if self._source is None:
            self._source = self._source_factory()
        return self._source

    def poll_once(self, wait_s: float) -> bool:
        """Read on once, waiting up to ``wait_s``; False when no source
        exists (nothing can ever answer)."""
        src = self.source()
        if src is None:
            return False
        with self._lock:
            after = len(self._seen)
        try:
            got = src.poll(self.task_id, after, wait_s, self.run_id)
        except Exception as exc:  # a source must not raise; if one does, read again later
            log.debug("reading decisions of %s failed: %s", self.task_id, exc)
            got = None
        if got is None:
            time.sleep(min(RETRY_PAUSE_S, max(0.0, wait_s)))
        else:
            self._merge(after, got)
        return True

    def _merge(self, after: int, got: Poll) -> None:
        fire: list[Callable[[], object]] = []
        with self._lock:
            have = len(self._seen)
            new = list(got.decisions[have - after :]) if have >= after else []
            self._seen.extend(new)
            if self._cancel is None:
                self._cancel = next((d for d in new if d.action == "cancel"), None)
                if self._cancel is not None:
                    fire, self._callbacks = self._callbacks, []
        for callback in fire:
            _call(callback)

    def find(self, pred: Callable[[Decision], bool]) -> Decision | None:
        with self._lock:
            return next((d for d in self._seen if pred(d)), None)

    def _answer_or_cancel(self, approval_id: str) -> Decision | None:
        """The task's cancel, once read (whatever was answered: a task asked
        to stop runs nothing more), else the decision on ``approval_id``."""
        with self._lock:
            if self._cancel is not None:
                return self._cancel
            return next((d for d in self._seen if answers(d, approval_id)), None)

    def wait_approval(self, approval_id: str, timeout_s: float) -> Decision | None:
        """The decision on ``approval_id`` (the task's cancel decision when
        it is cancelled, at once), or None after ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            found = self._answer_or_cancel(approval_id)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.poll_once(min(left, WAIT_CHUNK_S)):
                self._nobody(approval_id)
                return None

    async def wait_approval_async(self, approval_id: str, timeout_s: float) -> Decision | None:
        """:meth:`wait_approval` in short polls on a worker thread: the
        caller's loop stays free, and cancelling the coroutine stops it."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while (found := self._answer_or_cancel(approval_id)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not await asyncio.to_thread(self.poll_once, min(left, WAIT_CHUNK_S)):
                self._nobody(approval_id)
                return None
        return found

    def _nobody(self, approval_id: str) -> None:
        log.warning(
            "task %s asked for approval %s, but nothing can answer: no spanvisor pipeline runs in "
            "this process and SPANVISOR_CONTROL_URL is not set",
            self.task_id,
            approval_id,
        )

    # -- cancel --------------------------------------------------------------

    @property
    def cancel(self) -> Decision | None:
        """The cancel request, if one has been read. The first call reads
        once and starts the watcher; later calls only look."""
        if self._watcher is None:
            self._start_watcher()
        return self._cancel

    @property
    def cancel_read(self) -> Decision | None:
        """The cancel request if one has been read; reads nothing, starts nothing."""
        return self._cancel

    def on_cancel(self, callback: Callable[[], object]) -> None:
        with self._lock:
            already = self._cancel is not None
            if not already:
                self._callbacks.append(callback)
        if already:
            threading.Thread(target=_call, args=(callback,), name="spanvisor-on-cancel", daemon=True).start()
        elif self._watcher is None:
            self._start_watcher()

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(target=self._watch, name=f"spanvisor-cancel-{self.task_id}", daemon=True)
        if self._cancel is None:
            self.poll_once(0.0)  # the first look is current, not stale
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.is_set() and self._cancel is None:
            if not self.poll_once(WATCH_CHUNK_S):
                self._stop.wait(RETRY_PAUSE_S * 4)  # no source yet: look again later

    def close(self) -> None:
        """The task ended: the watcher stops after its current poll."""
        self._stop.set()


def _call(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:
        log.exception("an on_cancel callback raised (ignored)")


__all__ = ["ApprovalDecision", "ApprovalOutcome", "CancelRequested", "TaskFeed", "answers"]
